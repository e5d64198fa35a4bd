"""`verify`: top-1/top-5 on the test split of a folder, with the model's own preprocessing, against the card's
published numbers; for an export folder, exactly the files of one of its engines."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import data as D
from .backends import RunnerSpec, make_runner, require, tf32_mode
from .device import check_device
from .errors import DataError
from .evaluate import check_reference, evaluate
from .export.manifest import ExportFolder, open_export
from .progress import progress_bar
from .quantize import QuantOptions
from .zoo import resolve


@dataclass
class VerifyOptions:
    weights: str | None = None
    device: str = "cpu"
    backend: str = "torch"  # for a model; an export folder: the engine (--engine) instead
    dtype: str = "fp32"
    engine: str | None = None  # BACKEND:PRECISION of an export folder (default: its first engine)
    tolerance: float = 0.1
    batch_size: int = 50
    workers: int = 2
    limit: int | None = None
    calib_data: str | None = None
    quant: QuantOptions = field(default_factory=QuantOptions)
    budget: float = 1.0  # the accuracy gate re-run for an INT8 engine gated on another instruction set
    progress: bool = True
    tf32: bool = False  # CUDA fp32: TF32 convolutions (off: fp32 means float32)


@dataclass
class VerifyResult:
    model: str
    backend: str
    dtype: str
    device: str
    images: int
    top1: float
    top5: float
    reference_top1: float | None
    reference_top5: float | None
    tolerance: float
    passed: bool | None
    reference_source: str
    preprocessing: dict | None = None  # the input setting the images were prepared for
    files: dict | None = None  # an export's files that were scored, with their sha256
    isa_note: str | None = None  # an INT8 engine gated on another instruction set: why it was gated again
    gate: dict | None = None  # that gate, on these images

    def as_dict(self) -> dict:
        return asdict(self)


def verify(spec: str, data: str, opt: VerifyOptions | None = None) -> VerifyResult:
    """Top-1/top-5 of ``spec`` (a model, or an export folder) on the test split of ``data`` (``val/``), with the
    preprocessing the model records, checked against its card's published numbers."""
    opt = opt or VerifyOptions()
    with tf32_mode(opt.tf32):
        return _verify(spec, data, opt)


def _verify(spec: str, data: str, opt: VerifyOptions) -> VerifyResult:
    check_device(opt.device)
    export = open_export(spec)
    if export is not None:
        engine = opt.engine or next(iter(export.engines))
        setting, reference = export.setting, {}
        run = export.runner(engine, opt.device, (1, opt.batch_size))
        backend, dtype = export.engine(engine).backend, export.engine(engine).dtype
    else:
        if opt.backend != "torch" or opt.dtype != "fp32":
            require(opt.backend, opt.dtype, opt.device)
        model = resolve(spec, opt.weights)
        setting = model.setting
        reference = model.card.reference if model.card is not None else {}
        backend, dtype = opt.backend, opt.dtype
        run = _runner(model, opt, data)
    if data == D.BUILTIN:  # the built-in images' test split
        root, ds, classes = f"the built-in {D.BUILTIN} test images", D.dataset(data, "test", setting), \
            D.num_classes(data)
    else:
        root = D.resolve_split(data, "test")
        ds = D.image_folder(root, setting.eval_transform())
        classes = len(ds.classes)
    if classes != setting.num_classes:
        raise DataError(f"{root}: {classes} classes, but {spec} predicts {setting.num_classes}: give the matching "
                        "validation folder")
    if opt.limit:
        ds = torch.utils.data.Subset(ds, list(range(min(opt.limit, len(ds)))))
    loader = D.Loader(ds, opt.workers, batch_size=opt.batch_size)  # an unreadable image: one line
    lo, hi = run.batch_range if export is not None else (1, None)
    on_device = backend == "torch" and dtype == "fp32" and export is None
    bar = progress_bar(opt.progress)
    if bar:
        task = bar.add_task(f"verify {spec} ({backend} {dtype})", total=len(ds))
        bar.start()
    try:
        forward = run if lo <= 1 and hi is None else _padded(run, lo, hi)
        acc = evaluate(forward, loader, opt.device if on_device else "cpu",
                       progress=(lambda n: bar.update(task, advance=n)) if bar else None)
    finally:
        if bar:
            bar.stop()
    result = VerifyResult(str(spec), backend, dtype, opt.device, acc.images, acc.top1, acc.top5, None,
                          reference.get("top5"), opt.tolerance, None, reference.get("source", ""),
                          setting.as_dict(), getattr(run, "files", None))
    chk = check_reference(acc.top1, reference, opt.tolerance)
    result.reference_top1, result.passed = chk.reference_top1, chk.passed
    if export is not None:
        why = export.isa_mismatch(engine)
        if why:
            result.isa_note = f"{engine} {why}: its accuracy gate was run again here"
            result.gate = _regate(export, run, data, opt.budget, lo, hi)
    return result


def _runner(model, opt: VerifyOptions, data: str):
    if opt.backend == "torch" and opt.dtype == "fp32":
        return model.net.to(opt.device)
    plain, _ = model.folded()  # an artefact of the folded model, verified the same way
    calib = None
    if opt.dtype == "int8":
        from .quantize import calibration_images

        calib = calibration_images(model.setting, opt.calib_data or data, opt.quant)
    return make_runner(RunnerSpec(opt.backend, model.shape(opt.batch_size), opt.device, opt.dtype, dynamic_batch=True),
                       plain, calibration=calib)


def _padded(run, lo: int, hi: int | None):
    from .gate import chunked

    return lambda x: chunked(run, [x], lo, hi)


def _regate(export: ExportFolder, run, data: str, budget: float, lo: int, hi: int | None) -> dict:
    """The accuracy gate of an engine against the export's float32 model, on the gate's images of ``data`` (its
    search-validation split: the gate decides, so it never reads the test images verify reports on). A folder with
    only test images cannot gate without reading them: the gate is then not run, and says so."""
    from .gate import GATE_SPLIT, gate_of, held_out

    try:
        if Path(data).is_dir() and not any((Path(data) / s).is_dir() for s in ("train", GATE_SPLIT)):
            raise DataError("no train/ or search_val/ images")
        held = held_out(export.plain(), export.setting, data, 1000, split=GATE_SPLIT)
    except DataError as e:
        return {"passed": None, "split": GATE_SPLIT,
                "not_run": f"{data}: {e}: the gate decides, so it does not score the test images; give a folder "
                           "with train/ to gate this engine on this CPU"}
    return gate_of(run, held, (lo, hi), budget).as_dict()
