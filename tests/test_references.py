"""Small numerical pieces checked against independent references (numpy, hand-built cases), over classes of
input rather than one example."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from nasdeploy.bench.timing import Stats, best_round, percentile, summarize
from nasdeploy.evaluate import topk_correct
from nasdeploy.latency.metrics import fit_linear, kendall_tau, loo_calibrated, mape, max_error
from nasdeploy.pareto import Candidate, pareto_front


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_equal_numpys_linear_interpolation(seed):
    rng = np.random.default_rng(seed)
    xs = list(rng.lognormal(size=int(rng.integers(1, 60))))
    for q in (0, 10, 50, 90, 95, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)
    s = summarize(xs)
    assert s.median == pytest.approx(float(np.median(xs))) and s.mean == pytest.approx(float(np.mean(xs)))


def test_best_round_is_the_lowest_median_whatever_the_order():
    rounds = [Stats(m, 0, 0, 0, 0, m, 5) for m in (3.0, 1.5, 2.0, 1.6)]
    for perm in itertools.permutations(rounds):
        assert best_round(list(perm)).median == 1.5


def _brute_front(points):
    """Feasible points no other feasible point is at least as good on both and better on one."""
    feas = [p for p in points if p[3]]
    return sorted({p[0] for p in feas if not any(q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2])
                                                   for q in feas)})


def test_pareto_front_of_a_hand_built_set():
    # (arch, accuracy, latency, feasible)
    pts = [("a", 70, 5.0, True), ("b", 72, 6.0, True), ("c", 71, 7.0, True), ("d", 75, 9.0, False),
           ("e", 72, 6.0, True), ("f", 60, 4.0, True), ("g", 60, 4.5, True)]
    cands = [Candidate(a, acc, lat, 1, 1, f, i) for i, (a, acc, lat, f) in enumerate(pts)]
    front = pareto_front(cands, ("accuracy", "latency"))
    # g is dominated by f, c by b; d is infeasible; b and e tie (neither dominates the other)
    assert {c.arch for c in front} == {"f", "a", "b", "e"}
    assert [c.arch for c in front][:2] == ["f", "a"]


@pytest.mark.parametrize("seed", range(6))
def test_pareto_front_equals_a_brute_force_reference(seed):
    rng = random.Random(seed)
    pts = [(f"x{i}", rng.choice([60, 61, 62, 63, 64]), rng.choice([1.0, 1.5, 2.0, 2.5]), rng.random() < 0.8)
           for i in range(30)]
    cands = [Candidate(a, acc, lat, 1, 1, f, i) for i, (a, acc, lat, f) in enumerate(pts)]
    got = sorted(c.arch for c in pareto_front(cands, ("accuracy", "latency")))
    assert got == _brute_front(pts)
    lat = [c.latency_ms for c in pareto_front(cands, ("accuracy", "latency"))]
    assert lat == sorted(lat)


@pytest.mark.parametrize("seed", range(4))
def test_topk_equals_a_per_sample_count(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(50, 10, generator=g)
    labels = torch.randint(0, 10, (50,), generator=g)
    order = logits.argsort(dim=1, descending=True).tolist()
    for k in (1, 3, 5, 10, 20):
        expected = sum(int(labels[i].item() in order[i][:k]) for i in range(50))
        assert topk_correct(logits, labels, (k,))[0] == expected


@pytest.mark.parametrize("seed", range(5))
def test_calibration_is_least_squares_with_a_non_negative_intercept(seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(1, 5, 12)
    y = 1.3 * x + rng.choice([0.4, -0.8]) + rng.normal(0, 0.05, 12)
    a, b = fit_linear(list(x), list(y))
    a_ls, b_ls = np.polyfit(x, y, 1)
    if b_ls >= 0:
        assert (a, b) == pytest.approx((a_ls, b_ls), rel=1e-9)
    else:  # through the origin: a = sum(xy) / sum(xx)
        assert b == 0.0 and a == pytest.approx(float((x * y).sum() / (x * x).sum()), rel=1e-9)
    loo = loo_calibrated(list(x), list(y))
    for i in range(len(x)):  # leave-one-out: point i predicted by the fit without it
        ai, bi = fit_linear([v for j, v in enumerate(x) if j != i], [v for j, v in enumerate(y) if j != i])
        assert loo[i] == pytest.approx(ai * x[i] + bi)


def test_error_metrics_and_tau_against_scipy_free_references():
    pred, meas = [1.1, 1.9, 3.3], [1.0, 2.0, 3.0]
    assert mape(pred, meas) == pytest.approx(100 * (0.1 + 0.05 + 0.1) / 3)
    assert max_error(pred, meas) == pytest.approx(10.0)
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0 and kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # tau-b with ties, worked by hand: x=(1,2,2,3), y=(1,3,2,3): C=4, D=0, ties x only 1, y only 1
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 3]) == pytest.approx(4 / np.sqrt(5 * 5))
