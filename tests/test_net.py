"""A standalone network from an ``Arch`` (nasdeploy/nas/net.py): it declares its input setting, rebuilds from its
config, refuses impossible skips, counts its parameters and multiply-adds, and takes the folded structure."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from nasdeploy.data import BUILTIN_SETTING, SMALL_INPUT_STRIDES
from nasdeploy.errors import ArchError
from nasdeploy.nas.blocks import SkipLayer
from nasdeploy.nas.net import Network, count_macs, count_params, make_plain_structure
from nasdeploy.nas.space import get_space


def test_a_network_declares_its_input_setting_and_keeps_it_through_its_config():
    arch = get_space("scarlet").sample(random.Random(0))
    net = Network(arch, "scarlet", 10, SMALL_INPUT_STRIDES, stabilizers=[1], input_setting=BUILTIN_SETTING)
    assert net.input_setting is BUILTIN_SETTING and net.folded is False
    again = Network.from_config(net.config(), input_setting=BUILTIN_SETTING)
    assert again.config() == net.config() and again.input_setting is BUILTIN_SETTING
    assert sorted(again.state_dict()) == sorted(net.state_dict())
    assert Network(arch, "scarlet").input_setting is None  # a bare structure (a latency probe, a MACs count)


def test_a_skip_that_changes_the_shape_and_a_wrong_length_are_refused():
    tokens = ["k3e3"] * 19
    tokens[0] = "skip"  # layer 0: 16 -> 32 channels, stride 2
    with pytest.raises(ArchError, match=r"^layer 0 \(16->32, stride 2\) cannot be a skip: it changes shape$"):
        Network("-".join(tokens))
    with pytest.raises(ArchError, match="an architecture needs 19 layers, got 2"):
        Network("k3e3-k3e3")


def test_macs_count_convolutions_and_linear_layers_per_image():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    # 8x8 outputs: 4*64 outputs x 3*9 inputs each, depthwise 4*64 x 1*9, the classifier 2 x 4
    assert count_macs(model, 8) == 4 * 64 * 27 + 4 * 64 * 9 + 2 * 4
    assert count_params(model) == 4 * 3 * 9 + (4 * 9 + 4) + (2 * 4 + 2)
    net = Network(get_space("fairnas").sample(random.Random(1)), "fairnas", 10, SMALL_INPUT_STRIDES)
    # twice the side (both multiples of 16): every convolution's outputs x4, the classifier's 1280 x 10 unchanged
    assert count_macs(net, 64) == 4 * count_macs(net, 32) - 3 * 1280 * 10


def test_the_folded_structure_has_no_bn_and_no_stabilizer():
    arch = get_space("scarlet").validate("-".join(["k3e3", "skip"] + ["k3e3"] * 17))
    net = make_plain_structure(Network(arch, "scarlet", 10, SMALL_INPUT_STRIDES, stabilizers=[1]))
    assert net.folded is True and net.config()["folded"] is True
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.mb_module[1], SkipLayer) and net.mb_module[1].stabilizer is None
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    y = net.eval()(torch.randn(2, 3, 28, 28))
    assert y.shape == (2, 10)


def test_the_small_test_network_answers_its_input():
    """The GPU tests' small network (tests/helpers.small_net): its outputs change with its input, so a test that two
    inputs give different outputs can fail. A network as initialised gives its classifier's bias whatever the input
    (its activations shrink to about 1e-10): a parity or "outputs differ" check on it could never fail."""
    from .helpers import small_net, spread

    x = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    for seed in range(3):
        with torch.no_grad():
            raw = Network(get_space("scarlet").sample(random.Random(seed)), "scarlet", 10, SMALL_INPUT_STRIDES).eval()
            assert spread(raw(x)) < 1e-4  # the old fixture: the same output for every input
            assert spread(small_net(seed).eval()(x)) > 0.05
