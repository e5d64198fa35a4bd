"""`export`: fold, then ONNX / TensorRT / AOTInductor artefacts in one folder, each with a parity check."""
from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DeviceError, UsageError
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


def _preflight(out: Path, opt: ExportOptions) -> None:
    """Everything that can be refused is refused before anything is written."""
    if out.exists() and not opt.force:
        raise UsageError(f"{out} already exists: pass --force to replace it, or choose another --out")
    if opt.trt:
        from .tensorrt import _trt

        _trt()
    if opt.aoti and not torch.cuda.is_available():
        raise DeviceError("--aoti builds a CUDA package and no CUDA device is visible here: run it on the GPU machine")
    if not (opt.onnx or opt.trt or opt.aoti):
        raise UsageError("nothing to export: give --onnx, --trt and/or --aoti")
    if opt.parity_images < 1:
        raise UsageError(f"--parity-images must be at least 1, got {opt.parity_images}")


def export_model(spec: str, out: str | Path, weights: str | None = None,
                 opt: ExportOptions | None = None) -> ExportResult:
    opt = opt or ExportOptions()
    out = Path(out)
    _preflight(out, opt)
    model = load_any(spec, weights).eval()
    size = input_size_of(spec, model)
    small = model.stride_plan is not None
    plain, rep = fold(model, input_size=min(size, 64)) if opt.fold else (model, None)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
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
        if opt.trt:
            from .tensorrt import TrtRunner, build_engine

            build_engine(work / "model.onnx", work / "model.engine", opt.batch, (3, size, size), opt.fp16)
            result.artefacts["tensorrt"] = "model.engine"
            result.parity.append(check_parity(model, TrtRunner(work / "model.engine"), "tensorrt",
                                              "fp16" if opt.fp16 else "fp32", size, real, max_batch=opt.batch[2]))
        if opt.aoti:
            from ..bench.runners import AotiRunner
            from .aoti import export_aoti

            dt = "fp16" if opt.fp16 else "fp32"
            dyn = (opt.batch[0], opt.batch[2]) if opt.dynamic else False
            export_aoti(plain, work / "model.pt2", shape, "cuda", dt, dyn)
            result.artefacts["aoti"] = "model.pt2"
            runner = AotiRunner(str(work / "model.pt2"), "cuda", torch.float16 if opt.fp16 else torch.float32)
            mb = opt.batch[2] if opt.dynamic else opt.batch[1]
            result.parity.append(check_parity(model, runner, "aoti", dt, size, _rebatch(real, mb), max_batch=mb))
        write_json(work / "parity.json", {"model": str(spec), "folded": opt.fold, "fold": result.fold_report,
                                          "batch": list(opt.batch), "dynamic_batch": opt.dynamic,
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


def _rebatch(batches: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """Static AOTI packages take exactly their batch: regroup the real images (dropping a ragged tail)."""
    x = torch.cat(batches)
    n = (len(x) // size) * size
    return [x[i: i + size] for i in range(0, n, size)]


def _copy_card(spec: str, work: Path) -> None:
    card = find_card(spec)
    if card is None:
        return
    card.checkpoint = {"file": "model.pt", "layout": "nasdeploy", "note": "folded by nasdeploy export"}
    card.stabilizers = []
    card.write(work / "card.toml")
