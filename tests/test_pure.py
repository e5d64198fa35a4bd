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
from nasdeploy.nas.paths import FairPathSampler, UniformPathSampler, make_path_sampler
from nasdeploy.nas.space import get_space
from nasdeploy.pareto import Candidate, dominates, overlaps, pareto_front


# ----------------------------------------------------------------- samplers

@pytest.mark.parametrize("space", ["fairnas", "scarlet"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_strict_fair_paths_cover_every_choice_and_balance_the_extras(space, seed):
    sp = get_space(space)
    s = FairPathSampler(sp, seed)
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
    for cls in (FairPathSampler, UniformPathSampler):
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
    s = UniformPathSampler(sp, 0)
    seen = [set() for _ in range(sp.num_layers)]
    for _ in range(300):
        (p,) = s.paths()
        for i, c in enumerate(p):
            assert 0 <= c < len(sp.choices_at(i))
            seen[i].add(c)
    assert all(len(x) == len(sp.choices_at(i)) for i, x in enumerate(seen))  # every choice reachable


def test_make_sampler_by_name():
    sp = get_space("fairnas")
    assert isinstance(make_path_sampler("fair", sp, 0), FairPathSampler)
    assert isinstance(make_path_sampler("uniform", sp, 0), UniformPathSampler)
    with pytest.raises(UsageError, match="unknown sampler 'x'.*fair, uniform"):
        make_path_sampler("x", sp, 0)


@pytest.mark.parametrize("seed", [0, 5])
def test_strict_fairness_on_equal_counts_is_one_shuffle_per_layer(seed):
    """FairNAS (6 choices everywhere): each step is one shuffle of every layer's choices and nothing else, so
    a run's paths follow from its seed alone (the documented algorithm, written out independently)."""
    sp = get_space("fairnas")
    s = FairPathSampler(sp, seed)
    rng = random.Random(seed)
    for _ in range(3):
        columns = []
        for _layer in range(sp.num_layers):
            order = list(range(6))
            rng.shuffle(order)
            columns.append(order)
        assert s.paths() == [[col[k] for col in columns] for k in range(6)]


@pytest.mark.parametrize("name", ["fair", "uniform"])
def test_make_sampler_uses_the_seed(name):
    sp = get_space("scarlet")
    first = make_path_sampler(name, sp, 3).paths()
    assert make_path_sampler(name, sp, 3).paths() == first  # same seed, same paths
    assert make_path_sampler(name, sp, 4).paths() != first  # another seed, other paths


def test_space_sizes_are_the_papers():
    assert get_space("fairnas").size() == 6**19  # FairNAS: 6 choices in each of 19 layers
    # SCARLET: 12 choices where a skip is not allowed (each of the 6 stage-opening layers), 13 elsewhere
    assert get_space("scarlet").size() == 12**6 * 13**13


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


def test_json_is_indented_in_insertion_order(tmp_path):
    """Reports and tables are read by people: two-space indent, keys in the order the code wrote them."""
    p = write_json(tmp_path / "a.json", {"z": 1, "a": [1]})
    assert p.read_text() == '{\n  "z": 1,\n  "a": [\n    1\n  ]\n}\n'


def test_provenance_default_command_is_the_command_line(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/nasdeploy", "export", "fairnas_a", "--trt"])
    assert provenance()["command"] == "nasdeploy export fairnas_a --trt"


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


@pytest.mark.parametrize("seed", range(6))
def test_kendall_tau_b_matches_scipy_with_ties(seed):
    """Against an independent implementation, on data with ties in x, in y and in both at once (the three
    tie counts are what separates tau-b from tau-a)."""
    from scipy.stats import kendalltau

    rng = random.Random(seed)
    n = rng.randrange(6, 30)
    x = [rng.randrange(5) for _ in range(n)]
    y = [xi + rng.randrange(-2, 3) if rng.random() < 0.7 else rng.randrange(5) for xi in x]
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic, abs=1e-12)


def test_kendall_tau_known_numbers():
    # 15 pairs: 10 concordant, 1 discordant, 2 tied in x only, 2 tied in y only ->
    # (10 - 1) / sqrt((10 + 1 + 2) * (10 + 1 + 2)) = 9 / 13
    x, y = [1, 1, 2, 3, 3, 4], [2, 1, 1, 3, 5, 5]
    assert kendall_tau(x, y) == pytest.approx(9 / 13)
    assert kendall_tau([1, 1, 2, 2, 3], [1, 1, 2, 2, 3]) == pytest.approx(1.0)  # joint ties then more pairs


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
    # sub-millisecond predictions (spread below 1) and a slope below 1 are ordinary calibrations
    assert fit_linear([0.1, 0.2, 0.4], [0.15, 0.2, 0.3]) == pytest.approx((0.5, 0.1))
    assert fit_linear([1.0, 2.0, 3.0], [1.5, 2.0, 2.5]) == pytest.approx((0.5, 1.0))
    # a flat measurement (slope 0) does not follow the prediction: through the origin, not y = mean
    assert fit_linear([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == pytest.approx((30 / 14, 0.0))


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


# ----------------------------------------------------------------- search spaces and their messages

@pytest.mark.parametrize("name", ["fairnas", "scarlet"])
def test_another_stride_plan_keeps_the_choices_and_moves_the_strides(name):
    from nasdeploy.data import SMALL_INPUT_STRIDES

    sp = get_space(name)
    small = sp.with_strides(SMALL_INPUT_STRIDES)
    assert [small.choices_at(i) for i in range(19)] == [sp.choices_at(i) for i in range(19)]  # skips included
    assert small.allow_skip is sp.allow_skip and small.name == name
    firsts = [l.stride for l in small.layers if l.stride != 1]
    assert firsts == [s for s in SMALL_INPUT_STRIDES if s != 1]  # the plan's strides, not the default ones
    assert [l.stride for l in small.layers] != [l.stride for l in sp.layers]


def test_space_errors_list_the_choices():
    from nasdeploy.errors import ArchError

    with pytest.raises(ArchError, match=r"unknown search space 'mobilenet': choose one of fairnas, scarlet$"):
        get_space("mobilenet")
    with pytest.raises(ArchError, match=r"'skip' is not allowed in the fairnas space; choose one of k3e3, k3e6, "):
        get_space("fairnas").validate("-".join(["skip"] + ["k3e3"] * 18))


# ----------------------------------------------------------------- fold: refusals and the folded flag

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


def test_architecture_tokens_and_their_errors():
    from nasdeploy.errors import ArchError
    from nasdeploy.nas.space import Arch, Choice, layer_plan

    assert Choice.parse("id") == Choice.parse("identity") == Choice.parse("skip") and Choice.parse("skip").skip
    a = Arch.parse("k3e3-k5e6se")
    assert Arch.parse(["k3e3", "k5e6se"]) == a == Arch.parse("k3e3, k5e6se")  # a list of tokens, other separators
    with pytest.raises(ArchError, match=r"^'k3x3' is not a layer token: use kKeE \(e\.g\. k7e3\), kKeEse"):
        Choice.parse("k3x3")
    with pytest.raises(ArchError, match=r"^empty architecture string: give one token per layer"):
        Arch.parse("  ")
    with pytest.raises(ArchError, match=r"^a stride plan needs 6 entries, got 2$"):
        layer_plan([2, 2])
