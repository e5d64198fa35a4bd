"""Estimates that can tell architectures apart: per-image records on the same search-validation images, compared
paired (the difference of two architectures on the same images).

An estimate keeps, per image, whether the subnet's top-1 was right and its cross-entropy loss. Two architectures
scored on the same images are compared by the mean of their per-image differences with its 95% interval: much
narrower than two independent top-1 intervals, which overlap long after the difference is established.
"""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

CRITERIA = ("top1", "loss")


@dataclass
class Estimate:
    top1: float  # percent
    loss: float  # mean cross-entropy
    correct: np.ndarray  # bool per image
    losses: np.ndarray  # float32 per image

    @property
    def images(self) -> int:
        return len(self.correct)

    def score(self, criterion: str) -> float:
        """Higher is better: top-1 in percent, or the negated mean loss."""
        return self.top1 if criterion == "top1" else -self.loss

    def per_image(self, criterion: str) -> np.ndarray:
        return self.correct.astype(np.float64) * 100.0 if criterion == "top1" else -self.losses.astype(np.float64)

    def to_attrs(self) -> dict:
        """JSON-able form for a trial's user attributes (packed bits and float16 losses, base64)."""
        return {"top1": self.top1, "loss": self.loss, "images": self.images,
                "correct_b64": base64.b64encode(np.packbits(self.correct).tobytes()).decode(),
                "losses_b64": base64.b64encode(self.losses.astype(np.float16).tobytes()).decode()}

    @classmethod
    def from_attrs(cls, d: dict) -> "Estimate":
        n = int(d["images"])
        bits = np.unpackbits(np.frombuffer(base64.b64decode(d["correct_b64"]), dtype=np.uint8))[:n].astype(bool)
        losses = np.frombuffer(base64.b64decode(d["losses_b64"]), dtype=np.float16).astype(np.float32)
        return cls(float(d["top1"]), float(d["loss"]), bits, losses)


def paired(a: Estimate, b: Estimate, criterion: str = "top1") -> tuple[float, float, float]:
    """(mean of a - b over the same images, and its 95% interval) in the criterion's units (higher is better)."""
    if a.images != b.images:
        raise ValueError("paired comparison needs estimates on the same images")
    d = a.per_image(criterion) - b.per_image(criterion)
    mean = float(d.mean())
    half = 1.959964 * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
    return mean, mean - half, mean + half


@torch.no_grad()
def estimate(net: nn.Module, batches, device: str = "cpu") -> Estimate:
    """Per-image top-1 hits and cross-entropy of ``net`` (eval mode) on (images, labels) batches."""
    net.eval()
    correct, losses = [], []
    for x, y in batches:
        logits = net(x.to(device)).float().cpu()
        correct.append(logits.argmax(dim=1) == y)
        losses.append(nn.functional.cross_entropy(logits, y, reduction="none"))
    c, l = torch.cat(correct).numpy(), torch.cat(losses).numpy().astype(np.float32)
    return Estimate(100.0 * float(c.mean()), float(l.mean()), c, l)
