"""The accuracy gate: may a reduced-precision engine replace the float32 model?

It scores the engine and the float32 reference on the same held-out real images: never the calibration images, and
never the test split, whose figures are reported (the gate chooses which engine ships; it reads the first images of
the search-validation split, carved from the training images, and records which).
Where the labels say something about the model (the float32 top-1's 95% interval lies above chance on that
data) the gate is on the top-1 drop in points. Where they do not (a 1000-class ImageNet model shown the built-in
Fashion-MNIST, random weights) it is on top-1 disagreement with float32, which bounds any accuracy change from
above: an image whose prediction did not change cannot change the accuracy.

The decision is on the estimate; its 95% interval (paired over the images, so much narrower than the two
top-1 intervals) is reported beside it, and with 1,000 images it is about +-0.5 to +-1 point wide: a budget
finer than that needs more --gate-images.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable

import torch
from torch import nn

from .errors import UsageError
from .evaluate import wilson

DEFAULT_BUDGET = 1.0  # points of top-1
# The gate chooses (which engine may ship), so it never reads the images a reported figure comes from: it scores the
# first images of the search-validation split (carved from the training images); the test split reports.
GATE_SPLIT = "search_val"


def parse_budget(value: str | float) -> float:
    try:
        b = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"the accuracy budget must be a number of top-1 points (e.g. 0.5), got '{value}'") from None
    if not 0 <= b <= 100 or b != b:
        raise UsageError(f"the accuracy budget must be between 0 and 100 points, got {value}")
    return b


@dataclass
class GateResult:
    images: int
    basis: str  # "labels": top-1 drop; "agreement": top-1 disagreement with float32 (an upper bound on the drop)
    top1_reference: float
    top1: float
    agreement: float  # % of images with the float32 model's top-1
    drop: float  # points counted against the budget
    max_rel_error: float  # largest |logit difference| / largest |reference logit| per image
    budget: float
    passed: bool  # the drop's estimate within the budget
    drop_ci95: tuple[float, float] = (0.0, 0.0)  # 95% interval of the drop (paired over the same images)
    split: str = ""  # the split its images come from (GATE_SPLIT)
    # the engine's logits the gate judged (float32, CPU), for figures beyond the gate such as top-5; not recorded
    outputs: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict:
        """The gate as recorded (manifests, reports): everything but the logits."""
        d = asdict(replace(self, outputs=None))
        del d["outputs"]
        return d

    def reason(self, engine: str) -> str:
        what = ("top-1 drops by" if self.basis == "labels" else "top-1 disagrees with float32 on")
        return (f"{engine} loses too much accuracy: {what} {self.drop:.2f} points on {self.images} held-out images "
                f"(budget {self.budget:g})")


def judge(reference: torch.Tensor, candidate: torch.Tensor, labels: torch.Tensor, data_classes: int,
          budget: float) -> GateResult:
    """The gate from the logits of float32 and of the candidate on the same labelled images."""
    n = len(labels)
    if n == 0:
        raise UsageError("the accuracy gate needs held-out images and got none")
    # the predicted class as top-1 accuracy counts it everywhere (nasdeploy.evaluate.topk_correct): INT8 logits
    # are quantized, and ties between the two largest then happen, so one rule must break them
    ref_pred, pred = top1_class(reference), top1_class(candidate)
    hits_ref = int((ref_pred == labels).sum())
    top1_ref, top1 = 100.0 * hits_ref / n, 100.0 * float((pred == labels).sum()) / n
    agreement = 100.0 * float((ref_pred == pred).sum()) / n
    informative = wilson(hits_ref, n)[0] > 100.0 / max(data_classes, 1)
    if informative:
        # per image: +1 where float32 was right and the engine is not, -1 the other way round, else 0
        d = (ref_pred == labels).double() - (pred == labels).double()
        drop = 100.0 * float(d.mean())
        half = 196.0 * float(d.std(unbiased=True)) / math.sqrt(n) if n > 1 else 100.0
        ci = (drop - half, drop + half)
    else:
        drop = 100.0 - agreement
        lo, hi = wilson(n - round(agreement * n / 100.0), n)
        ci = (lo, hi)
    scale = reference.abs().amax(1).clamp_min(1e-30)
    rel = float(((candidate - reference).abs().amax(1) / scale).max())
    return GateResult(n, "labels" if informative else "agreement", top1_ref, top1, agreement, drop, rel, budget,
                      drop <= budget, (round(ci[0], 3), round(ci[1], 3)), outputs=candidate)


def gate_of(run: Callable[[torch.Tensor], torch.Tensor], held: "HeldOut", batch_range: tuple[int, int | None],
            budget: float) -> GateResult:
    """The gate of an engine on the held-out images (the float32 reference's logits computed once, in ``held``),
    fed in calls inside its ``batch_range``: what export, bench, verify and the pipeline each run."""
    return replace(judge(held.reference, chunked(run, held.images, *batch_range), held.labels, held.classes,
                         budget), split=held.split)


# ------------------------------------------------------------------ comparing an engine's outputs with float32

def top1_class(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class as top-1 accuracy counts it everywhere (``evaluate.topk_correct``): INT8 logits are
    quantized and ties between the two largest happen, so one rule breaks them: the lowest class index among the
    largest (``topk`` leaves the order of tied values undefined: topk(1) and topk(5) disagreed)."""
    return logits.argmax(dim=1)


def agreement(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """Percent of images with the same top-1."""
    return 100.0 * float((top1_class(reference) == top1_class(candidate)).double().mean())


@dataclass
class ErrorStats:
    max_abs: float
    mean_abs: float
    median_abs: float
    max_rel: float
    mean_rel: float
    median_rel: float


def error_stats(ref: torch.Tensor, out: torch.Tensor) -> ErrorStats:
    """Absolute errors, and errors relative to each sample's largest |reference logit|."""
    ref, out = ref.double().cpu(), out.double().cpu()
    diff = (out - ref).abs()
    scale = ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    rel = diff / scale
    return ErrorStats(float(diff.max()), float(diff.mean()), float(diff.median()), float(rel.max()),
                      float(rel.mean()), float(rel.median()))


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
    """Labelled images for the accuracy gate (of ``split``), with the float32 model's logits on them."""

    images: list[torch.Tensor]
    labels: torch.Tensor
    classes: int  # classes of the data (the gate's chance level)
    reference: torch.Tensor
    split: str = GATE_SPLIT


@torch.no_grad()
def held_out_from(plain: nn.Module, batches: Iterable, classes: int, split: str = GATE_SPLIT) -> HeldOut:
    """Labelled ``(images, labels)`` batches already read, with the float32 logits of ``plain`` on them."""
    xs, ys = [], []
    for x, y, *_ in batches:
        xs.append(x)
        ys.append(y)
    reference = copy.deepcopy(plain).eval().float().cpu()
    return HeldOut(xs, torch.cat(ys), classes, torch.cat([reference(x) for x in xs]), split)


def held_out(plain: nn.Module, setting, data: str | None, images: int, batch: int = 64,
             split: str = GATE_SPLIT) -> HeldOut:
    """``images`` images of ``split`` of ``data`` (None: the built-in set; the gate's split by default, never the
    test split a figure is reported on) preprocessed for ``setting``, in batches of ``batch``, and the float32
    logits of ``plain`` on them."""
    from .data import labelled_batches

    batches, classes = labelled_batches(data, split, setting, images, batch)
    return held_out_from(plain, batches, classes, split)
