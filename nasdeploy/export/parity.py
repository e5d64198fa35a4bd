"""Parity of an exported artefact against PyTorch float32: error statistics and top-1 agreement on real images."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn


@dataclass
class ErrorStats:
    max_abs: float
    mean_abs: float
    median_abs: float
    max_rel: float
    mean_rel: float
    median_rel: float


@dataclass
class Parity:
    backend: str
    dtype: str
    random: ErrorStats
    real: ErrorStats
    top1_agreement: float  # percent of real images with the same top-1 as PyTorch float32
    images: int

    def as_dict(self) -> dict:
        return asdict(self)


def error_stats(ref: torch.Tensor, out: torch.Tensor) -> ErrorStats:
    """Absolute errors, and errors relative to each sample's largest |reference logit|."""
    ref, out = ref.double().cpu(), out.double().cpu()
    diff = (out - ref).abs()
    scale = ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    rel = diff / scale
    return ErrorStats(float(diff.max()), float(diff.mean()), float(diff.median()), float(rel.max()),
                      float(rel.mean()), float(rel.median()))


def labelled_batches(input_size: int, small: bool, data: str | None = None, images: int = 256, batch: int = 64,
                     split: str = "val") -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """Up to ``images`` real images with their labels, preprocessed as the model expects, from ``split`` of the
    user's folder or of the built-in Fashion-MNIST; and the number of classes of that data."""
    from torch.utils.data import DataLoader, Subset

    from .. import data as D

    if data and data != D.BUILTIN:
        ds = D.image_folder(D.resolve_split(data, split), D.official_eval_transform(input_size))
        classes = len(ds.classes)
    elif small:
        ds, classes = D.fashion_mnist(split), len(D.FASHION_CLASSES)
    else:
        from PIL import Image

        raw, labels = D.fashion_mnist_images(split, images)
        tf = D.official_eval_transform(input_size)
        return [(torch.stack([tf(Image.fromarray(im).convert("RGB")) for im in raw[i: i + batch]]),
                 torch.from_numpy(labels[i: i + batch].astype("int64"))) for i in range(0, len(raw), batch)], \
            len(D.FASHION_CLASSES)
    sub = Subset(ds, list(range(min(images, len(ds)))))
    return [(x, y) for x, y, *_ in DataLoader(sub, batch_size=batch)], classes


def real_batches(input_size: int, small: bool, data: str | None = None, images: int = 256,
                 batch: int = 64, split: str = "val") -> list[torch.Tensor]:
    """Real images preprocessed as the model expects: the user's folder, else the built-in Fashion-MNIST."""
    return [x for x, _ in labelled_batches(input_size, small, data, images, batch, split)[0]]


def chunks(real: list[torch.Tensor], lo: int, hi: int | None) -> list[tuple[torch.Tensor, int]]:
    """The real images regrouped into calls of ``lo..hi`` images: (batch, images that count).

    A runtime with a fixed batch (a static AOTInductor package or TensorRT profile) must never see another
    size; a short last batch is padded by repeating its own images, and the padding is not scored.
    """
    if not real:
        return []
    x = torch.cat(real)
    step = hi or len(x)
    out = []
    for i in range(0, len(x), step):
        part = x[i: i + step]
        n = len(part)
        if n < lo:
            part = part[torch.arange(lo) % n]
        out.append((part, n))
    return out


@torch.no_grad()
def chunked(run: Callable[[torch.Tensor], torch.Tensor], real: list[torch.Tensor], lo: int,
            hi: int | None) -> torch.Tensor:
    """``run``'s outputs (float32, CPU) on the real images, every call with ``lo..hi`` images (``chunks``)."""
    return torch.cat([run(part).float().cpu()[:keep] for part, keep in chunks(real, lo, hi)])


@dataclass
class HeldOut:
    """Labelled held-out images for the accuracy gate, with the float32 model's logits on them."""

    images: list[torch.Tensor]
    labels: torch.Tensor
    classes: int  # classes of the data (the gate's chance level)
    reference: torch.Tensor


@torch.no_grad()
def held_out(plain: nn.Module, input_size: int, small: bool, data: str | None, images: int) -> HeldOut:
    batches, classes = labelled_batches(input_size, small, data, images)
    xs = [x for x, _ in batches]
    reference = copy.deepcopy(plain).eval().float().cpu()
    return HeldOut(xs, torch.cat([y for _, y in batches]), classes, torch.cat([reference(x) for x in xs]))


@torch.no_grad()
def check_parity(reference: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], backend: str, dtype: str,
                 input_size: int, real: list[torch.Tensor], max_batch: int | None = None, seed: int = 0,
                 min_batch: int = 1) -> Parity:
    """``run`` against a float32 copy of ``reference`` (the caller's module is not changed), every call with
    ``min_batch..max_batch`` images."""
    reference = copy.deepcopy(reference).eval().float().cpu()
    g = torch.Generator().manual_seed(seed)
    n = max(min_batch, min(4, max_batch or 4))
    x = torch.randn(n, 3, input_size, input_size, generator=g)
    rnd = error_stats(reference(x), run(x).float().cpu())
    r, o = chunked(reference, real, min_batch, max_batch), chunked(run, real, min_batch, max_batch)
    agree = float((r.argmax(1) == o.argmax(1)).double().mean() * 100)
    return Parity(backend, dtype, rnd, error_stats(r, o), agree, len(r))
