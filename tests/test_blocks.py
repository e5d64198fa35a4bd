"""Blocks (nasdeploy/nas/blocks.py): the stabilizer starts as the identity, SE widths of each model family, residual
connections only where shapes allow, activations by name."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.errors import ArchError
from nasdeploy.nas.blocks import InvertedResidual, SqueezeExcite, get_flavour, make_act
from nasdeploy.nas.supernet import Supernet


def test_stabilizer_starts_as_identity():
    net = Supernet("scarlet", 10, SMALL_INPUT_STRIDES)
    skip = net.layers[1].candidates[-1]
    assert torch.equal(skip.stabilizer.conv.weight.flatten(1), torch.eye(32))
    assert skip.stabilizer.bn is None


@pytest.mark.parametrize("flavour, cin, hidden, width", [
    ("scarlet", 16, 96, 24),  # SCARLET: the hidden width / 4
    ("fairnas_se", 16, 96, 16),  # FairNAS-SE (timm 0.1.18): the block's input width x 1.0
    ("fairnas_se_0.5", 16, 96, 8),  # x 0.5
    ("fairnas_se_0.5", 1, 96, 1),  # at least one channel
])
def test_se_width_follows_each_family(flavour, cin, hidden, width):
    assert get_flavour(flavour).se_width(cin, hidden) == width
    block = InvertedResidual(cin, cin, 3, 1, hidden // cin, True, get_flavour(flavour))
    assert isinstance(block.mid_se, SqueezeExcite) and block.mid_se.squeeze_conv.out_channels == width


def test_a_residual_connection_only_where_the_shape_is_kept():
    fl = get_flavour("fairnas")
    assert InvertedResidual(16, 16, 3, 1, 3, False, fl).use_res_connect
    assert not InvertedResidual(16, 24, 3, 1, 3, False, fl).use_res_connect  # the width changes
    assert not InvertedResidual(16, 16, 3, 2, 3, False, fl).use_res_connect  # the size changes
    x = torch.randn(2, 16, 8, 8)
    for block in (InvertedResidual(16, 16, 5, 1, 6, False, fl), InvertedResidual(16, 16, 5, 2, 6, False, fl)):
        with torch.no_grad():  # a zero projection: the residual block is the identity, the other one zero
            block.eval().bn3.weight.zero_()
            block.bn3.bias.zero_()
            y = block(x)
        assert torch.equal(y, x) if block.use_res_connect else (y.abs().max() == 0 and y.shape == (2, 16, 4, 4))


def test_activations_and_families_by_name():
    assert isinstance(make_act("hswish"), nn.Hardswish) and isinstance(make_act("swish"), nn.SiLU)
    with pytest.raises(ArchError, match=r"unknown activation 'gelu': choose one of relu, relu6, hswish"):
        make_act("gelu")
    with pytest.raises(ArchError, match=r"unknown block flavour 'mobilenet': choose one of fairnas, scarlet"):
        get_flavour("mobilenet")
