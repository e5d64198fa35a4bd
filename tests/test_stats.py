"""The latency statistic (nasdeploy/bench/stats.py, bench/timing.py): the median of round medians, its order-statistic
bounds (their coverage on distributions of every shape), its stability warnings, the verdict against a target, and
the clock's extra rounds for what is undecided."""
from __future__ import annotations

import math
import random
import statistics

import pytest

from nasdeploy.bench.stats import (RoundLatency, binom_cdf, bound_rank, median_bounds, min_rounds, stability)
from nasdeploy.bench.timing import Clock, Stats, typical_round


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.9, 0.95, 0.99])
def test_the_bound_rank_is_the_smallest_with_the_binomial_coverage(confidence):
    for n in range(1, 41):
        k = bound_rank(n, confidence)
        if k is None:  # too few rounds: even the slowest does not bound the median at this confidence
            assert 1 - 0.5 ** n < confidence and n < min_rounds(confidence)
            continue
        assert n >= min_rounds(confidence)
        assert binom_cdf(k - 1, n) >= confidence and (k == 1 or binom_cdf(k - 2, n) < confidence)
    assert bound_rank(5, 0.9) == 5 and bound_rank(15, 0.9) == 11 and min_rounds(0.9) == 4


def _draw(kind: str, rng: random.Random) -> float:
    if kind == "lognormal":
        return math.exp(rng.gauss(0.0, 0.2))
    if kind == "two modes":  # a slow spell a third of the time
        return (1.3 if rng.random() < 0.35 else 1.0) * math.exp(rng.gauss(0.0, 0.03))
    return 1.0 + rng.expovariate(8.0)  # a long right tail


_TRUE = {"lognormal": 1.0, "exponential": 1.0 + math.log(2) / 8.0}


def _true_median(kind: str) -> float:
    if kind in _TRUE:
        return _TRUE[kind]
    rng = random.Random(99)
    return statistics.median(_draw(kind, rng) for _ in range(200_000))


@pytest.mark.parametrize("kind", ["lognormal", "two modes", "exponential"])
@pytest.mark.parametrize("confidence", [0.8, 0.9])
def test_the_bounds_cover_the_true_median_at_their_confidence(kind, confidence):
    """Whatever the shape of the round medians' distribution, the one-sided bounds hold the true median at least as
    often as their confidence says (and the upper bound is not so loose that it always does)."""
    rng = random.Random(hash((kind, confidence)) % 1000)
    truth = _true_median(kind)
    trials, up_ok, lo_ok = 3000, 0, 0
    for _ in range(trials):
        n = rng.randint(min_rounds(confidence), 20)
        lo, hi = median_bounds([_draw(kind, rng) for _ in range(n)], confidence)
        up_ok += hi >= truth
        lo_ok += lo <= truth
    slack = 3 * math.sqrt(confidence * (1 - confidence) / trials)
    assert up_ok / trials >= confidence - slack and lo_ok / trials >= confidence - slack
    assert up_ok / trials < 1.0


@pytest.mark.parametrize("kind", ["lognormal", "two modes", "exponential"])
def test_the_figure_does_not_fall_as_rounds_are_added(kind):
    """On a noisy row the fastest round falls with every round added (the more draws, the luckier the best) and
    lies under what the row runs at; the median of round medians is never biased under it, and it comes closer
    to it as rounds are added."""
    rng = random.Random(3)
    truth = _true_median(kind)
    mins = {n: [] for n in (5, 15)}
    meds = {n: [] for n in (5, 15)}
    for _ in range(3000):
        xs = [_draw(kind, rng) for _ in range(15)]
        for n in (5, 15):
            mins[n].append(min(xs[:n]))
            meds[n].append(RoundLatency.of(xs[:n]).median)
    mean = {n: statistics.fmean(v) for n, v in meds.items()}
    assert statistics.fmean(mins[15]) < statistics.fmean(mins[5]) < truth * 0.99  # the old figure drifts down
    for n in (5, 15):
        assert mean[n] > truth * 0.99  # never biased low
    assert abs(mean[15] - truth) <= abs(mean[5] - truth) + 0.005 * truth  # and converges


def test_typical_round_takes_each_statistics_median_over_rounds():
    rounds = [Stats(m, m - 0.1, m + 0.1, m + 0.2, m + 0.5, m, 50) for m in (1.3, 1.0, 1.1, 2.0, 1.05)]
    t = typical_round(rounds)
    assert t.median == 1.1 and t.p99 == pytest.approx(1.6) and t.repeats == 50
    with pytest.raises(ValueError):
        typical_round([])


@pytest.mark.parametrize("seed", range(3))
def test_two_timings_joined_are_the_figure_of_all_their_rounds(seed):
    """The search's figure of its chosen architecture takes its qualifying and its fresh rounds together: a spell of
    the machine during either moves the joined median less than it moves that timing's own."""
    rng = random.Random(seed)
    a = [1.0 + rng.gauss(0, 0.02) for _ in range(5)]
    b = [0.75 + rng.gauss(0, 0.02) for _ in range(3)] + [1.0 + rng.gauss(0, 0.02) for _ in range(2)]  # a fast spell
    j = RoundLatency.of(a, 0.8).joined(RoundLatency.of(b, 0.9))
    assert j.round_medians == tuple(a + b) and j.confidence == 0.8 and j.median == statistics.median(a + b)
    assert abs(j.median - 1.0) < abs(RoundLatency.of(b).median - 1.0)
    assert j.lower <= j.median <= j.upper < math.inf


def test_verdicts_against_a_target():
    lat = RoundLatency.of([1.0, 1.02, 0.98, 1.01, 0.99])  # 5 rounds at 90%: bounds are the extremes
    assert (lat.lower, lat.upper) == (0.98, 1.02)
    assert lat.verdict(1.03) == "meets" and lat.verdict(1.02) == "meets"
    assert lat.verdict(0.97) == "misses" and lat.verdict(1.0) == "undecided"
    few = RoundLatency.of([1.0, 1.0, 1.0])  # three rounds cannot bound a median at 90%
    assert few.upper == math.inf and few.verdict(100.0) == "undecided" and few.as_dict()["upper"] is None


def test_stability_names_two_speed_modes_and_a_wide_spread():
    rng = random.Random(0)
    quiet = [1.0 + rng.gauss(0, 0.005) for _ in range(15)]
    assert stability(quiet).stable and stability(quiet).warning is None
    spells = [1.0 + rng.gauss(0, 0.005) for _ in range(9)] + [1.25 + rng.gauss(0, 0.005) for _ in range(6)]
    st = stability(spells)
    assert not st.stable and st.modes is not None and st.mode_rounds == (9, 6)
    assert "two speed modes" in st.warning and abs(st.modes[1] / st.modes[0] - 1.25) < 0.02
    one_outlier = quiet[:-1] + [1.6]  # one slow round is an outlier, not a mode
    assert stability(one_outlier).modes is None
    wide = [math.exp(rng.gauss(0, 0.3)) for _ in range(15)]
    assert "spread" in stability(wide).warning


@pytest.mark.parametrize("seed", range(5))
def test_the_clock_times_again_only_what_is_undecided(seed):
    """Rounds go on past the minimum for exactly the items whose verdict against the target is undecided (or,
    without a target, whose bounds lie far from their median), never past the cap; every round's items come in a
    new order."""
    rng = random.Random(seed)
    n = rng.randint(2, 6)
    target = 1.0 if seed % 2 == 0 else None
    clock = Clock(rounds=rng.randint(1, 5), settle=0.0, agree=0.05)
    noisy = {i: rng.random() < 0.5 for i in range(n)}  # these straddle: a new latency each round around 1.0
    seen: dict[int, list[float]] = {i: [] for i in range(n)}
    orders: list[list[int]] = []

    def measure(i: int, k: int) -> None:
        assert len(seen[i]) == k  # round k of item i is its k-th measurement: rounds pair across items
        if len(orders) <= k:
            orders.append([])
        orders[k].append(i)
        seen[i].append(rng.uniform(0.7, 1.3) if noisy[i] else 0.5)

    ran = clock.interleave(n, measure, decided=lambda i: clock.decided(seen[i], target))
    assert clock.rounds <= ran <= clock.round_cap and clock.round_cap >= max(3 * clock.rounds, 4)
    for i in range(n):
        m = seen[i]
        assert clock.rounds <= len(m) <= ran
        if len(m) > clock.rounds:  # timed again only while undecided
            assert not clock.decided(m[:-1], target)
        if len(m) < clock.round_cap:  # stopped before the cap only once decided
            assert clock.decided(m, target)
        if not noisy[i] and clock.rounds >= 4:  # steady and far under the target: decided at once
            assert len(m) == clock.rounds
    assert all(sorted(o) == sorted(set(o)) for o in orders) and all(len(o) == n for o in orders[:clock.rounds])
