"""The end-to-end pipeline: supernet -> latency table -> search -> fold + export -> accuracy -> bench -> report.

Each stage writes ``stage_<name>.json`` (atomically) when it completes; a rerun skips stages
whose marker is there, and the long stages (supernet training, latency table, search) resume
from their own state when killed mid-way.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Callable

import torch

from .errors import UsageError
from .io import provenance, write_json

log = logging.getLogger(__name__)


@dataclass
class SupernetStage:
    steps: int = 120
    batch_size: int = 32
    lr: float = 0.1
    sampler: str = "fair"
    warm_start: int = -1  # the train-supernet recipe (nasdeploy.recipe): a third of the steps on the parent path
    grad_mode: str = "sum"
    zero_init_residual: bool = True
    ckpt_every: int = 25


@dataclass
class LatencyStage:
    backend: str = "auto"  # auto: the backend of deploy.target
    batch: int = 1
    dtype: str = "auto"  # auto: the precision of deploy.target
    repeats: int = 30
    warmup: int = 5
    validate_archs: int = 12


@dataclass
class SearchStage:
    latency_target: str = "auto"  # with units, or auto: 85% of the median random architecture's latency
    population: int = 10
    generations: int = 3
    calib_batches: int = 4
    eval_images: int = 2000  # 95% interval about +-2 points at 60% top-1


@dataclass
class FinetuneStage:
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.02
    ckpt_every: int = 50  # steps between the atomic states a killed fine-tune resumes from


@dataclass
class ExportStage:
    onnx: bool = True
    aoti: bool = False  # enabled automatically on a GPU
    parity_images: int = 256


CPU_CANDIDATES = ["onnxruntime:fp32", "onnxruntime:int8", "openvino:fp32", "openvino:int8", "openvino:bf16"]
GPU_CANDIDATES = ["onnxruntime:fp32", "torch:fp16", "aoti:fp16", "tensorrt:fp16", "tensorrt:int8"]


@dataclass
class DeployStage:
    """Which engines compete for deployment, and the accuracy gate they must pass."""

    engines: list[str] | str = "auto"  # auto: CPU_CANDIDATES on the CPU, GPU_CANDIDATES on the GPU
    # the engine the latency table is measured on, so that the search targets what will ship;
    # auto: onnxruntime:int8 on the CPU, torch:fp16 on the GPU
    target: str = "auto"
    budget: float = 0.5  # top-1 points an engine may lose against the float32 model on the held-out images
    calib_images: int = 256


@dataclass
class BenchStage:
    backends: list[str] = field(default_factory=lambda: ["torch", "onnxruntime"])
    batches: list[int] = field(default_factory=lambda: [1, 16])
    repeats: int = 50
    rounds: int = 5  # interleaved rounds: the deploy stage compares engines round by round


@dataclass
class PipelineConfig:
    out: str = "runs/demo"
    space: str = "scarlet"
    data: str = "fashion-mnist"
    device: str = "auto"
    seed: int = 0
    accuracy_images: int = 4000
    supernet: SupernetStage = field(default_factory=SupernetStage)
    latency: LatencyStage = field(default_factory=LatencyStage)
    search: SearchStage = field(default_factory=SearchStage)
    finetune: FinetuneStage = field(default_factory=FinetuneStage)
    export: ExportStage = field(default_factory=ExportStage)
    bench: BenchStage = field(default_factory=BenchStage)
    deploy: DeployStage = field(default_factory=DeployStage)

    @classmethod
    def from_dict(cls, d: dict) -> "PipelineConfig":
        return _build(cls, d, "config")

    @classmethod
    def read(cls, path: str | Path) -> "PipelineConfig":
        try:
            import tomllib
        except ModuleNotFoundError:  # pragma: no cover
            import tomli as tomllib  # type: ignore[no-redef]
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"pipeline config {p} does not exist")
        try:
            return cls.from_dict(tomllib.loads(p.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{p} is not valid TOML ({e})") from None


def _build(cls, d: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        raise UsageError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    kw = {}
    for k, v in d.items():
        factory = known[k].default_factory
        nested = isinstance(factory, type) and is_dataclass(factory)
        kw[k] = _build(factory, v, f"{where}.{k}") if nested and isinstance(v, dict) else v
    return cls(**kw)


# ------------------------------------------------------------------ stages

class Pipeline:
    STAGES = ("supernet", "latency", "search", "finetune", "export", "accuracy", "bench", "deploy")

    def __init__(self, cfg: PipelineConfig, progress: bool = True, echo: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.progress = progress
        self.echo = echo or (lambda s: log.info(s))
        self.device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.results: dict[str, dict] = {}

    def marker(self, stage: str) -> Path:
        return self.out / f"stage_{stage}.json"

    def run(self, stop_after: str | None = None) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", asdict(self.cfg))
        for stage in self.STAGES:
            m = self.marker(stage)
            if m.exists():
                try:
                    self.results[stage] = json.loads(m.read_text()) | {"status": "cached"}
                    self.echo(f"[{stage}] done before: skipped")
                    continue
                except json.JSONDecodeError:
                    pass  # a marker is written atomically; an unreadable one is simply redone
            self.echo(f"[{stage}] running")
            t0 = time.perf_counter()
            figures = getattr(self, f"stage_{stage}")()
            figures = {"seconds": round(time.perf_counter() - t0, 1), **figures}
            write_json(m, figures)
            self.results[stage] = figures | {"status": "ran"}
            if stage == stop_after:
                break
        return self.results

    # -- supernet
    def stage_supernet(self) -> dict:
        from .train import TrainConfig, train_supernet

        s = self.cfg.supernet
        tc = TrainConfig(space=self.cfg.space, data=self.cfg.data, steps=s.steps, batch_size=s.batch_size, lr=s.lr,
                         sampler=s.sampler, ckpt_every=s.ckpt_every, seed=self.cfg.seed, device=self.device,
                         warm_start=s.warm_start, grad_mode=s.grad_mode, zero_init_residual=s.zero_init_residual)
        r = train_supernet(tc, self.out / "supernet", resume=True, progress=self.progress)
        first, last = r.loss_summary()
        return {"supernet": str(r.path), "steps": len(r.history), "loss_first": first, "loss_last": last,
                "space": self.cfg.space, "sampler": s.sampler}

    def _small(self) -> bool:
        return self.cfg.data == "fashion-mnist"

    # -- latency
    def stage_latency(self) -> dict:
        from .latency import LatencyTable, Settings, measure_table, validate_table
        from .space import SMALL_INPUT_STRIDES

        l = self.cfg.latency
        t_backend, t_dtype = self.target_engine()
        backend = l.backend if l.backend != "auto" else t_backend
        dtype = l.dtype if l.dtype != "auto" else t_dtype
        size, classes = (28, 10) if self._small() else (224, 1000)
        st = Settings(self.cfg.space, self.device, backend, l.batch, dtype, size,
                      list(SMALL_INPUT_STRIDES) if self._small() else None, classes, l.warmup, l.repeats)
        path = self.out / "lut.json"
        table = measure_table(st, path, progress=self.progress)
        v = validate_table(LatencyTable.load(path), l.validate_archs, self.cfg.seed, self.progress, l.repeats)
        m = v.metrics()
        from .plots import latency_scatter

        latency_scatter(self.out / "lut_validation.png", v.measured, v.raw, v.calibrated_loo,
                        f"{table.describe()}: {m['n']} random archs")
        return {"lut": str(path), "setting": table.describe(), "engine": f"{backend}:{dtype}",
                "entries": table.entries(), "validation": m}

    # -- which engines compete, and which one the search targets
    def target_engine(self) -> tuple[str, str]:
        from .backends import parse_engines

        t = self.cfg.deploy.target
        if t != "auto":
            return parse_engines(t)[0]
        return ("torch", "fp16") if self.device.startswith("cuda") else ("onnxruntime", "int8")

    def candidates(self) -> tuple[list[tuple[str, str]], list[dict]]:
        """The deployment candidates that can run here, and the others with the reason."""
        from .backends import dtype_reason, get_backend, parse_engines, unavailable_reason

        e = self.cfg.deploy.engines
        names = (GPU_CANDIDATES if self.device.startswith("cuda") else CPU_CANDIDATES) if e == "auto" else e
        live, skipped = [], []
        for backend, dtype in parse_engines(names):
            dev = get_backend(backend).export_device(self.device)
            why = unavailable_reason(backend, dev) or dtype_reason(backend, dtype, dev)
            if why:
                skipped.append({"engine": f"{backend}:{dtype}", "reason": why})
            else:
                live.append((backend, dtype))
        return live, skipped

    # -- search
    def _target(self) -> float:
        from .latency import LatencyTable
        from .search import parse_latency
        from .space import get_space

        t = self.cfg.search.latency_target
        if t != "auto":
            return parse_latency(t)
        import random

        table = LatencyTable.load(self.out / "lut.json")
        rng = random.Random(self.cfg.seed)
        lats = sorted(table.predict(get_space(self.cfg.space).sample(rng)) for _ in range(200))
        return round(max(0.85 * lats[len(lats) // 2], 1.05 * table.fastest()[1]), 3)

    def stage_search(self) -> dict:
        from .search import SearchConfig
        from .search_job import SearchInputs, search

        s = self.cfg.search
        target = self._target()
        cfg = SearchConfig(target, ("accuracy", "latency"), s.population, s.generations, self.cfg.seed,
                           s.calib_batches, 64, s.eval_images, device=self.device)
        inp = SearchInputs(self.cfg.space, str(self.out / "supernet" / "supernet.pt"), str(self.out / "lut.json"),
                           self.cfg.data, self.device)
        r = search(inp, cfg, self.out / "search", progress=self.progress)
        if r.best is None:
            raise UsageError(f"no architecture met {target} ms: raise search.generations or the target")
        return {"target_ms": target, "fastest_ms": r.fastest_ms, "trials": len(r.candidates),
                "front": [asdict(c) for c in r.front], "best": asdict(r.best), "references": r.references,
                "card": str(self.out / "search" / "best.toml"), "pareto_png": str(self.out / "search" / "pareto.png")}

    # -- fine-tune the chosen architecture from its inherited weights
    def stage_finetune(self) -> dict:
        from .finetune import FinetuneConfig, finetune

        f = self.cfg.finetune
        card = finetune(str(self.out / "search" / "best.toml"), self.out / "finetune",
                        FinetuneConfig(f.steps, f.batch_size, f.lr, ckpt_every=f.ckpt_every, seed=self.cfg.seed,
                                       device=self.device),
                        self.cfg.data, progress=self.progress)
        return {"card": str(card), "steps": f.steps, "batch_size": f.batch_size, "lr": f.lr}

    # -- export
    def stage_export(self) -> dict:
        from .export.api import ExportOptions, export_model

        from .quantize import QuantOptions

        e = self.cfg.export
        aoti = e.aoti or self.device == "cuda"
        live, skipped = self.candidates()
        # the gate that decides deployment is the accuracy stage's, on all held-out images: here it is recorded
        opt = ExportOptions(onnx=e.onnx, aoti=aoti, fp16=aoti, engines=live, force=True, parity_images=e.parity_images,
                            data=None if self._small() else self.cfg.data, budget=self.cfg.deploy.budget,
                            quant=QuantOptions(images=self.cfg.deploy.calib_images), force_accuracy=True,
                            gate_images=min(1000, self.cfg.accuracy_images))
        r = export_model(str(self._deployed_card()), self.out / "export", opt=opt)
        return {"out": str(r.out), "artefacts": r.artefacts, "engines": [f"{b}:{d}" for b, d in opt.all_engines()],
                "skipped": skipped, "fold": r.fold_report, "parity": [p.as_dict() for p in r.parity],
                "quantization": r.quantization}

    def _deployed_card(self) -> Path:
        src = self.out / "finetune" / "model.toml"
        return src if src.exists() else self.out / "search" / "best.toml"

    # -- accuracy of every exported engine on the held-out split, and its accuracy gate
    def stage_accuracy(self) -> dict:
        from torch.utils.data import DataLoader, Subset

        from . import data as D
        from .evaluate import Accuracy, topk_correct
        from .export.api import load_exported
        from .export.parity import chunked
        from .gate import judge
        from .zoo import load_network

        export = self.out / "export"
        plain = load_network(export / "model.pt")
        if self._small():
            ds = D.fashion_mnist("val")
        else:
            ds = D.image_folder(D.resolve_split(self.cfg.data, "val"), D.official_eval_transform(224))
        classes = len(ds.classes) if hasattr(ds, "classes") else len(D.FASHION_CLASSES)
        ds = Subset(ds, list(range(min(self.cfg.accuracy_images, len(ds)))))
        batches = list(DataLoader(ds, batch_size=200))
        labels = torch.cat([y for _, y in batches])
        with torch.no_grad():
            ref = torch.cat([plain(x) for x, _ in batches])

        def scored(logits: torch.Tensor) -> dict:
            c1, c5 = topk_correct(logits, labels)
            n = len(labels)
            return Accuracy(100.0 * c1 / n, 100.0 * c5 / n, n).as_dict()

        out = {"images": len(labels), "reference": "torch:fp32 (the folded model in PyTorch)",
               "torch_folded": scored(ref), "engines": {}}
        for engine in self.results["export"]["engines"]:
            runner = load_exported(export, engine, self._engine_device(engine), (1, 200))
            lo, hi = getattr(runner, "batch_range", (1, 200))
            with torch.no_grad():
                logits = torch.cat([chunked(runner, [x], lo, hi or 200) for x, _ in batches])
            gate = judge(ref, logits, labels, classes, self.cfg.deploy.budget)
            out["engines"][engine] = scored(logits) | {"gate": gate.as_dict()}
        return out

    def _engine_device(self, engine: str) -> str:
        from .backends import get_backend

        return get_backend(engine.split(":")[0]).export_device(self.device)

    # -- bench
    def stage_bench(self) -> dict:
        from .bench.run import bench
        from .plots import throughput_plot

        b = self.cfg.bench
        engines = [e.split(":") for e in self.results["export"]["engines"]]
        backends = list(dict.fromkeys(b.backends + (["compile", "aoti"] if self.device == "cuda" else [])
                                      + [be for be, _ in engines]))
        dtypes = list(dict.fromkeys((["fp32"] if self.device == "cpu" else ["fp32", "fp16"]) + [d for _, d in engines]))
        batches = b.batches if self.device == "cpu" else sorted(set(b.batches) | {256})
        # the unfolded model (with BN and stabilizers), so the baseline is what the official verify.py runs
        # and every other backend runs the folded form bench builds from it; the ONNX graphs are the exported ones
        export = self.out / "export"
        graphs = {k: str(export / f"model.{k}.onnx") for k in ("int8", "int8-nncf")
                  if (export / f"model.{k}.onnx").exists()}
        if (export / "model.onnx").exists():
            graphs["fp32"] = str(export / "model.onnx")
        res = bench([str(self._deployed_card())], self.device, backends, batches, dtypes, b.repeats,
                    progress=self.progress, rounds=b.rounds, graphs=graphs)
        write_json(self.out / "bench.json", res.as_dict())
        series: dict[str, list] = {}
        for r in res.rows:
            series.setdefault(f"{r.backend} {r.dtype}", []).append((r.batch, r.throughput))
        throughput_plot(self.out / "bench.png", series, f"searched model on {res.environment['device_name']}")
        return {"bench_json": str(self.out / "bench.json"), "environment": res.environment,
                "rows": [asdict(r) for r in res.rows], "skipped": res.skipped}

    # -- deploy: the fastest engine that passes the accuracy gate and whose lead over the reference is established
    def stage_deploy(self) -> dict:
        acc, rows = self.results["accuracy"], self.results["bench"]["rows"]
        batch = self.cfg.latency.batch if self.cfg.latency.batch in {r["batch"] for r in rows} else rows[0]["batch"]
        speed = {f"{r['backend']}:{r['dtype']}": r for r in rows if r["batch"] == batch}
        table = []
        for engine, a in acc["engines"].items():
            r = speed.get(engine)
            table.append({"engine": engine, "top1": a["top1"], "top1_ci95": a["top1_ci95"], "gate": a["gate"],
                          "median_ms": r["latency"]["median"] if r else None,
                          "round_medians": r["latency"].get("round_medians") if r else None,
                          "throughput": r["throughput"] if r else None,
                          "vs_onnxruntime": r.get("vs_onnxruntime") if r else None})
        passing = [c for c in table if c["gate"]["passed"] and c["throughput"] is not None]
        if not passing:
            raise UsageError("no exported engine passed the accuracy gate and was timed: see the accuracy stage; "
                             "raise deploy.budget or add onnxruntime:fp32 to deploy.engines")
        ranked = sorted(passing, key=lambda c: -c["throughput"])
        ref = next((c for c in table if c["engine"] == REFERENCE and c["round_medians"]), None)
        verdicts = {c["engine"]: faster_every_round(c, ref) for c in ranked}
        # the fastest engine whose lead over the reference is established ships; none established: the reference
        best = next((c for c in ranked if c is ref or verdicts[c["engine"]] is not False), ref or ranked[0])
        fastest = ranked[0]
        established = verdicts[best["engine"]] if best is not ref else (False if fastest is not ref else None)
        target = ":".join(self.target_engine())
        artefact = self.results["export"]["artefacts"].get(best["engine"], "model.pt")
        return {"engine": best["engine"], "artefact": str(self.out / "export" / artefact), "batch": batch,
                "budget": self.cfg.deploy.budget, "vs_onnxruntime": best["vs_onnxruntime"],
                "fastest": fastest["engine"], "faster_in_every_round": established,
                "faster_in_every_round_by_engine": verdicts,
                "latency_table_engine": self.results["latency"].get("engine", target),
                "candidates": table, "reference": REFERENCE}


REFERENCE = "onnxruntime:fp32"


def faster_every_round(c: dict, ref: dict | None) -> bool | None:
    """Whether engine ``c`` was faster than the reference in every bench round, round by round (the rounds are
    interleaved, so a machine's slow spell slows both rows of a round); None where there is nothing to compare."""
    if ref is None or c is ref or not c["round_medians"] or len(c["round_medians"]) != len(ref["round_medians"]):
        return None
    return all(a < b for a, b in zip(c["round_medians"], ref["round_medians"]))


def run_pipeline(cfg: PipelineConfig, progress: bool = True, echo: Callable[[str], None] | None = None,
                 stop_after: str | None = None) -> tuple[dict, Path | None]:
    from .report import write_report

    p = Pipeline(cfg, progress, echo)
    results = p.run(stop_after)
    if stop_after and stop_after != Pipeline.STAGES[-1]:
        return results, None
    return results, write_report(p.out, cfg, results, provenance())

