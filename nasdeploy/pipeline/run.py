"""The end-to-end pipeline: supernet -> latency tables -> search -> fine-tune -> export -> accuracy -> bench -> deploy.

Each stage writes ``stage_<name>.json`` (atomically) when it completes; a rerun skips stages whose marker is there,
and the long stages (supernet training, latency tables, search, fine-tuning) resume from their own state when
killed mid-way. The whole configuration (types, engines, data) is checked before the first stage runs. Each stage
returns a typed result (``results``) that the next stages and the report read by attribute.

What ships is what was measured: the search predicts latency from a table per candidate engine, the export folder
lists every engine's files with their hashes, the accuracy and bench stages score and time exactly those files,
and the deploy stage copies the chosen engine's files (the same hashes) into ``deployed/``.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..device import resolve_device
from ..errors import UsageError
from ..finetune import FinetuneConfig
from ..io import folder_lock, provenance, write_json
from ..nas.train import TrainConfig
from .config import PipelineConfig
from .results import (RESULT_TYPES, STAGES, AccuracyResult, BenchStageResult, DeployResult, ExportStageResult,
                      FinetuneResult, LatencyResult, PipelineResults, SearchStageResult, StageResult, SupernetResult)

if TYPE_CHECKING:
    from ..bench.stats import RoundLatency

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ stages

class Pipeline:
    """The stages in order, each a ``stage_<name>`` method returning its typed result (``results``); ``run`` skips
    the stages whose marker loads and hands every result on through ``self.results``."""

    def __init__(self, cfg: PipelineConfig, progress: bool = True, echo: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.progress = progress
        self.echo = echo or (lambda s: log.info(s))
        self.device = resolve_device(cfg.device)  # checked: a device that is not here is refused before any stage
        self.results = PipelineResults()
        # the stage table: name -> what runs it, in order
        self.stages: dict[str, Callable[[], StageResult]] = {name: getattr(self, f"stage_{name}") for name in STAGES}

    STAGES = STAGES

    def marker(self, stage: str) -> Path:
        return self.out / f"stage_{stage}.json"

    def validate(self) -> None:
        """Everything that can be refused is refused before the first stage (the configuration's types and target
        when it is read, the device when the pipeline is made): data, space, engines."""
        from ..data import BUILTIN, check_image_folder, resolve_split
        from ..nas.space import get_space

        get_space(self.cfg.space)
        if self.cfg.data != BUILTIN:
            for split in ("train", "test"):
                check_image_folder(resolve_split(self.cfg.data, split))
        if not self.candidates()[0]:
            raise UsageError("none of deploy.engines can run here: see the reasons with `nasdeploy bench`")
        for name, value in (("accuracy_images", self.cfg.accuracy_images), ("search.eval_images",
                                                                             self.cfg.search.eval_images)):
            if value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")

    def run(self, stop_after: str | None = None) -> PipelineResults:
        self.validate()
        self._check_recorded()  # refused before anything is written, the lock file included
        with folder_lock(self.out, "a pipeline run"):
            self._check_recorded()  # and again under the lock: another run may have started meanwhile
            write_json(self.out / "config.json", asdict(self.cfg))
            for stage, run in self.stages.items():
                m = self.marker(stage)
                done = RESULT_TYPES[stage].load(m) if m.exists() else None
                if done is not None:
                    self.results.add(stage, done, "cached")
                    self.echo(f"[{stage}] done before: skipped")
                else:
                    if m.exists():  # written atomically, so from another version or edited: redone
                        log.debug("%s does not load as this stage's result: the stage runs again", m)
                    self.echo(f"[{stage}] running")
                    t0 = time.perf_counter()
                    result = run()
                    result.seconds = round(time.perf_counter() - t0, 1)
                    write_json(m, result.as_dict())
                    self.results.add(stage, result, "ran")
                if stage == stop_after:
                    break
        return self.results

    def _check_recorded(self) -> None:
        """A run folder made with other settings is refused before anything is written: its stages would be reused
        for settings they were not made with (only ``out``, where the folder is, may differ)."""
        import json

        path = self.out / "config.json"
        if not path.exists():
            return
        try:
            recorded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return  # unreadable: written atomically, so from elsewhere; the stages' own checks stand
        mine = asdict(self.cfg)
        diff = _differences(recorded, mine, ignore={"out"})
        if diff:
            shown = "; ".join(f"{k}: {a!r} here before, {b!r} now" for k, a, b in diff[:3])
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise UsageError(f"{self.out} holds a pipeline run made with other settings ({shown}{more}): choose "
                             f"another --out, or run it with its own settings ({path})")

    # -- which engines compete
    def candidates(self) -> tuple[list[tuple[str, str]], list[dict]]:
        """The deployment candidates that can run here, and the others with the reason (unknown names refused)."""
        from ..backends import default_engines, dtype_reason, get_backend, parse_engines, unavailable_reason

        e = self.cfg.deploy.engines
        pairs = default_engines(self.device) if e == "auto" else parse_engines(e)
        live, skipped = [], []
        for backend, dtype in pairs:
            dev = get_backend(backend).export_device(self.device)
            why = unavailable_reason(backend, dev) or dtype_reason(backend, dtype, dev)
            if why:
                skipped.append({"engine": f"{backend}:{dtype}", "reason": why})
            else:
                live.append((backend, dtype))
        return live, skipped

    def _engine_device(self, engine: str) -> str:
        from ..backends import get_backend

        return get_backend(engine.split(":")[0]).export_device(self.device)

    # -- supernet
    def stage_supernet(self) -> SupernetResult:
        from ..data import split_record
        from ..nas.train import train_supernet

        tc = TrainConfig(**{**asdict(self.cfg.supernet), "space": self.cfg.space, "data": self.cfg.data,
                            "seed": self.cfg.seed, "device": self.device})
        r = train_supernet(tc, self.out / "supernet", resume=True, progress=self.progress)
        first, last = r.loss_summary()
        return SupernetResult(supernet=str(r.path), steps=len(r.history), loss_first=first, loss_last=last,
                              space=self.cfg.space, sampler=tc.sampler, splits=split_record(self.cfg.data))

    def _setting(self):
        from ..nas.checkpoint import load_checkpoint, supernet_setting

        return supernet_setting(load_checkpoint(self.out / "supernet" / "supernet.pt"))

    # -- latency: one table per candidate engine
    def lut_path(self, engine: str) -> Path:
        return self.out / f"lut_{engine.replace(':', '_')}.json"

    def stage_latency(self) -> LatencyResult:
        from ..latency import LatencyTable, Settings, measure_table, validate_table
        from ..plots import latency_scatter

        lat, setting = self.cfg.latency, self._setting()
        given = {t.engine: t for t in (LatencyTable.load(p, space=self.cfg.space) for p in lat.tables)}
        tables = {}
        for backend, dtype in self.candidates()[0]:
            engine = f"{backend}:{dtype}"
            st = Settings.for_input(self.cfg.space, self._engine_device(engine), backend, lat.batch, dtype, setting,
                                    lat.warmup, lat.repeats)
            path = self.lut_path(engine)
            if engine in given and not path.exists():
                _check_given(given[engine], st)
                given[engine].save(path)
            table = measure_table(st, path, progress=self.progress)
            if table.calibration and engine in given:  # validated when it was measured
                tables[engine] = {"lut": str(path), "setting": table.describe(), "entries": table.entries(),
                                  "validation": {"n": table.calibration.get("n"), "given": str(given[engine].path)}}
                continue
            v = validate_table(LatencyTable.load(path), lat.validate_archs, self.cfg.seed, self.progress, lat.repeats)
            m = v.metrics()
            latency_scatter(path.with_suffix(".validation.png"), v.measured, v.raw, v.calibrated_loo,
                            f"{table.describe()}: {m['n']} random archs")
            tables[engine] = {"lut": str(path), "setting": table.describe(), "entries": table.entries(),
                              "validation": m}
        return LatencyResult(tables=tables, input=setting.as_dict())

    def _luts(self) -> list[str]:
        """The latency stage's tables, one per candidate engine."""
        return [t["lut"] for t in self.results.latency.tables.values()]

    def _tables(self):
        from ..latency.table import EngineTables

        return EngineTables.load(self._luts())

    # -- search
    def _speed(self) -> dict:
        """The machine's speed when the search starts against the latency tables (nasdeploy.search.speed), and the
        rescaled tables the search uses; measured once per run and kept in search/speed.json, so that a search
        resumed after a kill finds the same tables, target and aim."""
        from ..latency import LatencyTable
        from ..search.speed import check_speed, headroom, rescaled

        path = self.out / "search" / "speed.json"
        kept = _read_kept(path)
        if kept is not None:
            return kept
        from ..bench.timing import Clock

        s, b = self.cfg.search, self.cfg.bench
        if s.speed_archs == 0:  # no check asked: the tables as measured, no measured headroom
            kept = {"checks": {}, "headroom": 0.0, "luts": self._luts()}
            write_json(path, kept)
            return kept
        clock = Clock(repeats=b.repeats, rounds=b.rounds, confidence=s.latency_confidence)
        checks = check_speed(self._tables(), clock, s.speed_archs, self.cfg.seed, self.progress)
        luts = [str(rescaled(LatencyTable.load(self.lut_path(e)), c.factor,
                             self.out / "search" / "tables" / self.lut_path(e).name).path)
                for e, c in checks.items()]
        kept = {"checks": {e: c.as_dict() for e, c in checks.items()}, "headroom": round(headroom(checks), 4),
                "luts": luts}
        write_json(path, kept)
        return kept

    def _aim(self, tables, target: float, headroom: float) -> tuple[float, float]:
        """(what the search runs under: ``target / (1 + headroom)``, never below 5% over the fastest possible
        architecture nor above the target; the headroom that leaves)."""
        floor = 1.05 * tables.fastest()[1]
        aim = max(target / (1 + headroom), min(floor, target))
        return round(aim, 4), round(target / aim - 1, 4)

    def stage_search(self) -> SearchStageResult:
        from ..latency.table import EngineTables
        from ..search import SearchConfig, SearchInputs, auto_target, search

        s = self.cfg.search
        speed = self._speed()
        tables = EngineTables.load(speed["luts"])
        target = s.target_ms if s.target_ms is not None else auto_target(tables, self.cfg.space, self.cfg.seed)
        aim, headroom = self._aim(tables, target, speed["headroom"] if s.latency_headroom == "auto"
                                  else float(s.latency_headroom))
        cfg = SearchConfig(target_ms=aim, objectives=("accuracy",), population=s.population,
                           evaluations=s.evaluations, finalists=s.finalists, race_images=s.race_images,
                           race_calib_images=s.race_calib_images, time_repeats=self.cfg.bench.repeats,
                           time_rounds=self.cfg.bench.rounds, latency_confidence=s.latency_confidence,
                           seed=self.cfg.seed,
                           calib_batches=s.calib_batches,
                           calib_batch_size=64, eval_images=s.eval_images, device=self.device)
        inp = SearchInputs(space=self.cfg.space, supernet=str(self.out / "supernet" / "supernet.pt"),
                           lut=speed["luts"], data=self.cfg.data, device=self.device)
        r = search(inp, cfg, self.out / "search", progress=self.progress)
        if r.best is None:
            raise UsageError(f"no architecture met {aim} ms: raise search.evaluations or the target")
        return SearchStageResult(target_ms=target, aim_ms=aim, headroom=headroom, speed=speed,
                                 fastest_ms=r.fastest_ms, trials=len(r.candidates),
                                 front=[asdict(c) for c in r.front], best=asdict(r.best), references=r.references,
                                 fronts_by_engine=r.fronts_by_engine, spread=r.spread, resolved_front=r.resolved,
                                 choice=r.choice, splits=r.splits, evaluation=r.evaluation,
                                 card=str(self.out / "search" / "best.toml"),
                                 pareto_png=str(self.out / "search" / "pareto.png"), finalists=r.finalists,
                                 chosen=r.chosen)

    # -- fine-tune the chosen architecture from its inherited weights
    def stage_finetune(self) -> FinetuneResult:
        from ..finetune import finetune

        f = FinetuneConfig(**{**asdict(self.cfg.finetune), "seed": self.cfg.seed, "device": self.device})
        card = finetune(str(self.out / "search" / "best.toml"), self.out / "finetune", f, self.cfg.data,
                        progress=self.progress)
        return FinetuneResult(card=str(card), steps=f.steps, batch_size=f.batch_size, lr=f.lr)

    def _deployed_card(self) -> Path:
        src = self.out / "finetune" / "model.toml"
        return src if src.exists() else self.out / "search" / "best.toml"

    # -- export every candidate engine into one folder (the gate is the accuracy stage's, on the test split)
    def stage_export(self) -> ExportStageResult:
        from ..data import BUILTIN
        from ..export.api import ExportOptions, export_model
        from ..quantize import QuantOptions

        live, skipped = self.candidates()
        data = None if self.cfg.data == BUILTIN else self.cfg.data
        opt = ExportOptions(engines=live, force=True, parity_images=self.cfg.export.parity_images, data=data,
                            budget=self.cfg.deploy.budget, quant=QuantOptions(images=self.cfg.deploy.calib_images),
                            force_accuracy=True, gate_images=min(1000, self.cfg.accuracy_images))
        r = export_model(str(self._deployed_card()), self.out / "export", opt=opt)
        return ExportStageResult(out=str(r.out), artefacts=r.artefacts, engines=list(r.manifest["engines"]),
                                 skipped=skipped, fold=r.fold_report, parity=[p.as_dict() for p in r.parity],
                                 quantization=r.quantization)

    # -- every exported engine through the accuracy gate, on the gate's images (search-validation, never test)
    def stage_accuracy(self) -> AccuracyResult:
        from ..data import BUILTIN
        from ..evaluate import Accuracy
        from ..export.manifest import ExportFolder
        from ..gate import GATE_SPLIT, gate_of, held_out

        export = ExportFolder.open(self.out / "export")
        data = None if self.cfg.data == BUILTIN else self.cfg.data
        held = held_out(export.plain(), export.setting, data, self.cfg.accuracy_images, batch=200, split=GATE_SPLIT)
        n = len(held.labels)

        def scored(logits) -> dict:
            return Accuracy.of(logits, held.labels).as_dict()

        engines = {}
        for engine in export.engines:
            runner = export.runner(engine, self._engine_device(engine), (1, 200))
            lo, hi = runner.batch_range
            gate = gate_of(runner, held, (lo, hi or 200), self.cfg.deploy.budget)
            engines[engine] = scored(gate.outputs) | {"gate": gate.as_dict(), "files": runner.files}
        return AccuracyResult(images=n, split=held.split, reference="torch:fp32 (the folded model in PyTorch)",
                              torch_folded=scored(held.reference), engines=engines)

    # -- bench: exactly the exported files, judged against the target at the latency batch
    def stage_bench(self) -> BenchStageResult:
        from ..bench.run import BenchOptions, bench_in_clean_process
        from ..plots import throughput_plot

        b = self.cfg.bench
        batches = b.batches if self.device == "cpu" else sorted(set(b.batches) | {256})
        opt = BenchOptions(self.device, batches=batches, repeats=b.repeats, rounds=b.rounds, progress=self.progress,
                           target_ms=self.results.search.target_ms, target_batch=self.cfg.latency.batch,
                           confidence=self.cfg.search.latency_confidence)
        res = bench_in_clean_process([self.out / "export"], opt)
        write_json(self.out / "bench.json", res.as_dict())
        series: dict[str, list] = {}
        for r in res.rows:
            series.setdefault(f"{r.backend} {r.dtype}", []).append((r.batch, r.throughput))
        throughput_plot(self.out / "bench.png", series, f"searched model on {res.environment['device_name']}")
        return BenchStageResult(bench_json=str(self.out / "bench.json"), environment=res.environment,
                                rows=[asdict(r) for r in res.rows], skipped=res.skipped,
                                failed=res.failed)

    # -- deploy: the one rule (nasdeploy.deploy), then the chosen engine's files, byte for byte
    def stage_deploy(self) -> DeployResult:
        from ..backends import reference_engine
        from ..deploy import choose_engine
        from ..export.manifest import ExportFolder

        acc, rows = self.results.accuracy, self.results.bench.rows
        batch = self.cfg.latency.batch if self.cfg.latency.batch in {r["batch"] for r in rows} else rows[0]["batch"]
        speed = {f"{r['backend']}:{r['dtype']}": r for r in rows if r["batch"] == batch and r.get("files")}
        table = []
        for engine, a in acc.engines.items():
            r = speed.get(engine)
            table.append({"engine": engine, "top1": a["top1"], "top1_ci95": a["top1_ci95"], "gate": a["gate"],
                          "median_ms": r["latency"]["median"] if r else None,
                          "upper_ms": r["latency"].get("upper") if r else None,
                          "round_medians": r["latency"].get("round_medians") if r else None,
                          "verdict": (r.get("target") or {}).get("verdict") if r else None,
                          "throughput": r["throughput"] if r else None,
                          "vs_reference": r.get("vs_reference") if r else None,
                          "files": r["files"] if r else None, "gated_files": a["files"]})
        reference = ":".join(reference_engine(self.device))
        chosen = choose_engine(table, reference)
        if chosen is None:
            raise UsageError("no exported engine passed the accuracy gate and was timed: see the accuracy stage; "
                             "raise deploy.budget or add the reference engine to deploy.engines")
        best = next(c for c in table if c["engine"] == chosen["engine"])
        export = ExportFolder.open(self.out / "export")
        promise = self._promise(chosen["engine"], speed.get(chosen["engine"]), batch)
        shipped = self._ship(export, chosen["engine"], promise)
        searched = self.results.search.best.get("engine")
        test = self._test(export, chosen["engine"])
        return DeployResult(**chosen, batch=batch, budget=self.cfg.deploy.budget, vs_reference=best["vs_reference"],
                            deployed=str(self.out / "deployed"), shipped_files=shipped, timed_files=best["files"],
                            gated_files=best["gated_files"], same_files=shipped == best["files"] == best["gated_files"],
                            searched_engine=searched, search_targeted_it=searched == chosen["engine"],
                            latency_tables={e: t["lut"] for e, t in self.results.latency.tables.items()},
                            candidates=table, test=test, latency=promise)

    def _test(self, export, engine: str) -> dict:
        """The shipped engine on the test split, once: the accuracy figure the report quotes."""
        import torch

        from ..data import BUILTIN, labelled_batches
        from ..evaluate import Accuracy
        from ..gate import chunked

        data = None if self.cfg.data == BUILTIN else self.cfg.data
        batches, _ = labelled_batches(data, "test", export.setting, self.cfg.accuracy_images, batch=200)
        labels = torch.cat([y for _, y in batches])
        runner = export.runner(engine, self._engine_device(engine), (1, 200))
        lo, hi = runner.batch_range
        logits = chunked(runner, [x for x, _ in batches], lo, hi or 200)
        return {"engine": engine, "split": "test", **Accuracy.of(logits, labels).as_dict()}

    def _promise(self, engine: str, row: dict | None, batch: int) -> dict:
        """What the search promised for the shipped engine and what the bench timed, by the same statistic (the
        median of round medians): the target and its confidence, the table's prediction, the search's measurement
        of the chosen architecture on this engine (every round it was timed in), the bench latency with its
        bounds, and the verdict (meets: the upper bound under the target; misses: the lower bound over it;
        undecided)."""
        from ..bench.stats import RoundLatency

        se = self.results.search
        ch = se.chosen or {}
        target, confidence = se.target_ms, self.cfg.search.latency_confidence
        measured = (ch.get("measured_by_engine") or {}).get(engine)
        lat = RoundLatency.of(row["latency"]["round_medians"], confidence) if row else None
        bench_ms = lat.median if lat else None
        verdict = lat.verdict(target) if lat else None
        searched = (ch.get("latency_by_engine") or {}).get(engine)
        return {"engine": engine, "batch": batch, "target_ms": target, "confidence": confidence,
                "predicted_ms": (ch.get("predicted_by_engine") or {}).get(engine), "search_measured_ms": measured,
                "search_latency": searched, "disagreement": disagreement(searched, lat, target),
                "bench_median_ms": bench_ms, "bench_latency": lat.as_dict() if lat else None,
                "bench_vs_search": bench_ms / measured if bench_ms and measured else None,
                "verdict": verdict, "meets_target": None if verdict is None else verdict == "meets",
                "statistic": "median of round medians", "warning": lat.stability.warning if lat else None}

    def _ship(self, export, engine: str, promise: dict) -> dict[str, str]:
        """Copy the chosen engine's files (and a manifest of it alone, with the latency target it was chosen
        under) into OUT/deployed; their hashes."""
        from ..export.manifest import MANIFEST, sha256

        dst = self.out / "deployed"
        tmp = self.out / ".deployed.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        files = export.check_files(engine)
        keep = set(files) | {export.manifest["pytorch"]["file"]}
        for name in keep:
            shutil.copy2(export.path / name, tmp / name)
        m = dict(export.manifest, engines={engine: export.entry(engine)},
                 latency_target={"target_ms": promise["target_ms"], "batch": promise["batch"], "engine": engine,
                                 "confidence": promise["confidence"]})
        write_json(tmp / MANIFEST, m)
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
        return {name: sha256(dst / name) for name in files}


def _read_kept(path: Path) -> dict | None:
    """A speed check kept by an earlier run of the search stage, where it is whole and its tables are there."""
    import json

    try:
        kept = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    ok = isinstance(kept, dict) and isinstance(kept.get("luts"), list) and kept["luts"] \
        and all(isinstance(p, str) and Path(p).is_file() for p in kept["luts"]) \
        and isinstance(kept.get("headroom"), (int, float))
    return kept if ok else None


def disagreement(searched: dict | None, bench: RoundLatency | None, target: float) -> str | None:
    """Where the search's rounds and the bench's rounds of one engine disagree beyond both bounds (the machine's
    speed changed between the two timings by more than either saw), what that means for the verdict; else None."""
    from ..bench.stats import RoundLatency

    if not searched or bench is None:
        return None
    s = RoundLatency.of(searched["round_medians"], bench.confidence)
    if s.overlaps(bench):
        return None
    return (f"the search timed it at {s.median:.3f} ms [{s.lower:.3f}, {s.upper:.3f}] ({s.verdict(target)}) and the "
            f"bench at {bench.median:.3f} ms [{bench.lower:.3f}, {bench.upper:.3f}]: the machine's speed changed "
            "between the two timings by more than either's bounds, so neither verdict speaks for the other; time the "
            "deployed folder again (nasdeploy bench DIR/deployed) when the machine is quiet")


def _differences(a, b, ignore: set[str] = frozenset(), where: str = "") -> list[tuple[str, object, object]]:
    """(key path, a's value, b's value) wherever two configurations differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k in ignore and not where:
                continue
            out += _differences(a.get(k), b.get(k), ignore, f"{where}{k}.")
        return out
    return [] if a == b else [(where.rstrip("."), a, b)]


def _check_given(table, st) -> None:
    """A table given in latency.tables must be for the run's own setting."""
    want = st.new_table().setting()
    diff = {k: (v, want[k]) for k, v in table.setting().items() if k != "device" and v != want[k]}
    if diff:
        raise UsageError(f"latency table {table.path} was measured for other settings than this run "
                         f"({', '.join(f'{k}: {a} vs {b}' for k, (a, b) in diff.items())}): remove it from "
                         "latency.tables")


def run_pipeline(cfg: PipelineConfig, progress: bool = True, echo: Callable[[str], None] | None = None,
                 stop_after: str | None = None) -> tuple[PipelineResults, Path | None]:
    """Run (or finish) the pipeline; its results, and the report once every stage is done (None before)."""
    from .report import write_report

    p = Pipeline(cfg, progress, echo)
    results = p.run(stop_after)
    if stop_after and stop_after != Pipeline.STAGES[-1]:
        return results, None
    return results, write_report(p.out, cfg, results, provenance())
