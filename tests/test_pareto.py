"""Pareto fronts (nasdeploy/pareto.py): dominance needs one strict improvement; fronts from hand-built sets and against
a brute-force reference; overlapping intervals."""
from __future__ import annotations

import random

import pytest

from nasdeploy.pareto import FrontPoint, dominates, overlaps, pareto_front


def _c(arch, acc, lat, params=1, feasible=True):
    return FrontPoint(arch, acc, lat, params, 0, feasible, 0)


def test_dominance_needs_one_strict_improvement():
    assert dominates((1, 1), (1, 2)) and dominates((0, 1), (1, 1))
    assert not dominates((1, 1), (1, 1)) and not dominates((1, 2), (2, 1)) and not dominates((2, 1), (1, 1))


def test_objectives_and_front_with_params():
    c = _c("a", 70.0, 2.0, params=5)
    assert c.objectives(("accuracy", "latency", "params")) == (-70.0, 2.0, 5.0)
    cands = [_c("a", 70, 2, 5), _c("b", 70, 2, 4), _c("c", 71, 3, 9), _c("a", 10, 9, 9, feasible=False)]
    front = pareto_front(cands, ("accuracy", "latency", "params"))
    assert [f.arch for f in front] == ["b", "c"]  # sorted by latency; "a" dominated by "b" on params
    # on accuracy and latency alone "a" and "b" tie: neither dominates, both stay, in their order
    assert [f.arch for f in pareto_front(cands, ("accuracy", "latency"))] == ["a", "b", "c"]


def test_overlapping_intervals():
    assert overlaps((1, 2), (2, 3)) and overlaps((2, 3), (1, 2))  # touching intervals overlap, either order
    assert overlaps((1, 4), (2, 3)) and overlaps((2, 3), (1, 4))
    assert not overlaps((1, 2), (2.5, 3)) and not overlaps((2.5, 3), (1, 2))
    assert not overlaps(None, (1, 2)) and not overlaps((1, 2), None)


def test_random_candidates_front_is_mutually_non_dominated():
    rng = random.Random(0)
    cands = [_c(str(i), rng.uniform(50, 80), rng.uniform(1, 5), rng.randrange(1, 9), rng.random() > 0.2)
             for i in range(60)]
    front = pareto_front(cands, ("accuracy", "latency"))
    objs = [f.objectives(("accuracy", "latency")) for f in front]
    assert all(f.feasible for f in front)
    assert all(not dominates(a, b) for a in objs for b in objs)
    lat = [f.latency_ms for f in front]
    assert lat == sorted(lat)


def _brute_front(points):
    """Feasible points no other feasible point is at least as good on both and better on one."""
    feas = [p for p in points if p[3]]
    return sorted({p[0] for p in feas if not any(q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2])
                                                   for q in feas)})


def test_pareto_front_of_a_hand_built_set():
    # (arch, accuracy, latency, feasible)
    pts = [("a", 70, 5.0, True), ("b", 72, 6.0, True), ("c", 71, 7.0, True), ("d", 75, 9.0, False),
           ("e", 72, 6.0, True), ("f", 60, 4.0, True), ("g", 60, 4.5, True)]
    cands = [FrontPoint(a, acc, lat, 1, 1, f, i) for i, (a, acc, lat, f) in enumerate(pts)]
    front = pareto_front(cands, ("accuracy", "latency"))
    # g is dominated by f, c by b; d is infeasible; b and e tie (neither dominates the other)
    assert {c.arch for c in front} == {"f", "a", "b", "e"}
    assert [c.arch for c in front][:2] == ["f", "a"]


@pytest.mark.parametrize("seed", range(6))
def test_pareto_front_equals_a_brute_force_reference(seed):
    rng = random.Random(seed)
    pts = [(f"x{i}", rng.choice([60, 61, 62, 63, 64]), rng.choice([1.0, 1.5, 2.0, 2.5]), rng.random() < 0.8)
           for i in range(30)]
    cands = [FrontPoint(a, acc, lat, 1, 1, f, i) for i, (a, acc, lat, f) in enumerate(pts)]
    got = sorted(c.arch for c in pareto_front(cands, ("accuracy", "latency")))
    assert got == _brute_front(pts)
    lat = [c.latency_ms for c in pareto_front(cands, ("accuracy", "latency"))]
    assert lat == sorted(lat)
