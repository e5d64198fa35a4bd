"""Building blocks: inverted residual (activation and SE variants), SE, stabilizer, stem, head.

Module names follow the official FairNAS / SCARLET-NAS definitions (``stem``,
``separable_conv``, ``mb_module.N.conv1`` ...), so their checkpoints load by name.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ArchError

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True),
    "swish": lambda: nn.SiLU(inplace=True),
    "sigmoid": nn.Sigmoid,
    "hsigmoid": lambda: nn.Hardsigmoid(inplace=True),
}


def make_act(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ArchError(f"unknown activation '{name}': choose one of {', '.join(ACTIVATIONS)}") from None


@dataclass(frozen=True)
class Flavour:
    """How the blocks of a model family compute: activations, SE form, classifier."""

    name: str
    stem_act: str = "relu6"
    separable_act: str = "relu6"
    block_act: str = "relu6"
    head_act: str = "relu6"
    se_base: str = "hidden"  # SE width from the block's hidden width or its input width
    se_ratio: float = 0.25
    se_act: str = "relu"
    se_gate: str = "hsigmoid"
    se_everywhere: bool = False  # FairNAS-SE: every MB block has SE whatever the token says
    dropout: float = 0.0

    def se_width(self, in_channels: int, hidden: int) -> int:
        base = hidden if self.se_base == "hidden" else in_channels
        if self.se_base == "hidden":
            return max(1, base // int(round(1 / self.se_ratio)))
        return max(1, int(base * self.se_ratio))


FLAVOURS: dict[str, Flavour] = {
    # FairNAS-A/B/C (models/FairNAS_*.py): ReLU6 everywhere, no SE.
    "fairnas": Flavour("fairnas", dropout=0.0),
    # SCARLET-A/B/C (models/basic_ops.py): h-swish blocks, SE on hidden width / 4,
    # ReLU squeeze and h-sigmoid gate; ReLU6 stem, separable conv and head.
    "scarlet": Flavour("scarlet", block_act="hswish"),
    # FairNAS-SE (timm 0.1.18 EfficientNet): Swish blocks, ReLU stem, separable conv and head,
    # SE width = block input channels x ratio, Swish squeeze, sigmoid gate.
    "fairnas_se": Flavour("fairnas_se", stem_act="relu", separable_act="relu", block_act="swish",
                          head_act="relu", se_base="input", se_ratio=1.0, se_act="swish", se_gate="sigmoid",
                          se_everywhere=True),
    "fairnas_se_0.5": Flavour("fairnas_se_0.5", stem_act="relu", separable_act="relu", block_act="swish",
                              head_act="relu", se_base="input", se_ratio=0.5, se_act="swish", se_gate="sigmoid",
                              se_everywhere=True),
}


def get_flavour(name: str) -> Flavour:
    try:
        return FLAVOURS[name]
    except KeyError:
        raise ArchError(f"unknown block flavour '{name}': choose one of {', '.join(FLAVOURS)}") from None


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int, act: str, gate: str) -> None:
        super().__init__()
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.squeeze_conv = nn.Conv2d(channels, reduced, 1, bias=True)
        self.squeeze_act = make_act(act)
        self.excite_conv = nn.Conv2d(reduced, channels, 1, bias=True)
        self.excite_act = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.excite_act(self.excite_conv(self.squeeze_act(self.squeeze_conv(self.global_pooling(x)))))
        return x * s


class InvertedResidual(nn.Module):
    """1x1 expansion -> kxk depthwise -> [SE] -> 1x1 projection, residual where shapes allow."""

    def __init__(self, inp: int, oup: int, kernel: int, stride: int, expansion: int, se: bool,
                 flavour: Flavour) -> None:
        super().__init__()
        hidden = round(inp * expansion)
        self.inp, self.oup, self.kernel, self.stride, self.expansion = inp, oup, kernel, stride, expansion
        self.use_res_connect = stride == 1 and inp == oup
        self.conv1 = nn.Conv2d(inp, hidden, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act1 = make_act(flavour.block_act)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.act2 = make_act(flavour.block_act)
        self.mid_se = (SqueezeExcite(hidden, flavour.se_width(inp, hidden), flavour.se_act, flavour.se_gate)
                       if se else None)
        self.conv3 = nn.Conv2d(hidden, oup, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(oup)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        if self.mid_se is not None:
            out = self.mid_se(out)
        out = self.bn3(self.conv3(out))
        return x + out if self.use_res_connect else out


class Stabilizer(nn.Module):
    """SCARLET's learnable stabilizer on a skip: 1x1 conv C->C, no bias, no activation, identity at init."""

    def __init__(self, channels: int, bn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        self.bn = nn.BatchNorm2d(channels) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x


class SkipLayer(nn.Module):
    """A skip choice: the identity, or a stabilizer where the supernet trained one."""

    def __init__(self, channels: int, stabilizer: bool = False, stabilizer_bn: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.stabilizer = Stabilizer(channels, stabilizer_bn) if stabilizer else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stabilizer(x) if self.stabilizer is not None else x


def stem(cout: int, act: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), make_act(act))


def separable_conv(cin: int, cout: int, act: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), make_act(act),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout),
    )


def head(cin: int, cout: int, act: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), make_act(act))


def classifier(cin: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))
