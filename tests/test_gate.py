"""The accuracy gate (nasdeploy/gate.py) from known numbers: the top-1 drop where the labels say something, the
disagreement where they do not, the paired interval, ties broken as top-1 accuracy breaks them; calls inside a
batch range; one gate for every caller (gate_of)."""
from __future__ import annotations

import pytest
import torch

from nasdeploy.errors import UsageError
from nasdeploy.gate import chunks, judge, parse_budget


def _logits(pred: list[int], classes: int = 10) -> torch.Tensor:
    y = torch.zeros(len(pred), classes)
    y[torch.arange(len(pred)), torch.tensor(pred)] = 1.0
    return y


def test_gate_counts_the_top1_drop_where_the_labels_say_something():
    labels = torch.tensor([i % 10 for i in range(200)])
    ref = _logits(labels.tolist())  # float32 right on every image
    cand = labels.clone()
    cand[:3] = (cand[:3] + 1) % 10  # 3 images now wrong: 1.5 points
    g = judge(ref, _logits(cand.tolist()), labels, 10, budget=1.0)
    assert g.basis == "labels" and g.top1_reference == 100.0 and g.top1 == 98.5
    assert g.drop == pytest.approx(1.5) and not g.passed and g.agreement == 98.5
    assert judge(ref, _logits(cand.tolist()), labels, 10, budget=1.5).passed


def test_gate_falls_back_to_disagreement_where_the_labels_say_nothing():
    """A model at chance on the data: the drop counted is the disagreement, an upper bound on any change."""
    labels = torch.tensor([i % 10 for i in range(400)])
    ref_pred = [(i * 7 + 3) % 10 for i in range(400)]  # unrelated to the labels: 10% top-1
    cand = list(ref_pred)
    for i in range(0, 400, 50):
        cand[i] = (cand[i] + 1) % 10  # 8 changed predictions: 2 points of disagreement
    g = judge(_logits(ref_pred), _logits(cand), labels, 10, budget=1.0)
    assert g.basis == "agreement" and g.drop == pytest.approx(2.0) and not g.passed
    assert g.top1 <= g.top1_reference + 2.0  # the bound holds


def test_gate_reports_the_logit_error():
    ref = torch.tensor([[2.0, 0.0], [0.0, 4.0]])
    g = judge(ref, ref + torch.tensor([[0.2, 0.0], [0.0, -0.2]]), torch.tensor([0, 1]), 2, 1.0)
    assert g.max_rel_error == pytest.approx(0.1)


@pytest.mark.parametrize("value, ok", [("0.5", 0.5), (2, 2.0), ("abc", None), ("-1", None), ("nan", None),
                                       ("101", None)])
def test_budget_must_be_a_number_of_points(value, ok):
    if ok is None:
        with pytest.raises(UsageError, match="budget"):
            parse_budget(value)
    else:
        assert parse_budget(value) == ok


def test_gate_interval_is_paired_and_shrinks_with_images():
    for n in (200, 2000):
        labels = torch.tensor([i % 10 for i in range(n)])
        cand = labels.clone()
        k = n // 50  # 2% of the images broken, 1% fixed: a drop of 1 point
        cand[:k] = (cand[:k] + 1) % 10
        ref = labels.clone()
        ref[k: k + n // 100] = (ref[k: k + n // 100] + 1) % 10
        g = judge(_logits(ref.tolist()), _logits(cand.tolist()), labels, 10, budget=2.0)
        assert g.drop == pytest.approx(1.0) and g.drop_ci95[0] < 1.0 < g.drop_ci95[1]
        # by hand: d = +1 on 2%, -1 on 1%; sd = sqrt(0.03 - 0.01^2) * sqrt(n / (n - 1))
        sd = ((0.03 - 1e-4) * n / (n - 1)) ** 0.5
        assert g.drop_ci95[1] - g.drop == pytest.approx(196.0 * sd / n ** 0.5, abs=2e-3)  # stored to 3 decimals


def test_gate_breaks_ties_as_top1_accuracy_does():
    """Quantized logits tie; the gate's top-1 must be the one the accuracy figures count."""
    from nasdeploy.evaluate import topk_correct

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (500,), generator=g)
    ref = torch.randn(500, 10, generator=g)
    cand = torch.round(ref * 2) / 2  # coarse steps: many ties between the top two
    assert (cand.topk(2, dim=1).values[:, 0] == cand.topk(2, dim=1).values[:, 1]).any()
    res = judge(ref, cand, labels, 10, budget=100.0)
    assert res.top1 == pytest.approx(100.0 * topk_correct(cand, labels, (1,))[0] / 500)
    assert res.top1_reference == pytest.approx(100.0 * topk_correct(ref, labels, (1,))[0] / 500)


@pytest.mark.parametrize("n_images, lo, hi", [(5, 8, 8), (16, 4, 4), (13, 1, 4), (3, 2, 6), (64, 1, None)])
def test_parity_calls_stay_inside_the_batch_range_and_score_each_image_once(n_images, lo, hi):
    real = [torch.randn(n_images, 3, 4, 4)]
    calls = chunks(real, lo, hi)
    assert all(lo <= len(x) <= (hi or n_images) for x, _ in calls)
    assert sum(k for _, k in calls) == n_images
    assert torch.equal(torch.cat([x[:k] for x, k in calls]), real[0])


def test_one_gate_for_every_caller_fed_inside_the_batch_range():
    """gate_of (export, bench, verify and the pipeline call it): the engine fed in calls of its batch range, judged
    against the float32 logits computed once, the logits it judged kept for other figures but not recorded."""
    from nasdeploy.gate import gate_of, held_out_from

    torch.manual_seed(0)
    plain = torch.nn.Linear(4, 3)
    xs, ys = [torch.randn(5, 4), torch.randn(4, 4)], [torch.randint(0, 3, (5,)), torch.randint(0, 3, (4,))]
    held = held_out_from(plain, zip(xs, ys), 3)
    with torch.no_grad():
        assert torch.equal(held.reference, plain(torch.cat(xs))) and torch.equal(held.labels, torch.cat(ys))
    calls = []

    def engine(x):  # twice the logits: the same predictions
        calls.append(len(x))
        return plain(x) * 2

    g = gate_of(engine, held, (4, 4), budget=1.0)
    assert calls == [4, 4, 4]  # 9 images in calls of exactly 4, the last padded
    assert g.images == 9 and g.agreement == 100.0 and g.drop == 0.0 and g.passed
    assert torch.allclose(g.outputs, held.reference * 2)
    record = g.as_dict()
    assert "outputs" not in record and record["images"] == 9 and record["drop"] == 0.0 and record["passed"]


@pytest.mark.parametrize("seed", range(4))
def test_the_gate_and_top1_break_ties_alike(seed):
    """Quantized logits tie: the gate's predicted class is the one top-1 accuracy counts, image for image."""
    from nasdeploy.evaluate import topk_correct
    from nasdeploy.gate import top1_class

    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, 3, (500, 10), generator=g).float()  # many ties among the largest
    labels = torch.randint(0, 10, (500,), generator=g)
    for i in range(len(labels)):
        assert int(top1_class(logits[i:i + 1])[0] == labels[i]) == topk_correct(logits[i:i + 1], labels[i:i + 1])[0]
    assert int((top1_class(logits) == labels).sum()) == topk_correct(logits, labels)[0]
