"""The small pure modules pinned down where the broader tests leave room (found by mutation testing:
benchmarks/mutation.sh): samplers, atomic writes, provenance, metrics at their edges, Pareto dominance."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from nasdeploy.errors import UsageError
from nasdeploy.io import atomic_path, provenance, write_json, write_text
from nasdeploy.latency.metrics import fit_linear, kendall_tau, loo_calibrated, mape, max_error
from nasdeploy.pareto import Candidate, dominates, overlaps, pareto_front
from nasdeploy.sampling import StrictFairSampler, UniformSampler, make_sampler
from nasdeploy.space import get_space


# ----------------------------------------------------------------- samplers

@pytest.mark.parametrize("space", ["fairnas", "scarlet"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_strict_fair_paths_cover_every_choice_and_balance_the_extras(space, seed):
    sp = get_space(space)
    s = StrictFairSampler(sp, seed)
    m = max(len(sp.choices_at(i)) for i in range(sp.num_layers))
    assert s.num_paths == m
    extra = [Counter() for _ in range(sp.num_layers)]
    for _ in range(60):
        paths = s.paths()
        assert len(paths) == m and all(len(p) == sp.num_layers for p in paths)
        for i in range(sp.num_layers):
            n = len(sp.choices_at(i))
            col = [p[i] for p in paths]
            assert set(col) == set(range(n))  # every choice once per step
            c = Counter(col)
            assert max(c.values()) <= 2 and sum(v - 1 for v in c.values()) == m - n
            extra[i].update(k for k, v in c.items() if v == 2)
    for i in range(sp.num_layers):  # the extra draws fall on every choice of a short layer, not one
        n = len(sp.choices_at(i))
        if n < m:
            assert len(extra[i]) == n, (i, extra[i])


def test_samplers_are_reproducible_and_resume_from_their_state():
    sp = get_space("scarlet")
    for cls in (StrictFairSampler, UniformSampler):
        a, b = cls(sp, 3), cls(sp, 3)
        assert [a.paths() for _ in range(3)] == [b.paths() for _ in range(3)]
        st = json.loads(json.dumps(a.state_dict()))  # as a checkpoint stores it
        assert st["name"] == cls.name
        nxt = a.paths()
        c = cls(sp, 99)
        c.load_state_dict(st)
        assert c.paths() == nxt
        assert cls(sp, 4).paths() != cls(sp, 3).paths()


def test_uniform_paths_are_single_and_in_range():
    sp = get_space("scarlet")
    s = UniformSampler(sp, 0)
    seen = [set() for _ in range(sp.num_layers)]
    for _ in range(300):
        (p,) = s.paths()
        for i, c in enumerate(p):
            assert 0 <= c < len(sp.choices_at(i))
            seen[i].add(c)
    assert all(len(x) == len(sp.choices_at(i)) for i, x in enumerate(seen))  # every choice reachable


def test_make_sampler_by_name():
    sp = get_space("fairnas")
    assert isinstance(make_sampler("fair", sp, 0), StrictFairSampler)
    assert isinstance(make_sampler("uniform", sp, 0), UniformSampler)
    with pytest.raises(UsageError, match="unknown sampler 'x'.*fair, uniform"):
        make_sampler("x", sp, 0)


# ----------------------------------------------------------------- atomic writes and provenance

def test_atomic_writes_land_whole_and_leave_no_temp(tmp_path):
    p = write_json(tmp_path / "sub" / "a.json", {"x": [1, 2], "p": tmp_path})
    assert json.loads(p.read_text()) == {"x": [1, 2], "p": str(tmp_path)} and p.read_text().endswith("\n")
    assert write_text(tmp_path / "t.txt", "hello").read_text() == "hello"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not (tmp_path / "b.bin").exists()
    assert sorted(q.name for q in tmp_path.iterdir()) == ["sub", "t.txt"]
    assert [q.name for q in (tmp_path / "sub").iterdir()] == ["a.json"]


def test_provenance_says_who_wrote_it():
    p = provenance("nasdeploy export x")
    assert p["command"] == "nasdeploy export x"
    for k in ("written", "nasdeploy", "python", "torch", "host", "cpu"):
        assert p[k], k
    assert "T" in p["written"] and p["written"].endswith("+00:00")
    assert provenance()["command"]  # default: the running command line


# ----------------------------------------------------------------- metrics at their edges

def test_metrics_are_percentages_of_the_measured_value():
    assert mape([2.0], [1.0]) == pytest.approx(100.0) and mape([0.5], [1.0]) == pytest.approx(50.0)
    assert max_error([1.0, 3.0], [1.0, 2.0]) == pytest.approx(50.0)
    assert mape([1.0, 1.0, 1.0, 4.0], [1.0, 1.0, 1.0, 2.0]) == pytest.approx(25.0)  # mean over all points


def test_kendall_tau_edges():
    assert kendall_tau([1, 1, 1], [1, 2, 3]) != kendall_tau([1, 1, 1], [1, 2, 3])  # nan: no ranking
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1, 2], [2, 1]) == -1.0


def test_fit_linear_edges():
    assert fit_linear([1.0, 2.0, 3.0], [3.0, 5.0, 7.0]) == pytest.approx((2.0, 1.0))
    assert fit_linear([1.0, 2.0], [2.0, 4.0]) == pytest.approx((2.0, 0.0))  # intercept exactly 0 is kept
    assert fit_linear([2.0, 2.0], [4.0, 6.0]) == pytest.approx((2.5, 0.0))  # no spread: through the origin
    a, b = fit_linear([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])  # a negative slope is no calibration
    assert a > 0 and b == 0.0
    assert fit_linear([0.0, 0.0], [1.0, 2.0]) == (1.0, 0.0)
    assert loo_calibrated([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx([2.0, 4.0, 6.0])


# ----------------------------------------------------------------- Pareto

def _c(arch, acc, lat, params=1, feasible=True):
    return Candidate(arch, acc, lat, params, 0, feasible, 0)


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
    assert overlaps((1, 2), (2, 3)) and overlaps((1, 4), (2, 3)) and overlaps((2, 3), (1, 4))
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
