"""Accuracy (nasdeploy/evaluate.py): top-k against a per-sample count, the Wilson interval at known values, evaluation
and BN recalibration."""
from __future__ import annotations

import pytest
import torch

from nasdeploy.evaluate import Accuracy, evaluate, recalibrate_bn, topk_correct, wilson


@pytest.mark.parametrize("seed", range(4))
def test_topk_equals_a_per_sample_count(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(50, 10, generator=g)
    labels = torch.randint(0, 10, (50,), generator=g)
    order = logits.argsort(dim=1, descending=True).tolist()
    for k in (1, 3, 5, 10, 20):
        expected = sum(int(labels[i].item() in order[i][:k]) for i in range(50))
        assert topk_correct(logits, labels, (k,))[0] == expected


def test_wilson_interval_matches_known_values():
    lo, hi = wilson(60, 100)  # textbook: 0.5020 .. 0.6906
    assert abs(lo - 50.20) < 0.01 and abs(hi - 69.06) < 0.01
    assert wilson(0, 50)[0] == 0.0 and abs(wilson(50, 50)[1] - 100.0) < 1e-9
    assert abs(wilson(0, 50)[1] - 7.13) < 0.01  # never [0, 0]: 0 of 50 does not prove 0%


def test_evaluation_counts_top1_and_top5_over_batches():
    """Logits that are the one-hot of a chosen class: top-1 is the share of right choices; top-5 counts a label
    among the five largest (the other logits tie at 0, broken by index)."""
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    choice = torch.tensor([0, 1, 2, 3, 9, 9, 9, 9])  # 4 of 8 right
    logits = torch.nn.functional.one_hot(choice, 10).float()
    acc = evaluate(lambda x: x, [(logits[:5], labels[:5]), (logits[5:], labels[5:])])
    assert (acc.top1, acc.images) == (50.0, 8)
    ranked = [sorted(range(10), key=lambda c, i=i: (-float(logits[i, c]), c))[:5] for i in range(8)]
    expected5 = sum(int(y in ranked[i]) for i, y in enumerate(labels.tolist()))
    assert expected5 == 4 and acc.top5 == 100.0 * expected5 / 8  # 9 first, then classes 0-3: labels 4-7 missed
    assert acc.as_dict()["top1_ci95"] == [round(v, 3) for v in wilson(4, 8)]


def test_bn_recalibration_estimates_the_statistics_of_the_data_and_restores_the_module():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3, momentum=0.3)
    model = torch.nn.Sequential(bn).eval()
    batches = [(torch.randn(8, 3, 4, 4) * 2 + 5,) for _ in range(4)]
    assert recalibrate_bn(model, model, batches) == 4
    x = torch.cat([b[0] for b in batches])
    assert torch.allclose(bn.running_mean, x.mean((0, 2, 3)), atol=1e-5)  # equal batches: the mean of the means
    assert bn.momentum == 0.3 and not model.training


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scoring_all_logits_at_once_equals_scoring_them_batch_by_batch(seed):
    """The pipeline scores engines on all their logits at once (Accuracy.of) and models batch by batch (evaluate):
    the same figures, tied logits included (rounded logits tie often)."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(300, 10, generator=g) * 2).round()
    labels = torch.randint(0, 10, (300,), generator=g)
    batches = [(logits[i:i + 64], labels[i:i + 64]) for i in range(0, 300, 64)]
    assert Accuracy.of(logits, labels) == evaluate(lambda x: x, batches)
    assert Accuracy.of(logits[:0], labels[:0]).images == 0
