"""The deployed form of a latency table's entries: the fixed stem and head and every choice block of every
position, BN folded, with their input shapes and sizes."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..fold import fold_bn
from ..nas.blocks import InvertedResidual, classifier, get_flavour, head, separable_conv, stem
from ..nas.space import HEAD_CHANNELS, SEPARABLE_CHANNELS, STEM_CHANNELS, Choice, get_space
from ..nas.supernet import SPACE_FLAVOUR


def _out_size(h: int, stride: int) -> int:
    return (h - 1) // stride + 1  # odd kernels, padding k // 2


def input_sizes(space_name: str, input_size: int, stride_plan: Sequence[int] | None) -> tuple[list[int], int, int]:
    """(input height of each searchable layer, height after the stem, height at the head)."""
    sp = get_space(space_name)
    if stride_plan is not None:
        sp = sp.with_strides(stride_plan)
    h = _out_size(input_size, 2)
    first = h
    sizes = []
    for layer in sp.layers:
        sizes.append(h)
        h = _out_size(h, layer.stride)
    return sizes, first, h


class _Fixed(nn.Module):
    def __init__(self, *mods: nn.Module, flatten_before: int | None = None) -> None:
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.flatten_before = flatten_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, m in enumerate(self.mods):
            if i == self.flatten_before:
                x = torch.flatten(x, 1)
            x = m(x)
        return x


def _eval_folded(m: nn.Module) -> nn.Module:
    m.eval()
    fold_bn(m)  # the deployed network has BN folded: time what is deployed
    return m


def stem_block(space: str) -> nn.Module:
    fl = get_flavour(SPACE_FLAVOUR[space])
    return _eval_folded(_Fixed(stem(STEM_CHANNELS, fl.stem_act), separable_conv(STEM_CHANNELS, SEPARABLE_CHANNELS,
                                                                                 fl.separable_act)))


def head_block(space: str, cin: int, num_classes: int) -> nn.Module:
    fl = get_flavour(SPACE_FLAVOUR[space])
    return _eval_folded(_Fixed(head(cin, HEAD_CHANNELS, fl.head_act), nn.AdaptiveAvgPool2d(1),
                               classifier(HEAD_CHANNELS, num_classes, 0.0), flatten_before=2))


def choice_block(space: str, layer: int, choice: Choice, stride_plan: Sequence[int] | None) -> nn.Module:
    sp = get_space(space).with_strides(stride_plan) if stride_plan else get_space(space)
    spec = sp.layers[layer]
    fl = get_flavour(SPACE_FLAVOUR[space])
    return _eval_folded(InvertedResidual(spec.in_channels, spec.out_channels, choice.kernel, spec.stride,
                                         choice.expansion, choice.se, fl))


def module_params(m: nn.Module) -> int:
    """The parameters a block carries once deployed (its weights and biases: what a call reads from memory)."""
    return sum(p.numel() for p in m.parameters())


def entry_params(space: str, layer: int | str, token: str, stride_plan: Sequence[int] | None,
                 num_classes: int) -> int:
    """The deployed size of one table entry (``layer``: a position, "stem" or "head"; a skip has none)."""
    if layer == "stem":
        return module_params(stem_block(space))
    sp = get_space(space).with_strides(stride_plan) if stride_plan else get_space(space)
    if layer == "head":
        return module_params(head_block(space, sp.layers[-1].out_channels, num_classes))
    choice = Choice.parse(token)
    return 0 if choice.skip else module_params(choice_block(space, int(layer), choice, stride_plan))
