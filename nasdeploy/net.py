"""A standalone network built from an ``Arch``: the zoo models, extracted subnets and search results."""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from .blocks import Flavour, InvertedResidual, SkipLayer, classifier, get_flavour, head, separable_conv, stem
from .errors import ArchError
from .space import HEAD_CHANNELS, SEPARABLE_CHANNELS, STEM_CHANNELS, Arch, layer_plan


class Network(nn.Module):
    """stem -> separable conv -> 19 searchable layers -> 1x1 head -> global pool -> classifier."""

    def __init__(self, arch: Arch | str, flavour: Flavour | str = "fairnas", num_classes: int = 1000,
                 stride_plan: Sequence[int] | None = None, stabilizers: Sequence[int] = (),
                 stabilizer_bn: bool = False, dropout: float | None = None) -> None:
        super().__init__()
        self.arch = Arch.parse(arch)
        self.flavour = get_flavour(flavour) if isinstance(flavour, str) else flavour
        self.num_classes = num_classes
        self.stride_plan = tuple(stride_plan) if stride_plan is not None else None
        layers = layer_plan(stride_plan)
        if len(self.arch) != len(layers):
            raise ArchError(f"an architecture needs {len(layers)} layers, got {len(self.arch)}")
        fl = self.flavour
        self.stem = stem(STEM_CHANNELS, fl.stem_act)
        self.separable_conv = separable_conv(STEM_CHANNELS, SEPARABLE_CHANNELS, fl.separable_act)
        blocks: list[nn.Module] = []
        for spec, choice in zip(layers, self.arch):
            if choice.skip:
                if not spec.skippable:
                    raise ArchError(f"layer {spec.index} ({spec.in_channels}->{spec.out_channels}, stride "
                                    f"{spec.stride}) cannot be a skip: it changes shape")
                blocks.append(SkipLayer(spec.in_channels, spec.index in stabilizers, stabilizer_bn))
            else:
                blocks.append(InvertedResidual(spec.in_channels, spec.out_channels, choice.kernel, spec.stride,
                                               choice.expansion, choice.se or fl.se_everywhere, fl))
        self.mb_module = nn.Sequential(*blocks)
        self.conv_before_pooling = head(layers[-1].out_channels, HEAD_CHANNELS, fl.head_act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier(HEAD_CHANNELS, num_classes, fl.dropout if dropout is None else dropout)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_before_pooling(self.mb_module(self.separable_conv(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    def config(self) -> dict:
        """Everything needed to rebuild this network's structure (stored in nasdeploy checkpoints)."""
        return {
            "arch": str(self.arch),
            "flavour": self.flavour.name,
            "num_classes": self.num_classes,
            "stride_plan": list(self.stride_plan) if self.stride_plan else None,
            "stabilizers": [i for i, m in enumerate(self.mb_module)
                            if isinstance(m, SkipLayer) and m.stabilizer is not None],
            "folded": bool(getattr(self, "folded", False)),
            "stabilizer_bn": any(isinstance(m, SkipLayer) and m.stabilizer is not None and m.stabilizer.bn is not None
                                 for m in self.mb_module),
        }

    @classmethod
    def from_config(cls, cfg: dict) -> "Network":
        net = cls(cfg["arch"], cfg["flavour"], cfg["num_classes"], cfg.get("stride_plan"),
                  cfg.get("stabilizers", ()), cfg.get("stabilizer_bn", False))
        if cfg.get("folded"):
            from .fold import make_plain_structure

            make_plain_structure(net)
        return net


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int = 224) -> int:
    """Conv + linear multiply-adds for one image (shapes only: a copy runs on the meta device)."""
    total = 0

    def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total += out.numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            total += out.numel() * mod.in_features

    shadow = copy.deepcopy(model).to("meta").eval()
    for m in shadow.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        dtype = next(shadow.parameters()).dtype
        shadow(torch.empty(1, 3, input_size, input_size, device="meta", dtype=dtype))
    return total
