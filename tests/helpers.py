"""Helpers for tests: random BN statistics and stabilizers, so folds are checked on non-trivial values."""
from __future__ import annotations

import torch
from torch import nn

from nasdeploy.blocks import Stabilizer


def randomize(model: nn.Module, seed: int = 0, stab_noise: float = 0.3) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            elif isinstance(m, Stabilizer):
                c = m.conv.in_channels
                w = torch.eye(c) + stab_noise * torch.randn(c, c, generator=g) / c ** 0.5
                m.conv.weight.copy_(w.view(c, c, 1, 1))
    return model.eval()
