"""The weight-sharing supernet: one candidate module per choice per layer; ``extract(arch)`` gives a Network.

Candidates are the same module types as the zoo's (``InvertedResidual``, ``SkipLayer``),
so an extracted subnet is an ordinary ``Network`` carrying the inherited weights,
including SCARLET's stabilizer on every skip.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..data import InputSetting
from ..errors import ArchError
from .blocks import InvertedResidual, SkipLayer, classifier, get_flavour, head, separable_conv, stem
from .net import Network
from .space import HEAD_CHANNELS, SEPARABLE_CHANNELS, STEM_CHANNELS, Arch, SearchSpace, get_space

SPACE_FLAVOUR = {"fairnas": "fairnas", "scarlet": "scarlet"}


class ChoiceLayer(nn.Module):
    """All candidates of one searchable position."""

    def __init__(self, candidates: list[nn.Module]) -> None:
        super().__init__()
        self.candidates = nn.ModuleList(candidates)

    def forward(self, x: torch.Tensor, index: int) -> torch.Tensor:
        return self.candidates[index](x)


class Supernet(nn.Module):
    """``input_setting``: what the supernet was trained on (given where it is made: the trainer, a checkpoint);
    every subnet it extracts carries it."""

    def __init__(self, space: SearchSpace | str, num_classes: int = 1000, stride_plan: Sequence[int] | None = None,
                 stabilizer_bn: bool = False, dropout: float = 0.0, input_setting: InputSetting | None = None) -> None:
        super().__init__()
        self.input_setting = input_setting
        base = get_space(space) if isinstance(space, str) else space
        self.space = base.with_strides(stride_plan) if stride_plan is not None else base
        self.stride_plan = tuple(stride_plan) if stride_plan is not None else None
        self.num_classes = num_classes
        self.stabilizer_bn = stabilizer_bn
        self.flavour = get_flavour(SPACE_FLAVOUR[self.space.name])
        fl = self.flavour
        self.stem = stem(STEM_CHANNELS, fl.stem_act)
        self.separable_conv = separable_conv(STEM_CHANNELS, SEPARABLE_CHANNELS, fl.separable_act)
        layers = []
        for spec in self.space.layers:
            cands: list[nn.Module] = []
            for c in self.space.choices_at(spec.index):
                if c.skip:  # SCARLET: every skip choice carries a stabilizer
                    cands.append(SkipLayer(spec.in_channels, stabilizer=True, stabilizer_bn=stabilizer_bn))
                else:
                    cands.append(InvertedResidual(spec.in_channels, spec.out_channels, c.kernel, spec.stride,
                                                  c.expansion, c.se, fl))
            layers.append(ChoiceLayer(cands))
        self.layers = nn.ModuleList(layers)
        self.conv_before_pooling = head(self.space.layers[-1].out_channels, HEAD_CHANNELS, fl.head_act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier(HEAD_CHANNELS, num_classes, dropout)

    def indices(self, arch: Arch | str) -> list[int]:
        arch = self.space.validate(arch)
        return [self.space.choices_at(i).index(c) for i, c in enumerate(arch)]

    def forward(self, x: torch.Tensor, arch: Arch | str | Sequence[int]) -> torch.Tensor:
        idx = list(arch) if isinstance(arch, (list, tuple)) and arch and isinstance(arch[0], int) \
            else self.indices(arch)  # type: ignore[arg-type]
        x = self.separable_conv(self.stem(x))
        for layer, i in zip(self.layers, idx):
            x = layer(x, i)
        x = self.conv_before_pooling(x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def arch_of(self, indices: Sequence[int]) -> Arch:
        return Arch(tuple(self.space.choices_at(i)[j] for i, j in enumerate(indices)))

    def config(self) -> dict:
        return {"space": self.space.name, "num_classes": self.num_classes,
                "stride_plan": list(self.stride_plan) if self.stride_plan else None,
                "stabilizer_bn": self.stabilizer_bn}

    @classmethod
    def from_config(cls, cfg: dict, input_setting: InputSetting | None = None) -> "Supernet":
        return cls(cfg["space"], cfg["num_classes"], cfg.get("stride_plan"), cfg.get("stabilizer_bn", False),
                   input_setting=input_setting)

    def extract(self, arch: Arch | str) -> Network:
        """A standalone Network with the inherited weights (stabilizers of skips included)."""
        arch = self.space.validate(arch)
        idx = self.indices(arch)
        skips = [i for i, c in enumerate(arch) if c.skip]
        ref = next(self.parameters())
        net = Network(arch, self.flavour, self.num_classes, self.stride_plan, stabilizers=skips,
                      stabilizer_bn=self.stabilizer_bn, dropout=self.classifier[0].p,
                      input_setting=self.input_setting).to(ref.device, ref.dtype)
        with torch.no_grad():
            for name in ("stem", "separable_conv", "conv_before_pooling", "classifier"):
                getattr(net, name).load_state_dict(getattr(self, name).state_dict())
            for i, (layer, j) in enumerate(zip(self.layers, idx)):
                src = layer.candidates[j]
                dst = net.mb_module[i]
                if type(src) is not type(dst):
                    raise ArchError(f"layer {i}: supernet candidate and subnet block differ")  # pragma: no cover
                dst.load_state_dict(src.state_dict())
        return net.train(self.training)
