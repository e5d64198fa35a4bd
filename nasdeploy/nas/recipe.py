"""What makes a weight-sharing supernet learn at small budgets, around FairNAS's strict fairness.

Two measured levers (ablation in ``benchmarks/README.md``, "Supernet recipe"), and one option that measured
no better than FairNAS's own gradient sum:

* **Warm start from the parent path.** The first steps train one path only, the largest choice of every
  layer (k7, e6, SE where the space has it); then every other candidate inherits the parent's weights:
  the first ``hidden`` channels of its 1x1 convolutions, BN and SE, and the centre of its depthwise kernel
  (OFA's kernel/width inheritance). After that, strict fairness trains every candidate once per step as
  usual. Without it, candidates of layers with no residual connection start as unrelated random features
  that the next layer cannot share, and at a few hundred steps nothing is learned.
* **Gradients averaged by visits** (``grad_mode="visits"``, not the default): a parameter receives the mean of
  the gradients of the paths that used it (shared layers /m, a candidate /its visits) instead of FairNAS's sum.
  With the warm start it made no difference within the 95% intervals (FairNAS space) or was worse (SCARLET-B).
* **Zero-initialised residual branches** (the last BN weight of every residual block): a new path starts
  as the identity through residual blocks, as in Goyal et al. and BigNAS.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch
from torch import nn

from .blocks import InvertedResidual
from .supernet import Supernet

GRAD_MODES = ("sum", "visits")


def parent_path(net: Supernet) -> list[int]:
    """Per layer, the index of the largest candidate (kernel, then expansion, then SE)."""
    path = []
    for i in range(len(net.layers)):
        choices = net.space.choices_at(i)
        best = max((c for c in choices if not c.skip), key=lambda c: (c.kernel, c.expansion, c.se))
        path.append(choices.index(best))
    return path


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, n: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:n])


@torch.no_grad()
def inherit_block(dst: InvertedResidual, src: InvertedResidual) -> None:
    """Give ``dst`` the weights of the larger ``src``: leading hidden channels, centre of the kernel."""
    h, k = dst.conv1.out_channels, dst.kernel
    if src.conv1.out_channels < h or src.kernel < k:
        raise ValueError("inherit_block: the source block must be at least as large as the destination")
    o = (src.kernel - k) // 2
    dst.conv1.weight.copy_(src.conv1.weight[:h])
    _copy_bn(dst.bn1, src.bn1, h)
    dst.conv2.weight.copy_(src.conv2.weight[:h, :, o: o + k, o: o + k])
    _copy_bn(dst.bn2, src.bn2, h)
    dst.conv3.weight.copy_(src.conv3.weight[:, :h])
    _copy_bn(dst.bn3, src.bn3, dst.bn3.num_features)
    if dst.mid_se is not None and src.mid_se is not None:
        r = dst.mid_se.squeeze_conv.out_channels
        dst.mid_se.squeeze_conv.weight.copy_(src.mid_se.squeeze_conv.weight[:r, :h])
        dst.mid_se.squeeze_conv.bias.copy_(src.mid_se.squeeze_conv.bias[:r])
        dst.mid_se.excite_conv.weight.copy_(src.mid_se.excite_conv.weight[:h, :r])
        dst.mid_se.excite_conv.bias.copy_(src.mid_se.excite_conv.bias[:h])


def inherit_from_parent(net: Supernet, parent: Sequence[int] | None = None) -> int:
    """Every block candidate takes the parent's weights (skips keep their identity stabilizer). Returns count."""
    parent = list(parent) if parent is not None else parent_path(net)
    n = 0
    for layer, p in zip(net.layers, parent):
        src = layer.candidates[p]
        for c in layer.candidates:
            if c is not src and isinstance(c, InvertedResidual):
                inherit_block(c, src)
                n += 1
    return n


@torch.no_grad()
def zero_init_residuals(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, InvertedResidual) and m.use_res_connect:
            nn.init.zeros_(m.bn3.weight)


@torch.no_grad()
def average_by_visits(net: Supernet, paths: Sequence[Sequence[int]]) -> None:
    """Turn the gradients summed over ``paths`` into per-parameter means over the paths that used them."""
    m = len(paths)
    if m <= 1:
        return
    in_layers = {id(p) for p in net.layers.parameters()}
    for p in net.parameters():
        if p.grad is not None and id(p) not in in_layers:
            p.grad.div_(m)
    for i, layer in enumerate(net.layers):
        for j, visits in Counter(path[i] for path in paths).items():
            if visits > 1:
                for p in layer.candidates[j].parameters():
                    if p.grad is not None:
                        p.grad.div_(visits)


def warm_start_steps(steps: int, warm_start: int) -> int:
    """-1: a third of the run (1/6 measured lower, 1/2 no better); otherwise the given count, at most steps."""
    return steps // 3 if warm_start < 0 else min(warm_start, steps)
