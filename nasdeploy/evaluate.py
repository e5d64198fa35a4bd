"""Accuracy: top-1/top-5, BN recalibration, subnet evaluation and the check against reference numbers."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn


def wilson(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (percent) for a binomial proportion: 95% by default, sound near 0% and 100%."""
    if n <= 0:
        return 0.0, 100.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


@dataclass
class Accuracy:
    top1: float
    top5: float
    images: int

    @property
    def top1_ci(self) -> tuple[float, float]:
        """95% interval of the top-1 from the number of evaluation images."""
        return wilson(round(self.top1 * self.images / 100.0), self.images)

    @classmethod
    def counted(cls, c1: int, c5: int, n: int) -> "Accuracy":
        return cls(100.0 * c1 / max(n, 1), 100.0 * c5 / max(n, 1), n)

    @classmethod
    def of(cls, logits: torch.Tensor, labels: torch.Tensor) -> "Accuracy":
        """Top-1/top-5 of ``logits`` (one row per image) against ``labels``."""
        return cls.counted(*topk_correct(logits, labels), len(labels))

    def as_dict(self) -> dict:
        lo, hi = self.top1_ci
        return {"top1": self.top1, "top1_ci95": [round(lo, 3), round(hi, 3)], "top5": self.top5,
                "images": self.images}


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: Iterable[int] = (1, 5)) -> list[int]:
    kmax = min(max(ks), logits.shape[1])
    # a stable sort: tied logits rank by class index, so top-1 is argmax's class whatever k is asked with
    # (topk leaves the order of ties undefined, and INT8 logits tie)
    pred = logits.sort(dim=1, descending=True, stable=True).indices[:, :kmax]
    hit = pred.eq(labels.view(-1, 1))
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor] | nn.Module, batches: Iterable,
             device: str | torch.device = "cpu", progress: Callable[[int], None] | None = None) -> Accuracy:
    """Top-1/top-5 (percent) of ``forward`` over ``(images, labels)`` batches."""
    if isinstance(forward, nn.Module):
        forward.eval()
    c1 = c5 = n = 0
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        out = forward(x)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out)
        a, b = topk_correct(out.float().to(y.device), y)
        c1, c5, n = c1 + a, c5 + b, n + len(y)
        if progress:
            progress(len(y))
    return Accuracy.counted(c1, c5, n)


@torch.no_grad()
def recalibrate_bn(forward: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, batches: Iterable,
                   device: str | torch.device = "cpu") -> int:
    """Reset every BN's running statistics and re-estimate them (cumulative average) on ``batches``.

    ``forward`` runs the path to calibrate (a subnet, or the supernet along one architecture);
    only the BNs it visits get statistics, which is all that matters for that path.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    n = 0
    try:
        for x, *_ in batches:
            forward(x.to(device))
            n += 1
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was_training)
    return n


def recalibrated_subnet(supernet, arch, calib_batches: Iterable, device: str | torch.device = "cpu") -> nn.Module:
    """An architecture extracted from the supernet with its BN statistics re-estimated, in eval mode."""
    net = supernet.extract(arch).to(device)
    recalibrate_bn(net, net, calib_batches, device)
    return net.eval()


def evaluate_subnet(supernet, arch, calib_batches: Iterable, eval_batches: Iterable,
                    device: str | torch.device = "cpu") -> Accuracy:
    """The supernet's estimate of an architecture's accuracy: extract, recalibrate BN, evaluate."""
    return evaluate(recalibrated_subnet(supernet, arch, calib_batches, device), eval_batches, device)


@dataclass
class ReferenceCheck:
    measured_top1: float
    reference_top1: float | None
    tolerance: float
    passed: bool | None


def check_reference(measured_top1: float, reference: dict, tolerance: float = 0.1) -> ReferenceCheck:
    ref = reference.get("top1")
    if ref is None:
        return ReferenceCheck(measured_top1, None, tolerance, None)
    return ReferenceCheck(measured_top1, float(ref), tolerance, abs(measured_top1 - float(ref)) <= tolerance)
