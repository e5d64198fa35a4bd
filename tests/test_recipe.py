"""The supernet recipe: warm start by inheritance, visit-averaged gradients, and that a short run learns."""
from __future__ import annotations

import pytest
import torch

import nasdeploy.nas.train as T
from nasdeploy.data import BUILTIN_SETTING, SMALL_INPUT_STRIDES
from nasdeploy.evaluate import evaluate_subnet
from nasdeploy.nas.blocks import InvertedResidual, get_flavour
from nasdeploy.nas.supernet_checkpoint import load_checkpoint
from nasdeploy.nas.paths import FairPathSampler
from nasdeploy.nas.recipe import average_by_visits, inherit_block, parent_path, warm_start_steps
from nasdeploy.nas.supernet import Supernet
from nasdeploy.nas.train import TrainConfig, train_supernet
from nasdeploy.search import load_eval_data
from nasdeploy.zoo import get_card

from .helpers import assert_same_training


def _random_bn(block: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return block


@pytest.mark.parametrize("k, e, se", [(3, 3, False), (5, 6, False), (3, 3, True), (7, 3, True), (5, 6, True)])
@pytest.mark.parametrize("stride", [1, 2])
def test_an_inheriting_block_computes_its_parent_restricted_to_its_slice(k, e, se, stride):
    """With the parent's weights outside the child's slice zeroed, child and parent are the same function."""
    fl = get_flavour("scarlet" if se else "fairnas")
    parent = _random_bn(InvertedResidual(16, 16, 7, stride, 6, se, fl), seed=k * 10 + e).double().eval()
    child = InvertedResidual(16, 16, k, stride, e, se, fl).double().eval()
    h, o = child.conv1.out_channels, (7 - k) // 2
    with torch.no_grad():
        parent.conv3.weight[:, h:] = 0
        mask = torch.zeros(7, 7, dtype=torch.float64)
        mask[o: o + k, o: o + k] = 1
        parent.conv2.weight.mul_(mask)
        if se:
            r = child.mid_se.squeeze_conv.out_channels
            parent.mid_se.squeeze_conv.weight[:, h:] = 0
            parent.mid_se.excite_conv.weight[:, r:] = 0
    inherit_block(child, parent)
    x = torch.randn(3, 16, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        a, b = child(x), parent(x)
    assert a.abs().max() > 1e-3 and torch.allclose(a, b, rtol=0, atol=1e-12)


def test_parent_path_is_the_largest_choice_everywhere():
    for space in ("fairnas", "scarlet"):
        net = Supernet(space, 10, SMALL_INPUT_STRIDES)
        arch = net.arch_of(parent_path(net))
        assert all((c.kernel, c.expansion) == (7, 6) and c.se == (space == "scarlet") for c in arch)


@pytest.mark.parametrize("seed", [0, 1])
def test_visit_averaging_divides_each_gradient_by_the_paths_that_used_it(seed):
    torch.manual_seed(seed)
    net = Supernet("scarlet", 10, SMALL_INPUT_STRIDES)
    paths = FairPathSampler(net.space, seed).paths()
    x = torch.randn(2, 3, 28, 28)
    for p in paths:
        net(x, p).square().mean().backward()
    summed = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    average_by_visits(net, paths)
    m = len(paths)
    for name, p in net.named_parameters():
        if p.grad is None:
            continue
        if name.startswith("layers."):
            layer, cand = int(name.split(".")[1]), int(name.split(".")[3])
            visits = sum(1 for path in paths if path[layer] == cand)
        else:
            visits = m
        assert visits >= 1 and torch.allclose(p.grad, summed[name] / visits), name
    assert any(sum(1 for path in paths if path[i] == j) == 2 for i in range(len(net.layers)) for j in range(13))


def test_warm_start_length():
    assert [warm_start_steps(s, -1) for s in (1, 3, 120, 300)] == [0, 1, 40, 100]
    assert warm_start_steps(10, 25) == 10 and warm_start_steps(10, 0) == 0


def test_killed_at_the_warm_start_boundary_resumes_to_the_same_supernet(tmp_path, monkeypatch):
    cfg = TrainConfig(space="fairnas", steps=6, batch_size=4, ckpt_every=1, device="cpu", warm_start=3,
                      deterministic=True)
    ref = train_supernet(cfg, tmp_path / "ref", progress=False)
    real = T.inherit_from_parent

    def killed(*a, **k):
        raise KeyboardInterrupt  # the process dies right after the warm-start steps' checkpoint

    monkeypatch.setattr(T, "inherit_from_parent", killed)
    with pytest.raises(KeyboardInterrupt):
        train_supernet(cfg, tmp_path / "cut", progress=False)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 3
    monkeypatch.setattr(T, "inherit_from_parent", real)
    cut = train_supernet(cfg, tmp_path / "cut", resume=True, progress=False)
    assert_same_training(ref.path, cut.path)


@pytest.mark.extended  # the demo trains the same way for longer and reports the subnet it ships
def test_a_short_strict_fairness_run_learns_every_reference_subnet(tmp_path):
    """A short version of benchmarks/supernet_recipe.py: the loss falls and the FairNAS-A/B/C subnets score far
    above chance (10%) on held-out images, not only the path the warm start trained."""
    cfg = TrainConfig(space="fairnas", steps=45, batch_size=32, ckpt_every=45, device="cpu", seed=3)
    res = train_supernet(cfg, tmp_path / "sn", progress=False)
    first, last = res.loss_summary()
    assert last < first - 0.3, (first, last)
    sn = T.load_supernet(res.path)
    calib, val = load_eval_data("fashion-mnist", 4, 64, 1000, BUILTIN_SETTING)
    for v in "abc":
        acc = evaluate_subnet(sn, get_card(f"fairnas_{v}").arch, calib, val)
        assert acc.top1_ci[0] > 30.0, (v, acc.top1)
