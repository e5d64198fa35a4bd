"""A standalone network built from an ``Arch``: the zoo models, extracted subnets and search results."""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from ..data import InputSetting
from ..errors import ArchError
from .blocks import (Flavour, InvertedResidual, SkipLayer, Stabilizer, classifier, get_flavour, head, separable_conv,
                     stem)
from .space import HEAD_CHANNELS, SEPARABLE_CHANNELS, STEM_CHANNELS, Arch, layer_plan


class Network(nn.Module):
    """stem -> separable conv -> 19 searchable layers -> 1x1 head -> global pool -> classifier.

    ``input_setting``: what the network takes (size, classes, preprocessing), given where it is made (a card, a
    checkpoint, a supernet) and carried with it, so that export, bench and verify never guess it; None for a bare
    structure (a latency probe, a MACs count). ``folded``: BN and stabilizers folded away (``nasdeploy.fold``)."""

    def __init__(self, arch: Arch | str, flavour: Flavour | str = "fairnas", num_classes: int = 1000,
                 stride_plan: Sequence[int] | None = None, stabilizers: Sequence[int] = (),
                 stabilizer_bn: bool = False, dropout: float | None = None,
                 input_setting: InputSetting | None = None) -> None:
        super().__init__()
        self.input_setting = input_setting
        self.folded = False
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
            "folded": bool(self.folded),
            "stabilizer_bn": any(isinstance(m, SkipLayer) and m.stabilizer is not None and m.stabilizer.bn is not None
                                 for m in self.mb_module),
        }

    @classmethod
    def from_config(cls, cfg: dict, input_setting: InputSetting | None = None) -> "Network":
        net = cls(cfg["arch"], cfg["flavour"], cfg["num_classes"], cfg.get("stride_plan"),
                  cfg.get("stabilizers", ()), cfg.get("stabilizer_bn", False), input_setting=input_setting)
        if cfg.get("folded"):
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


# ------------------------------------------------ the folded structure (BN folded away, biased convolutions)

def conv_with_bias(conv: nn.Conv2d) -> nn.Conv2d:
    if conv.bias is None:
        conv.bias = nn.Parameter(conv.weight.new_zeros(conv.out_channels))
    return conv


def conv_bn_pairs(model: Network) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, bn attribute) for every conv followed directly by a BN."""
    pairs: list[tuple[nn.Module, str, str]] = []
    for mod in model.modules():
        if isinstance(mod, nn.Sequential):
            names = list(mod._modules)
            for a, b in zip(names, names[1:]):
                if isinstance(mod._modules[a], nn.Conv2d) and isinstance(mod._modules[b], nn.BatchNorm2d):
                    pairs.append((mod, a, b))
        elif isinstance(mod, InvertedResidual):
            pairs += [(mod, "conv1", "bn1"), (mod, "conv2", "bn2"), (mod, "conv3", "bn3")]
        elif isinstance(mod, Stabilizer) and mod.bn is not None:
            pairs.append((mod, "conv", "bn"))
    return pairs


def make_plain_structure(model: Network) -> Network:
    """Turn a freshly built network into the folded structure (BN -> Identity, biased convs) to load weights into."""
    for parent, conv_name, bn_name in conv_bn_pairs(model):
        if isinstance(getattr(parent, bn_name), nn.BatchNorm2d):
            conv_with_bias(getattr(parent, conv_name))
            setattr(parent, bn_name, nn.Identity())
    for layer in model.mb_module:
        if isinstance(layer, SkipLayer):
            layer.stabilizer = None
    model.folded = True
    return model
