"""The weight-sharing supernet (nasdeploy/nas/supernet.py): an extracted subnet computes what the supernet computes
along its path, carries its stabilizers and its input setting."""
import random

import pytest
import torch

from nasdeploy.data import BUILTIN_SETTING, SMALL_INPUT_STRIDES
from nasdeploy.nas.space import get_space
from nasdeploy.nas.supernet import Supernet

from .helpers import randomize, spread


@pytest.mark.parametrize("space", ["fairnas", "scarlet"])
def test_supernet_and_extracted_subnet_agree_in_float64(space):
    torch.manual_seed(1)
    net = randomize(Supernet(space, 10, SMALL_INPUT_STRIDES), seed=2).double()
    rng = random.Random(3)
    x = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    archs = [net.space.sample(rng) for _ in range(4)]
    if space == "scarlet":
        archs.append(net.space.validate("k3e3-skip-k5e3-skip-skip-skip-k3e6se-skip-skip-skip-k3e3-skip-skip-skip"
                                        "-k5e6-skip-skip-skip-k7e6se"))
    for arch in archs:
        sub = net.extract(arch).eval()
        with torch.no_grad():
            a, b = net(x, arch), sub(x)
        assert spread(a) > 1e-3  # outputs depend on the input far above the 1e-10 compared below
        assert (a - b).abs().max() / a.abs().max() <= 1e-10
        if space == "scarlet":
            assert sum(m.stabilizer is not None for m in sub.mb_module if hasattr(m, "stabilizer")) \
                == sum(c.skip for c in arch)


def test_a_subnet_carries_the_supernets_input_setting_and_plan():
    sn = Supernet("scarlet", 10, SMALL_INPUT_STRIDES, input_setting=BUILTIN_SETTING)
    sub = sn.extract(sn.space.sample(random.Random(5)))
    assert sub.input_setting is BUILTIN_SETTING  # declared where the subnet is made, not patched on later
    assert (sub.stride_plan, sub.num_classes, sub.flavour.name) == (tuple(SMALL_INPUT_STRIDES), 10, "scarlet")
    again = Supernet.from_config(sn.config(), input_setting=BUILTIN_SETTING)
    assert again.config() == sn.config() and again.input_setting is BUILTIN_SETTING
    assert Supernet("fairnas", 10).extract(get_space("fairnas").sample(random.Random(0))).input_setting is None


def test_a_path_is_given_as_an_architecture_or_as_choice_indices():
    torch.manual_seed(0)
    sn = randomize(Supernet("fairnas", 10, SMALL_INPUT_STRIDES), seed=1).eval()
    arch = sn.space.sample(random.Random(2))
    idx = sn.indices(arch)
    assert sn.arch_of(idx) == arch and str(sn.arch_of(idx)) == str(arch)
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(sn(x, arch), sn(x, idx)) and torch.equal(sn(x, str(arch)), sn(x, idx))
