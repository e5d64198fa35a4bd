"""`export`: fold, then ONNX / TensorRT / AOTInductor artefacts in one folder, each with a parity check."""
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
from ..zoo import find_card, input_size_of, load_any, save_checkpoint
from .parity import Parity, check_parity, real_batches

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    onnx: bool = True
    trt: bool = False
    aoti: bool = False
    fp16: bool = False
    batch: tuple[int, int, int] = (1, 1, 1)  # min, opt, max
    dynamic: bool = False
    fold: bool = True
    force: bool = False
    data: str | None = None
    parity_images: int = 256
    device: str = "auto"  # where the AOTInductor package runs (auto: cuda if visible, else cpu); TensorRT: cuda

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


@dataclass
class ExportResult:
    out: Path
    artefacts: dict[str, str] = field(default_factory=dict)
    parity: list[Parity] = field(default_factory=list)
    fold_report: dict | None = None


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


def _preflight(out: Path, opt: ExportOptions) -> None:
    """Everything that can be refused is refused before anything is written."""
    from ..bench.runners import check_device

    if out.exists() and not opt.force:
        raise UsageError(f"{out} already exists: pass --force to replace it, or choose another --out")
    device = check_device(opt.resolved_device())
    if opt.trt:
        from .tensorrt import _trt

        _trt()
    if opt.aoti:
        from .aoti import check_aoti

        check_aoti(device, "fp16" if opt.fp16 else "fp32")
    if not (opt.onnx or opt.trt or opt.aoti):
        raise UsageError("nothing to export: give --onnx, --trt and/or --aoti")
    if opt.parity_images < 1:
        raise UsageError(f"--parity-images must be at least 1, got {opt.parity_images}")


def export_model(spec: str, out: str | Path | None = None, weights: str | None = None,
                 opt: ExportOptions | None = None) -> ExportResult:
    opt = opt or ExportOptions()
    out = Path(out) if out is not None else default_out(spec)
    _preflight(out, opt)
    device = opt.resolved_device()
    model = load_any(spec, weights).eval()
    size = input_size_of(spec, model)
    small = model.stride_plan is not None
    plain, rep = fold(model, input_size=min(size, 64)) if opt.fold else (model, None)
    out.parent.mkdir(parents=True, exist_ok=True)  # the work folder sits beside OUT: renamed into place at the end
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    result = ExportResult(out, fold_report=rep.as_dict() if rep else None)
    try:
        save_checkpoint(plain, work / "model.pt")
        result.artefacts["pytorch"] = "model.pt"
        real = real_batches(size, small, opt.data, opt.parity_images)
        shape = (opt.batch[1], 3, size, size)
        if opt.onnx or opt.trt:
            from ..bench.runners import OrtRunner
            from .onnx import export_onnx

            onnx_path = export_onnx(plain, work / "model.onnx", shape, dynamic_batch=True)
            result.artefacts["onnx"] = "model.onnx"
            result.parity.append(check_parity(model, OrtRunner(str(onnx_path)), "onnxruntime", "fp32", size, real))
        lo, hi = opt.batch[0], opt.batch[2]  # every call the artefacts get stays inside their batch range
        dt = "fp16" if opt.fp16 else "fp32"
        if opt.trt:
            from .onnx import export_onnx as _onnx
            from .tensorrt import TrtRunner, build_engine

            # strongly typed: the engine's precision is its ONNX graph's
            src = _onnx(plain, work / "model.fp16.onnx", shape, True, dtype=torch.float16) if opt.fp16 \
                else work / "model.onnx"
            build_engine(src, work / "model.engine", opt.batch, (3, size, size))
            result.artefacts["tensorrt"] = "model.engine"
            result.parity.append(check_parity(model, TrtRunner(work / "model.engine", device), "tensorrt", dt,
                                              size, real, max_batch=hi, min_batch=lo))
        if opt.aoti:
            from ..bench.runners import AotiRunner
            from .aoti import export_aoti

            rng = (lo, hi) if opt.dynamic else (opt.batch[1], opt.batch[1])
            export_aoti(plain, work / "model.pt2", shape, device, dt, rng if opt.dynamic else False)
            result.artefacts["aoti"] = "model.pt2"
            runner = AotiRunner(str(work / "model.pt2"), device, torch.float16 if opt.fp16 else torch.float32, rng)
            result.parity.append(check_parity(model, runner, "aoti", dt, size, real, max_batch=rng[1],
                                              min_batch=rng[0]))
        write_json(work / "parity.json", {"model": str(spec), "folded": opt.fold, "fold": result.fold_report,
                                          "batch": list(opt.batch), "dynamic_batch": opt.dynamic,
                                          "device": device,
                                          "artefacts": result.artefacts,
                                          "parity": [p.as_dict() for p in result.parity],
                                          "provenance": provenance()})
        _copy_card(spec, work)
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return result


def _copy_card(spec: str, work: Path) -> None:
    card = find_card(spec)
    if card is None:
        return
    card.checkpoint = {"file": "model.pt", "layout": "nasdeploy", "note": "folded by nasdeploy export"}
    card.stabilizers = []
    card.write(work / "card.toml")
