"""`export`: fold, then build each asked engine (backend + precision) through the backend registry, in one folder,
each with a parity check; reduced-precision engines also pass the accuracy gate or are refused."""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UsageError
from ..fold import fold
from ..io import provenance, write_json
from ..quantize import QuantOptions
from ..zoo import find_card, input_size_of, load_any, save_checkpoint
from .onnx import ExportError
from .parity import Parity, check_parity, held_out, real_batches

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    onnx: bool = True
    trt: bool = False
    aoti: bool = False
    fp16: bool = False
    engines: list[tuple[str, str]] = field(default_factory=list)  # more (backend, precision) pairs
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

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def all_engines(self) -> list[tuple[str, str]]:
        """The flags as (backend, precision) pairs, in build order, without repeats."""
        dt = "fp16" if self.fp16 else "fp32"
        pairs = [("onnxruntime", "fp32")] if self.onnx else []
        pairs += [("tensorrt", dt)] if self.trt else []
        pairs += [("aoti", dt)] if self.aoti else []
        pairs += list(self.engines)
        return list(dict.fromkeys(pairs))


@dataclass
class ExportResult:
    out: Path
    artefacts: dict[str, str] = field(default_factory=dict)
    parity: list[Parity] = field(default_factory=list)
    fold_report: dict | None = None
    gates: dict[str, dict] = field(default_factory=dict)
    quantization: dict[str, dict] = field(default_factory=dict)


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


def engine_name(backend: str, dtype: str) -> str:
    return f"{backend}:{dtype}"


def _preflight(out: Path, opt: ExportOptions) -> list[tuple[str, str, str]]:
    """Everything that can be refused is refused before anything is written: (backend, precision, device)."""
    from ..backends import check_device, get_backend, require

    if out.exists() and not opt.force:
        raise UsageError(f"{out} already exists: pass --force to replace it, or choose another --out")
    device = check_device(opt.resolved_device())
    engines = opt.all_engines()
    if not engines:
        raise UsageError("nothing to export: give --onnx, --trt, --aoti and/or --engines")
    planned = []
    for backend, dtype in engines:
        if backend == "tensorrt":
            from ..backends.tensorrt import _trt

            _trt()  # the install hint, in one line
        dev = get_backend(backend).export_device(device)
        require(backend, dtype, dev)
        planned.append((backend, dtype, dev))
    if opt.parity_images < 1:
        raise UsageError(f"--parity-images must be at least 1, got {opt.parity_images}")
    if opt.gate_images < 1:
        raise UsageError(f"--gate-images must be at least 1, got {opt.gate_images}")
    if any(d == "int8" for _, d, _ in planned):
        opt.quant.check()
    return planned


def export_model(spec: str, out: str | Path | None = None, weights: str | None = None,
                 opt: ExportOptions | None = None) -> ExportResult:
    from ..backends import Sources, Target, get_backend

    opt = opt or ExportOptions()
    out = Path(out) if out is not None else default_out(spec)
    planned = _preflight(out, opt)
    model = load_any(spec, weights).eval()
    size = input_size_of(spec, model)
    small = model.stride_plan is not None
    plain, rep = fold(model, input_size=min(size, 64)) if opt.fold else (model, None)
    calib = None
    if any(d == "int8" for _, d, _ in planned):
        from ..quantize import calibration_images

        calib = calibration_images(size, small, opt.calib_data or opt.data, opt.quant)
    out.parent.mkdir(parents=True, exist_ok=True)  # the work folder sits beside OUT: renamed into place at the end
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    result = ExportResult(out, fold_report=rep.as_dict() if rep else None)
    try:
        save_checkpoint(plain, work / "model.pt")
        result.artefacts["pytorch"] = "model.pt"
        real = real_batches(size, small, opt.data, opt.parity_images)
        src = Sources(plain, work, (3, size, size), calib)
        lo, opt_b, hi = opt.batch
        held = None
        for backend, dtype, device in planned:
            be = get_backend(backend)
            # every call an artefact gets stays inside its batch range
            target = Target((opt_b, 3, size, size), (lo, hi) if opt.dynamic else (opt_b, opt_b), device, dtype)
            path = be.build(src, target)
            runner = be.load(src, path, target)
            name = engine_name(backend, dtype)
            if path is not None:
                result.artefacts[name] = str(Path(path).relative_to(work))
            rng = target.batch_range
            result.parity.append(check_parity(model, runner, backend, dtype, size, real, max_batch=rng[1],
                                              min_batch=rng[0]))
            if dtype != "fp32":
                held = held or held_out(plain, size, small, opt.data, opt.gate_images)
                result.gates[name] = _gate(runner, held, rng, opt, name)
        result.quantization = dict(src.quant_reports)
        write_json(work / "parity.json", {"model": str(spec), "folded": opt.fold, "fold": result.fold_report,
                                          "batch": list(opt.batch), "dynamic_batch": opt.dynamic,
                                          "input_size": size, "engines": [engine_name(b, d) for b, d, _ in planned],
                                          "device": opt.resolved_device(),
                                          "artefacts": result.artefacts,
                                          "parity": [p.as_dict() for p in result.parity],
                                          "accuracy_gate": result.gates, "quantization": result.quantization,
                                          "provenance": provenance()})
        _copy_card(spec, work)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return result


def _gate(runner, held, rng: tuple[int, int], opt: ExportOptions, name: str) -> dict:
    """The accuracy gate of one engine on the held-out images; refuses it (nothing written) unless forced."""
    from ..gate import gate_of

    g = gate_of(runner, held, rng, opt.budget)
    if not g.passed and not opt.force_accuracy:
        raise ExportError(g.reason(name) + ": nothing written; try --calib-method entropy, --quant-exclude "
                          "depthwise, a larger --budget, or --force-accuracy to keep it anyway")
    return g.as_dict()


def load_exported(folder: str | Path, engine: str, device: str = "cpu", batch_range: tuple[int, int] = (1, 1)):
    """A runner for one engine of an export folder, on its artefact as written. ``batch_range``: the batches it
    will be called with (artefacts built for a fixed batch keep their own)."""
    import json

    from ..backends import Sources, Target, require
    from ..errors import ArtifactError
    from ..zoo import load_network

    folder = Path(folder)
    try:
        meta = json.loads((folder / "parity.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise ArtifactError(f"{folder} is not a nasdeploy export (no readable parity.json): export it again") from None
    if engine not in meta.get("engines", []):
        raise ArtifactError(f"{folder} holds no {engine} engine (it has {', '.join(meta.get('engines', []))})")
    backend, dtype = engine.split(":")
    be = require(backend, dtype, device)
    rel = meta["artefacts"].get(engine)
    if be.artefact is not None:  # built for its batch range: called only inside it
        lo, _, hi = meta["batch"]
        batch_range = (lo, hi) if meta["dynamic_batch"] else (meta["batch"][1],) * 2
    size = meta["input_size"]
    target = Target((batch_range[1], 3, size, size), batch_range, device, dtype)
    src = Sources(load_network(folder / "model.pt"), folder, (3, size, size))
    return be.load(src, folder / rel if rel else None, target)


def _copy_card(spec: str, work: Path) -> None:
    card = find_card(spec)
    if card is None:
        return
    card.checkpoint = {"file": "model.pt", "layout": "nasdeploy", "note": "folded by nasdeploy export"}
    card.stabilizers = []
    card.write(work / "card.toml")
