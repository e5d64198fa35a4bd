"""Folding (nasdeploy/fold.py): BN and stabilizers folded exactly, checked numerically, refused where it cannot be
exact; a folded network stays folded through its checkpoint."""
import pytest
import torch
from torch import nn

from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.errors import FoldError
from nasdeploy.fold import compare, fold, is_folded
from nasdeploy.nas.blocks import Stabilizer
from nasdeploy.nas.net import Network, count_params, make_plain_structure
from nasdeploy.nas.space import SCARLET

from .helpers import randomize, spread

# Layers 3,4,5 skip in a row (then a stride-2 block absorbs), 8 skip before residual 9,
# 13 skip before the width change at 14, 16,17 skips before 18 (width change).
ARCH_RUNS = "k3e3-k5e6se-k3e3-skip-skip-skip-k7e6se-k3e3-skip-k5e3se-k3e6-k3e3se-k7e3-skip-k5e6se-k3e3-skip-skip-k5e6"
# skip at 1 followed by residual blocks at 3,4,5 after a stride-2 block (pending absorbed), and skip before
# a chain of residual blocks: 7 skip -> 8, 9 residual -> 10 width change absorbs.
ARCH_PUSH = "k3e3-skip-k5e3-k3e6se-k5e3-k7e3se-k3e3-skip-k5e6se-k3e3-k3e3se-skip-k5e3-k3e6-k3e3-skip-k5e6se-k3e3-k7e6"


def stabilized(arch, seed=0, bn=False):
    arch = SCARLET.validate(arch)
    skips = [i for i, c in enumerate(arch) if c.skip]
    net = Network(arch, "scarlet", 10, SMALL_INPUT_STRIDES, stabilizers=skips, stabilizer_bn=bn)
    return randomize(net, seed)


@pytest.mark.parametrize("arch", [ARCH_RUNS, ARCH_PUSH])
@pytest.mark.parametrize("bn", [False, True])
def test_fold_is_exact_and_leaves_a_plain_network(arch, bn):
    net = stabilized(arch, bn=bn)
    with torch.no_grad():
        assert spread(net(torch.randn(4, 3, 28, 28))) > 0.05  # the check below is not vacuous
    plain, rep = fold(net)
    assert is_folded(plain)
    assert not any(isinstance(m, (nn.BatchNorm2d, Stabilizer)) for m in plain.modules())
    assert rep.max_rel_error_fp64 <= 1e-10 and rep.max_rel_error_fp32 <= 1e-4
    assert rep.stabilizers_folded == sum(c.skip for c in net.arch)
    # independent check on other inputs and another batch (float64 weights for the float64 check)
    plain64, _ = fold(net.double())
    assert compare(net, plain64, torch.float64, 28, n=3, seed=5)[1] <= 1e-10
    assert compare(net, plain, torch.float32, 28, n=3, seed=6)[1] <= 1e-4
    # same parameter count as the plain architecture folded (biases the fold creates included)
    expected = make_plain_structure(Network(net.arch, "scarlet", 10, SMALL_INPUT_STRIDES))
    assert count_params(plain) == count_params(expected)
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in expected.named_parameters()]


def test_pushed_through_residual_blocks_counted():
    _, rep = fold(stabilized(ARCH_PUSH))
    assert rep.pushed_through_residual >= 4


def test_random_subnets_of_the_scarlet_space():
    import random

    rng = random.Random(1)
    for s in range(6):
        a = SCARLET.sample(rng)
        _, rep = fold(stabilized(str(a), seed=s, bn=s % 2 == 1))
        assert rep.max_rel_error_fp64 <= 1e-10


def test_fold_of_a_zoo_model_with_bn_only():
    import nasdeploy

    m = randomize(nasdeploy.create_model("scarlet_c"))
    plain, rep = fold(m, input_size=64)
    assert rep.bn_folded > 50 and rep.stabilizers_folded == 0
    assert rep.max_rel_error_fp64 <= 1e-10


def test_folded_network_round_trips_through_a_checkpoint(tmp_path):
    from nasdeploy.zoo import load_network, save_checkpoint

    plain, _ = fold(stabilized(ARCH_RUNS))
    save_checkpoint(plain, tmp_path / "plain.pt")
    again = load_network(tmp_path / "plain.pt")
    assert compare(plain, again, torch.float64, 28)[0] == 0.0


def test_training_mode_is_refused():
    net = stabilized(ARCH_RUNS).train()
    with pytest.raises(FoldError, match="training mode"):
        fold(net)


def test_singular_stabilizer_before_a_residual_block_names_the_layer():
    net = stabilized(ARCH_PUSH)
    with torch.no_grad():
        w = net.mb_module[7].stabilizer.conv.weight
        w[0].zero_()  # rank deficient
    with pytest.raises(FoldError, match=r"mb_module\.8: the stabilizer from mb_module\.7 has condition number"):
        fold(net)


def test_singular_stabilizer_before_a_non_residual_block_is_fine():
    net = stabilized(ARCH_RUNS)
    with torch.no_grad():
        net.mb_module[13].stabilizer.conv.weight[0].zero_()  # absorbed by the width change at 14
    plain, rep = fold(net)
    assert rep.max_rel_error_fp64 <= 1e-10


def test_unknown_module_type_names_the_layer():
    net = stabilized(ARCH_RUNS)
    net.mb_module[0].act1 = nn.GELU()
    with pytest.raises(FoldError, match=r"mb_module\.0\.act1: fold does not know module type GELU"):
        fold(net)


# ------------------------------------------------ the float32 check judges the fold, not float32 itself

def test_fold_check_limits_follow_the_unfolded_networks_own_float32_error():
    from nasdeploy.fold import FoldCheck

    ok = FoldCheck(0.0, 1e-13, 0.0, 4e-3, 2.7e-3)  # worse than 1e-4, but float32 itself is 2.7e-3 off
    assert ok.refusal(1e-10, 8.0, 1e-4) is None
    assert FoldCheck(0.0, 1e-13, 0.0, 5e-5, 1e-7).refusal(1e-10, 8.0, 1e-4) is None  # the floor
    assert "float32" in FoldCheck(0.0, 1e-13, 0.0, 3e-2, 2.7e-3).refusal(1e-10, 8.0, 1e-4)
    assert "float64" in FoldCheck(0.0, 1e-6, 0.0, 1e-6, 1e-6).refusal(1e-10, 8.0, 1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_float32_only_folding_bug_is_still_refused(seed):
    """A fold exact in float64 whose float32 cast is wrong (here: one weight rounded far beyond float32)."""
    import copy

    from nasdeploy.fold import fold_stabilizers, check_fold, fold_bn

    net = stabilized(ARCH_PUSH, seed=seed).eval()
    plain64 = copy.deepcopy(net).double()
    fold_bn(plain64)
    fold_stabilizers(plain64, 1e4)
    bad = copy.deepcopy(plain64).float()
    with torch.no_grad():
        w = bad.conv_before_pooling[0].weight
        w.add_(w.abs().max() * 0.05 * torch.sign(w))
    chk = check_fold(net, plain64, bad, 28)
    assert chk.rel64 <= 1e-10 and chk.refusal(1e-10, 8.0, 1e-4) is not None
    good = check_fold(net, plain64, copy.deepcopy(plain64).float(), 28)
    assert good.refusal(1e-10, 8.0, 1e-4) is None


# ------------------------------------------------ fold() itself: its refusal, its report, its edges

def test_fold_refuses_a_float64_error_with_its_default_limits(monkeypatch):
    """A fold wrong by one part in a million (a scaled bias) is refused by fold() as called by every command."""
    import nasdeploy.fold as F

    real = F.fold_bn_into

    def off(conv, bn):
        real(conv, bn)
        with torch.no_grad():
            conv.bias.mul_(1 + 1e-6)

    monkeypatch.setattr(F, "fold_bn_into", off)
    with pytest.raises(FoldError, match=r"^folded network differs from its input: relative error .* in float64 "
                                        r"\(limit 1e-10\).*please report this"):
        fold(stabilized(ARCH_PUSH).eval())


def test_fold_limits_are_inclusive_at_known_numbers():
    from nasdeploy.fold import FoldCheck

    assert FoldCheck(0.0, 1e-10, 0.0, 1e-4, 0.0).refusal(1e-10, 16.0, 1e-4) is None  # both at their limit
    assert FoldCheck(0.0, 0.0, 0.0, 4.0, 0.25).refusal(1e-10, 16.0, 1e-4) is None  # exactly 16x float32's own
    assert FoldCheck(0.0, 2e-10, 0.0, 0.0, 0.0).refusal(1e-10, 16.0, 1e-4) is not None
    assert FoldCheck(0.0, 0.0, 0.0, 4.5, 0.25).refusal(1e-10, 16.0, 1e-4) is not None


def test_fold_errors_are_relative_to_the_largest_reference_value():
    from nasdeploy.fold import max_errors

    assert max_errors(torch.tensor([[2.0, -4.0]]), torch.tensor([[2.5, -4.0]])) == (0.5, 0.125)
    assert max_errors(torch.tensor([[0.5]]), torch.tensor([[0.25]])) == (0.25, 0.5)  # a reference below 1 too


def test_fold_check_is_deterministic_and_its_seed_matters():
    import copy

    from nasdeploy.fold import fold_stabilizers, check_fold, fold_bn

    net = stabilized(ARCH_PUSH).eval()
    plain64 = copy.deepcopy(net).double()
    fold_bn(plain64)
    fold_stabilizers(plain64, 1e4)
    plain = copy.deepcopy(plain64).float()
    a, b = check_fold(net, plain64, plain, 28), check_fold(net, plain64, plain, 28)
    assert a == b and check_fold(net, plain64, plain, 28, seed=1) != a


def test_fold_report_counts_and_the_unchecked_fold(caplog):
    net = stabilized(ARCH_PUSH).eval()
    with caplog.at_level("DEBUG", logger="nasdeploy.fold"):
        plain, rep = fold(net)
    assert "fold: FoldReport(" in caplog.text
    assert rep.params_before == count_params(net) and rep.params_after == count_params(plain)
    assert rep.params_after < rep.params_before and 1.0 <= rep.max_condition < 1e4
    plain2, unchecked = fold(net, check=False)
    assert [getattr(unchecked, k) for k in ("bn_folded", "stabilizers_folded", "pushed_through_residual")] == \
        [rep.bn_folded, rep.stabilizers_folded, rep.pushed_through_residual]
    errs = [unchecked.max_abs_error_fp64, unchecked.max_rel_error_fp64, unchecked.max_abs_error_fp32,
            unchecked.max_rel_error_fp32, unchecked.max_rel_error_fp32_unfolded]
    assert all(e != e for e in errs)  # not measured: NaN, never a made-up 0
    assert all(torch.equal(p, q) for p, q in zip(plain.state_dict().values(), plain2.state_dict().values()))


def test_a_biased_convolution_before_its_bn_folds_exactly():
    """The check compares with the biased network: a fold that dropped the bias would be refused."""
    from nasdeploy.nas.net import conv_bn_pairs

    net = stabilized(ARCH_PUSH).eval()
    for parent, conv_name, _ in conv_bn_pairs(net)[::7]:
        conv = getattr(parent, conv_name)
        conv.bias = nn.Parameter(torch.randn(conv.out_channels))
    _, rep = fold(net)
    assert rep.max_rel_error_fp64 <= 1e-10


def test_training_mode_names_the_layer():
    net = stabilized(ARCH_RUNS).eval()
    net.mb_module[3].train()
    with pytest.raises(FoldError, match=r"^layer mb_module\.3 is in training mode: call model\.eval\(\)"):
        fold(net)
    with pytest.raises(FoldError, match=r"^layer model is in training mode"):
        fold(net.train())


@pytest.mark.parametrize("rel32, unfolded32, refused", [
    (5e-4, 1e-6, True), (5e-5, 1e-6, False),  # the 1e-4 floor where float32 itself is accurate
    (1.65e-4, 1e-5, True), (1.55e-4, 1e-5, False),  # 16x float32's own error above the floor
])
def test_fold_float32_limits_by_default(monkeypatch, rel32, unfolded32, refused):
    """fold() as every command calls it, with the float32 figures of its (real) check replaced by known ones:
    the default limits are a 1e-4 floor and 16x the unfolded network's own float32 error."""
    import dataclasses

    import nasdeploy.fold as F

    real = F.check_fold
    monkeypatch.setattr(F, "check_fold", lambda *a, **k: dataclasses.replace(real(*a, **k), rel32=rel32,
                                                                              rel32_unfolded=unfolded32))
    net = stabilized(ARCH_PUSH).eval()
    if refused:
        with pytest.raises(FoldError, match="in float32"):
            fold(net)
    else:
        assert fold(net)[1].max_rel_error_fp32 == rel32


def test_fold_refuses_what_is_not_a_network_by_its_type():
    from torch import nn

    from nasdeploy.errors import FoldError
    from nasdeploy.fold import fold

    with pytest.raises(FoldError, match="can only fold a nasdeploy Network, got Sequential"):
        fold(nn.Sequential(nn.Conv2d(3, 3, 1)))


def test_a_folded_network_stays_folded_through_its_checkpoint(tmp_path):
    from nasdeploy.fold import fold, is_folded
    from nasdeploy.nas.net import Network
    from nasdeploy.zoo import create_model, load_network, save_checkpoint

    plain, _ = fold(create_model("scarlet_c").eval(), input_size=32)
    assert plain.folded is True and plain.config()["folded"] is True
    back = load_network(save_checkpoint(plain, tmp_path / "a.pt"))
    assert back.folded is True and is_folded(back)
    again = load_network(save_checkpoint(back, tmp_path / "b.pt"))  # folded twice over: still the plain form
    assert again.config() == plain.config() and isinstance(again, Network)
