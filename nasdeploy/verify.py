"""`verify`: top-1/top-5 with the official preprocessing on an ImageNet-layout folder, against the card's numbers."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.data import DataLoader

from . import data as D
from .backends import check_device, make_runner
from .errors import DataError
from .evaluate import check_reference, evaluate
from .fold import fold
from .progress import progress_bar
from .zoo import find_card, input_size_of, load_any


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

    def as_dict(self) -> dict:
        return asdict(self)


def verify(spec: str, data: str, weights: str | None = None, device: str = "cpu", backend: str = "torch",
           tolerance: float = 0.1, batch_size: int = 50, workers: int = 2, limit: int | None = None,
           progress: bool = True, dtype: str = "fp32", calib_data: str | None = None, quant=None) -> VerifyResult:
    """Top-1/top-5 of ``spec`` on ``data`` run by ``backend`` in ``dtype`` (int8: quantized on calibration images
    from the train split of ``calib_data``, default ``data``'s), checked against the card's published numbers."""
    check_device(device)
    if backend != "torch" or dtype != "fp32":
        from .backends import require

        require(backend, dtype, device)
    model = load_any(spec, weights).eval()
    card = find_card(spec)
    size = input_size_of(spec, model)
    reference = card.reference if card is not None else {}
    root = D.resolve_split(data, "val")
    ds = D.image_folder(root, D.official_eval_transform(size))
    if len(ds.classes) != model.num_classes:
        raise DataError(f"{root} has {len(ds.classes)} class folders but {spec} predicts {model.num_classes} "
                        "classes: give the matching validation folder")
    if limit:
        ds = torch.utils.data.Subset(ds, list(range(min(limit, len(ds)))))
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers)
    if backend == "torch" and dtype == "fp32":
        run = model.to(device)
    else:  # an artefact of the folded model, verified the same way
        plain, _ = fold(model, input_size=min(size, 64))
        calib = None
        if dtype == "int8":
            from .quantize import calibration_images

            calib = calibration_images(size, model.stride_plan is not None, calib_data or data, quant)
        run = make_runner(backend, plain, (batch_size, 3, size, size), device, dtype, dynamic_batch=True,
                          calibration=calib)
    bar = progress_bar(progress)
    if bar:
        task = bar.add_task(f"verify {spec} ({backend})", total=len(ds))
        bar.start()
    try:
        acc = evaluate(run, loader, device if backend == "torch" and dtype == "fp32" else "cpu",
                       progress=(lambda n: bar.update(task, advance=n)) if bar else None)
    finally:
        if bar:
            bar.stop()
    chk = check_reference(acc.top1, reference, tolerance)
    return VerifyResult(str(spec), backend, dtype, device, acc.images, acc.top1, acc.top5, chk.reference_top1,
                        reference.get("top5"), tolerance, chk.passed, reference.get("source", ""))
