"""`export`: fold, then build each asked engine (backend + precision) through the backend registry, in one folder,
each with a parity check; reduced-precision engines also pass the accuracy gate or are refused. The folder is the
deployable unit: its manifest (``export.manifest``) lists every engine's files with their hashes.

A refused engine is left out and the others are written: the manifest lists the engines that passed and, under
``refused``, each refused engine with its gate; ``parity.json`` keeps every engine's parity and gate. Only when no
engine passes is nothing written (an ``ExportError``)."""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


from ..backends import Engine
from ..errors import ExportError, UsageError
from ..io import check_output, provenance, write_json
from ..quantize import QuantOptions
from ..zoo import Resolved, resolve, save_checkpoint
from .manifest import FORMAT, FORMAT_VERSION, MANIFEST, sha256
from .parity import Parity, check_parity

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    # what to build: backends.Engine (runtime, precision, threads), or (backend, precision) pairs
    engines: list = field(default_factory=lambda: [Engine("onnxruntime", "fp32")])
    batch: tuple[int, int, int] = (1, 1, 1)  # min, opt, max
    dynamic: bool = False
    fold: bool = True
    force: bool = False
    data: str | None = None
    parity_images: int = 256
    device: str = "auto"  # where the AOTInductor package runs (auto: cuda if visible, else cpu); TensorRT: cuda
    quant: QuantOptions = field(default_factory=QuantOptions)
    calib_data: str | None = None  # calibration images (train split); default: --data, else the built-in images
    budget: float = 1.0  # accuracy gate for reduced precisions: top-1 points
    gate_images: int = 1000
    force_accuracy: bool = False  # write an engine that fails the gate anyway (the failure is recorded)
    tf32: bool = False  # CUDA fp32 engines and their parity: TF32 allowed (off: fp32 means float32)

    def resolved_device(self) -> str:
        """``device`` resolved and checked (``nasdeploy.device.resolve_device``)."""
        from ..device import resolve_device

        return resolve_device(self.device)

    def all_engines(self) -> list[Engine]:
        """The engines in build order, without repeats."""
        return list(dict.fromkeys(e if isinstance(e, Engine) else Engine(*e) for e in self.engines))


def legacy_engines(onnx: bool, trt: bool, aoti: bool, fp16: bool) -> list[Engine]:
    """The engines the old flags name: --onnx (ONNX Runtime fp32), --trt and --aoti (fp32, or fp16 with --fp16)."""
    dt = "fp16" if fp16 else "fp32"
    return ([Engine("onnxruntime", "fp32")] if onnx else []) + ([Engine("tensorrt", dt)] if trt else []) + \
        ([Engine("aoti", dt)] if aoti else [])


@dataclass
class ExportResult:
    out: Path
    artefacts: dict[str, str] = field(default_factory=dict)
    parity: list[Parity] = field(default_factory=list)
    fold_report: dict | None = None
    gates: dict[str, dict] = field(default_factory=dict)
    quantization: dict[str, dict] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    # engines that failed the accuracy gate and were left out of the folder: name -> backend, precision, device,
    # gate (its figures, as in ``gates``) and reason (one line)
    refused: dict[str, dict] = field(default_factory=dict)

    @property
    def engines(self) -> list[str]:
        """The name (BACKEND:PRECISION[@THREADS]) of every engine the folder's manifest lists."""
        return list(self.manifest.get("engines", {}))

    def refusal(self) -> str | None:
        """One line saying which engines were left out, why, what was written and what to do; None if none was."""
        if not self.refused:
            return None
        names = list(self.refused)
        if len(names) == 1:  # "it loses too much accuracy: ..."
            why = "it" + self.refused[names[0]]["reason"][len(names[0]):]
        else:
            why = "; ".join(r["reason"] for r in self.refused.values())
        return f"exported to {self.out} without {', '.join(names)}: {why}: {_refusal_hint(self.refused)}"


def parse_batch(batch: int | None, dynamic: str | None) -> tuple[tuple[int, int, int], bool]:
    if dynamic:
        try:
            lo, opt, hi = (int(v) for v in dynamic.split(":"))
        except ValueError:
            raise UsageError(f"--dynamic-batch takes MIN:OPT:MAX, got '{dynamic}'") from None
        if not 1 <= lo <= opt <= hi:
            raise UsageError(f"--dynamic-batch needs 1 <= MIN <= OPT <= MAX, got {dynamic}")
        return (lo, opt, hi), True
    b = 1 if batch is None else batch
    if b < 1:
        raise UsageError(f"--batch must be at least 1, got {b}")
    return (b, b, b), False


def default_out(spec: str | Path) -> Path:
    """Where ``export MODEL`` writes without --out: exports/<model name, card or checkpoint stem>."""
    name = Path(str(spec)).name
    for suffix in (".pth.tar", ".toml", ".pt", ".pth", ".tar"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path("exports") / (name or "model")




def _preflight(out: Path, opt: ExportOptions) -> list[tuple[Engine, str]]:
    """Everything that can be refused is refused before anything is written: (engine, device)."""
    from ..backends import get_backend, require

    if out.exists() and not opt.force:
        raise UsageError(f"{out} already exists: pass --force to replace it, or choose another --out")
    check_output(out, "dir", "--out")  # the default folder too: refused now, not after the export's work
    device = opt.resolved_device()
    engines = opt.all_engines()
    if not engines:
        raise UsageError("nothing to export: give --engines (or --onnx, --trt, --aoti)")
    planned = []
    for e in engines:
        dev = get_backend(e.backend).export_device(device)
        require(e.backend, e.dtype, dev, e.threads)
        planned.append((e, dev))
    if opt.parity_images < 1:
        raise UsageError(f"--parity-images must be at least 1, got {opt.parity_images}")
    if opt.gate_images < 1:
        raise UsageError(f"--gate-images must be at least 1, got {opt.gate_images}")
    if any(e.dtype == "int8" for e, _ in planned):
        opt.quant.check()
    return planned


def export_model(spec: str | Resolved, out: str | Path | None = None, weights: str | None = None,
                 opt: ExportOptions | None = None) -> ExportResult:
    from ..backends import tf32_mode

    opt = opt or ExportOptions()
    with tf32_mode(opt.tf32):
        return _export(spec, out, weights, opt)


def _export(spec, out, weights, opt: ExportOptions) -> ExportResult:
    from ..backends import Sources, Target, get_backend
    from ..data import real_batches

    out = Path(out) if out is not None else default_out(spec.spec if isinstance(spec, Resolved) else spec)
    planned = _preflight(out, opt)
    model = spec if isinstance(spec, Resolved) else resolve(spec, weights)
    setting = model.setting
    plain, rep = model.folded() if opt.fold else (model.net, None)
    calib = None
    if any(e.dtype == "int8" for e, _ in planned):
        from ..quantize import calibration_images

        calib = calibration_images(setting, opt.calib_data or opt.data, opt.quant)
    out.parent.mkdir(parents=True, exist_ok=True)  # the work folder sits beside OUT: renamed into place at the end
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    result = ExportResult(out, fold_report=rep.as_dict() if rep else None)
    try:
        save_checkpoint(plain, work / "model.pt", setting=setting)
        result.artefacts["pytorch"] = "model.pt"
        real = real_batches(opt.data, "test", setting, opt.parity_images)
        src = Sources(plain, work, (3, setting.size, setting.size), calib)
        lo, opt_b, hi = opt.batch
        held = None
        engines: dict[str, dict] = {}
        left_out: set[str] = set()  # the files of refused engines
        for engine, device in planned:
            backend, dtype, name = engine.backend, engine.dtype, engine.name
            be = get_backend(backend)
            # every call an artefact gets stays inside its batch range
            target = Target(model.shape(opt_b), (lo, hi) if opt.dynamic else (opt_b, opt_b), device, dtype, opt.tf32,
                            engine.threads)
            path = be.build(src, target)
            runner = be.load(src, path, target)
            if path is not None:
                result.artefacts[name] = str(Path(path).relative_to(work))
            rng = target.batch_range
            parity = check_parity(model.net, runner, backend, dtype, setting.size, real, max_batch=rng[1],
                                  min_batch=rng[0])
            result.parity.append(parity)
            entry = {"backend": backend, "precision": dtype, "device": device,
                     "files": {f: sha256(work / f) for f in be.files(path)},
                     "batch_range": list(rng) if be.fixed_batch else [1, None], "parity": parity.as_dict()}
            if engine.threads:
                entry["threads"] = engine.threads
            if dtype != "fp32":
                from ..gate import gate_of, held_out

                held = held or held_out(plain, setting, opt.data, opt.gate_images)
                g = gate_of(runner, held, rng, opt.budget)
                result.gates[name] = entry["gate"] = g.as_dict()
                if not g.passed and not opt.force_accuracy:  # left out; the others are still written
                    result.refused[name] = {"backend": backend, "precision": dtype, "device": device,
                                            "gate": result.gates[name], "reason": g.reason(name)}
                    left_out |= set(entry["files"])
                    continue
            engines[name] = entry
        if result.refused and not engines:
            raise ExportError("; ".join(r["reason"] for r in result.refused.values()) + ": nothing written; "
                              + _refusal_hint(result.refused) + " anyway")
        _drop_refused(work, engines, left_out, result)
        result.quantization = dict(src.quant_reports)
        _record_isa(engines, result.quantization)
        prov = provenance()
        refused = {"refused": result.refused} if result.refused else {}
        write_json(work / "parity.json", {"model": str(model.spec), "folded": opt.fold, "fold": result.fold_report,
                                          "batch": list(opt.batch), "dynamic_batch": opt.dynamic,
                                          "input_size": setting.size, "engines": list(engines), **refused,
                                          "device": opt.resolved_device(), "artefacts": result.artefacts,
                                          "parity": [p.as_dict() for p in result.parity],
                                          "accuracy_gate": result.gates, "quantization": result.quantization,
                                          "provenance": prov})
        if model.card is not None:
            _copy_card(model, work)
        result.manifest = _write_manifest(work, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "model": str(model.spec), "name": model.name,
            "input": setting.as_dict(), "folded": opt.fold,
            "pytorch": {"file": "model.pt", "sha256": sha256(work / "model.pt")}, "engines": engines, **refused,
            "provenance": prov})
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return result


def _write_manifest(work: Path, manifest: dict) -> dict:
    """The manifest, written last: a folder holding one is a complete export."""
    write_json(work / MANIFEST, manifest)
    return manifest


def _record_isa(engines: dict[str, dict], quantization: dict[str, dict]) -> None:
    """Every CPU INT8 engine: the instruction set its graph was quantized for, calibrated and gated on."""
    from ..isa import this_cpu

    graphs = {"onnxruntime:int8": "int8", "openvino:int8": "int8-nncf"}
    for name, e in engines.items():
        q = quantization.get(graphs.get(name, ""))
        if e["precision"] == "int8" and e["device"] == "cpu" and q:
            e["quantization"] = q
            e["isa"] = {"quantized_for": q["isa_rule"], "calibrated_on": q["calibrated_on"],
                        "gated_on": this_cpu().as_dict()}


def _refusal_hint(refused: dict[str, dict]) -> str:
    """What to try for engines the gate refused (the quantization options only where an INT8 engine was)."""
    quant = "--calib-method entropy, --quant-exclude depthwise, " if any(
        r["precision"] == "int8" for r in refused.values()) else ""
    return f"try {quant}a larger --budget, or --force-accuracy to keep {'it' if len(refused) == 1 else 'them'}"


def _drop_refused(work: Path, engines: dict[str, dict], files: set[str], result: ExportResult) -> None:
    """The refused engines' ``files`` that no written engine runs from are removed, and their artefacts unlisted."""
    kept = {"model.pt"} | {f for e in engines.values() for f in e["files"]}
    for f in files - kept:
        (work / f).unlink(missing_ok=True)
    for name in result.refused:
        result.artefacts.pop(name, None)


def load_exported(folder: str | Path, engine: str, device: str | None = None,
                  batch_range: tuple[int, int | None] = (1, None)):
    """A runner for one engine of an export folder, on exactly its files (hashes checked)."""
    from .manifest import ExportFolder

    return ExportFolder.open(folder).runner(engine, device, batch_range)


def _copy_card(model: Resolved, work: Path) -> None:
    import copy

    card = copy.deepcopy(model.card)
    card.checkpoint = {"file": "model.pt", "layout": "nasdeploy", "note": "folded by nasdeploy export"}
    card.stabilizers = []
    card.write(work / "card.toml")
