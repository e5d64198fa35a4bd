import json

import pytest

import nasdeploy
from nasdeploy.bench.stats import RoundLatency
from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.errors import ArtifactError, UsageError
from nasdeploy.latency import LatencyTable, Settings, measure_table
from nasdeploy.pareto import dominates
from nasdeploy.search import SearchConfig, SearchInputs, parse_latency, search

from .conftest import run_cli


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    p = tmp_path_factory.mktemp("lut") / "lut.json"
    measure_table(Settings("fairnas", "cpu", "onnxruntime", 1, "fp32", 28, list(SMALL_INPUT_STRIDES), 10,
                           warmup=1, repeats=3), p, progress=False)
    return p


def test_latency_target_needs_units():
    assert parse_latency("1.2ms") == 1.2
    assert parse_latency("850us") == pytest.approx(0.85)
    assert parse_latency("0.002s") == pytest.approx(2.0)
    for bad in ("1.2", "fast", "-1ms", "0ms"):
        with pytest.raises(UsageError):
            parse_latency(bad)


def _proxy(lut, out, target, pop=6, evaluations=12, confidence=0.9):
    t = LatencyTable.load(lut)
    cfg = SearchConfig(target_ms=target if target else 1.2 * t.fastest()[1], population=pop,
                       evaluations=evaluations, accuracy_proxy=True, finalists=6, time_rounds=2, time_repeats=10,
                       latency_confidence=confidence)
    return search(SearchInputs(space="fairnas", lut=str(lut), input_size=28), cfg, out, progress=False), cfg


def test_search_meets_the_target_and_the_front_is_non_dominated(lut, tmp_path):
    t = LatencyTable.load(lut)
    target = t.fastest()[1] + 0.5 * (t.predict("-".join(["k7e6"] * 19)) - t.fastest()[1])
    r, cfg = _proxy(lut, tmp_path / "s", target)
    assert len(r.candidates) == 12 and r.best is not None and all(c.feasible for c in r.front)
    # the choice is made on finalists timed end to end: a finalist qualifies when its upper bound holds the target,
    # the chosen one is confirmed by fresh rounds, and no qualifying finalist is both faster and better than it
    assert r.finalists and r.chosen.measured_ms == r.best.latency_ms and r.chosen.target_ms == target
    lat = r.chosen.latency
    assert lat["median"] == pytest.approx(r.best.latency_ms, abs=1e-6) and r.chosen.confidence == 0.9
    # the verdict is the fresh rounds' (what confirms the choice); the figure takes every round it was timed in
    judge = r.chosen.fresh or lat
    assert r.chosen.meets_target == (r.chosen.verdict == "meets") == (judge["upper"] is not None
                                                                     and judge["upper"] <= target)
    own = next(f for f in r.finalists if f.arch == r.best.arch).timing[r.best.engine]["round_medians"]
    assert lat["round_medians"] == own + (r.chosen.fresh or {}).get("round_medians", [])
    for f in r.finalists:
        tm = f.timing[f.engine]
        want = "meets" if tm["upper"] is not None and tm["upper"] <= target else \
            "misses" if tm["lower"] is not None and tm["lower"] > target else "undecided"
        assert f.verdict == want and f.upper_ms == pytest.approx(tm["upper"], abs=1e-6) and f.rounds == tm["rounds"]
        # two rounds cannot bound a median at 90%: at least four, then more while undecided, up to 3 x 2
        assert 4 <= tm["rounds"] <= 6 and len(tm["round_medians"]) == tm["rounds"]
        if tm["rounds"] > 4:
            assert RoundLatency.of(tm["round_medians"][:-1]).verdict(target) == "undecided"
    if r.choice["confirmed"]:
        assert r.chosen.retimed and r.chosen.verdict == "meets"
    else:
        assert not any(f.verdict == "meets" and f.arch not in [x["arch"] for x in r.choice["not_confirmed"]]
                       for f in r.finalists)
    assert r.choice["dominated_by"] == []
    chosen = next(f for f in r.finalists if f.arch == r.best.arch)
    assert set(chosen.measured_ms) == set(t.engine for t in [t]) and chosen.predicted_ms
    from nasdeploy.search.outputs import front_of

    fo = front_of(cfg)
    objs = [c.objectives(fo) for c in r.front]
    for i, a in enumerate(objs):
        assert not any(dominates(b, a) for j, b in enumerate(objs) if j != i)
    # every feasible trial is dominated by (or on) the front
    for c in r.candidates:
        if c.feasible and c.arch not in {f.arch for f in r.front}:
            assert any(dominates(f.objectives(fo), c.objectives(fo)) or f.objectives(fo) == c.objectives(fo)
                       for f in r.front)
    assert (tmp_path / "s" / "pareto.png").exists() and (tmp_path / "s" / "pareto.json").exists()
    speed = json.loads((tmp_path / "s" / "pareto.json").read_text())["throughput"]
    assert speed["trials"] == 12 and 1 <= speed["evaluated"] <= 12 and speed["evaluated_per_minute"] > 0
    card = nasdeploy.zoo.Card.read(tmp_path / "s" / "best.toml")
    assert str(card.arch) == r.best.arch and card.search["target_ms"] == target


def test_chosen_card_exports_and_runs(lut, tmp_path):
    import torch

    from nasdeploy.backends.onnxruntime import OrtRunner
    from nasdeploy.export.api import ExportOptions, export_model

    _proxy(lut, tmp_path / "s", None, pop=4, evaluations=4)
    export_model(str(tmp_path / "s" / "best.toml"), tmp_path / "e", opt=ExportOptions(parity_images=16))
    y = OrtRunner(str(tmp_path / "e" / "model.onnx"))(torch.randn(2, 3, 28, 28))
    assert tuple(y.shape) == (2, 10)


def test_target_below_the_fastest_architecture_says_how_fast(lut, tmp_path):
    fastest = LatencyTable.load(lut).fastest()[1]
    with pytest.raises(UsageError, match=f"fastest possible is predicted at {fastest:.3f} ms"):
        _proxy(lut, tmp_path / "s", fastest * 0.5)


@pytest.mark.parametrize("target, fragment", [("2", "needs a unit"), ("-3ms", "must be positive")])
def test_bad_targets_are_one_line(lut, tmp_path, target, fragment):
    r = run_cli("search", "--accuracy-proxy", "--lut", str(lut), f"--latency-target={target}", "--out", str(tmp_path))
    assert r.returncode == 2 and fragment in r.stderr and r.stderr.count("\n") == 1


def test_lut_of_another_space_than_the_search(lut, tmp_path):
    r = run_cli("search", "--accuracy-proxy", "--space", "scarlet", "--input-size", "28", "--lut", str(lut),
                "--latency-target", "5ms", "--out", str(tmp_path))
    assert r.returncode == 2 and "measured for the fairnas space, not scarlet" in r.stderr


def test_lut_for_another_input_size_than_the_supernet(lut, tmp_path):
    from nasdeploy.data import InputSetting
    from nasdeploy.latency import EngineTables
    from nasdeploy.search import check_lut_matches

    with pytest.raises(ArtifactError, match="28px"):
        check_lut_matches(EngineTables.load(lut), "fairnas", InputSetting())


def test_search_on_a_real_supernet_writes_the_subnet_it_scored(lut, tmp_path):
    """best.pt is the recalibrated subnet whose accuracy the search reported (its finalists' race): scored here with
    an independent loop over the same search-validation images, its top-1 is the search's, image for image."""
    import torch

    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.nas.train import TrainConfig, train_supernet
    from nasdeploy.data import labelled_batches
    from nasdeploy.zoo import Card, load_any

    sn = train_supernet(TrainConfig(space="fairnas", steps=6, batch_size=16, ckpt_every=100, device="cpu"),
                        tmp_path / "sn", progress=False).path
    t = LatencyTable.load(lut)
    cfg = SearchConfig(target_ms=2.0 * t.fastest()[1], population=4, evaluations=4, calib_batches=1,
                       calib_batch_size=32, eval_images=300, race_images=300, race_calib_images=64,
                       finalists=3, time_rounds=1, time_repeats=5)
    r = search(SearchInputs(supernet=str(sn), lut=str(lut)), cfg, tmp_path / "s", progress=False)
    assert r.best is not None and r.accuracy_label == "supernet top-1 (%)"
    card = Card.read(tmp_path / "s" / "best.toml")
    assert str(card.arch) == r.best.arch and card.checkpoint["file"] == "best.pt"
    net = load_any(tmp_path / "s" / "best.toml").eval()
    assert str(net.arch) == r.best.arch

    # the chosen architecture's figure is its race estimate: the first 300 search-validation images here
    val, _ = labelled_batches(None, "search_val", BUILTIN_SETTING, 300, batch=100)
    correct = images = 0
    spread = []
    with torch.no_grad():
        for x, y in val:
            logits = net(x)
            spread.append(float((logits - logits.mean(0)).abs().max()))
            correct += sum(int(p == q) for p, q in zip(logits.argmax(1).tolist(), y.tolist()))
            images += len(y)
    assert images == 300 and max(spread) > 1e-3  # the subnet's outputs depend on its input
    assert 100.0 * correct / images == pytest.approx(r.best.accuracy, abs=1e-9)


def _bare_study(tmp_path, name: str):
    """A study made in a storage by something other than `nasdeploy search` (no nasdeploy settings in it)."""
    import optuna

    from nasdeploy.search import study as S

    storage = S.open_storage(f"sqlite:///{tmp_path / 'studies.db'}", None)
    optuna.create_study(study_name=name, storage=storage, directions=["maximize"])
    return storage


def test_a_study_without_nasdeploy_settings_is_refused_not_joined(tmp_path):
    """A worker joining a study waits for its maker's settings; when they never appear, it says so (it never skips
    the check that the study was made for the same problem)."""
    import time

    from nasdeploy.search import Problem
    from nasdeploy.search import study as S

    storage = _bare_study(tmp_path, "bare")
    problem = Problem([("a", "b")] * 3, lambda t: float(t.count("b")), lambda i, tok: float(tok == "b"), 2.0)
    t0 = time.monotonic()
    with pytest.raises(UsageError, match=r"study 'bare' in this storage has no nasdeploy settings after 0.3 s"):
        S.create_or_load(storage, "bare", ["maximize"], {"space": "fairnas"}, problem, 2, 0, settings_wait=0.3)
    assert time.monotonic() - t0 >= 0.3  # it waited for them first
    study, made = S.create_or_load(storage, "new", ["maximize"], {"space": "fairnas"}, problem, 2, 0)
    assert made and study.user_attrs[S.META] == {"space": "fairnas"}
    with pytest.raises(UsageError, match=r"study 'new' in this storage was made for other settings \(space\)"):
        S.create_or_load(storage, "new", ["maximize"], {"space": "scarlet"}, problem, 2, 0)


def test_waiting_for_a_study_that_never_appears_is_an_error(tmp_path):
    from nasdeploy.search import study as S

    storage = _bare_study(tmp_path, "there")
    assert S.wait_for_study(storage, "there", timeout=0.1).study_name == "there"
    with pytest.raises(UsageError, match=r"study 'missing' did not appear in the storage within 0.3 s"):
        S.wait_for_study(storage, "missing", timeout=0.3)


@pytest.mark.parametrize("seed", range(6))
def test_the_finalists_hold_the_whole_front_before_the_tied(seed):
    """Whatever the study: every point of its front is a finalist (spread evenly over the front's latencies, its
    fastest and its best included, when the front alone exceeds the limit), the tied fill what room is left, and
    nothing else is raced."""
    import random

    import numpy as np

    from nasdeploy.search.candidate import Candidate
    from nasdeploy.search.estimate import Estimate, paired
    from nasdeploy.search.finalists import pick_finalists

    rng = random.Random(seed)
    n, images = rng.randint(8, 40), 400
    cands = []
    for i in range(n):
        p = rng.uniform(0.6, 0.75)
        correct = np.array([rng.random() < p for _ in range(images)])
        cost = rng.uniform(0.3, 0.5)
        cands.append(Candidate(f"a{i}", {"e": cost}, trial=i, cost=cost, study_score=0.0,
                               study_estimate=Estimate(100.0 * correct.mean(), 1.0, correct,
                                                       np.ones(images, np.float32))))
    top1 = {c.arch: c.study_estimate.top1 for c in cands}
    front = [c for c in cands if not any(top1[o.arch] >= top1[c.arch] and o.cost <= c.cost
                                         and (top1[o.arch] > top1[c.arch] or o.cost < c.cost) for o in cands)]
    best = max(cands, key=lambda c: top1[c.arch])
    tied = {c.arch for c in cands if paired(best.study_estimate, c.study_estimate, "top1")[1] <= 0.0}
    for limit in (1, 3, len(front), len(front) + 4):
        got = pick_finalists(cands, {c.arch for c in front}, "top1", limit)
        archs = [c.arch for c in got]
        assert len(archs) == len(set(archs)) == min(limit, len(set(tied) | {c.arch for c in front}))
        assert set(archs) <= tied | {c.arch for c in front}
        by_cost = sorted(front, key=lambda c: c.cost)
        if limit >= len(front):
            assert {c.arch for c in front} <= set(archs)
        elif limit > 1:
            assert by_cost[0].arch in archs and by_cost[-1].arch in archs


@pytest.mark.parametrize("engines", [{"onnxruntime:fp32": 0.41, "openvino:bf16": 0.38}, {}])
def test_a_candidate_is_read_from_its_trial_once_and_keeps_its_figures_apart(engines):
    """What the study's objective stores on a trial (an estimate on the search's images; per-engine predictions,
    or only the cost and engine a study of an earlier version stored) becomes one Candidate: its study point is
    what the fronts list, and its finalist figures (timed rounds, the race) move its measured point but never
    its study point."""
    import numpy as np
    import optuna

    from nasdeploy.search.candidate import Candidate
    from nasdeploy.search.estimate import Estimate

    correct = np.arange(50) % 3 != 0
    est = Estimate(100.0 * correct.mean(), 0.9, correct, np.full(50, 0.9, np.float32))
    attrs = {"arch": "k3e3-k5e6", "cost": 0.38, "score": est.top1, "params": 1200, "macs": 34000,
             "engine": "openvino:bf16", **est.to_attrs()}
    if engines:
        attrs["latency_by_engine"] = engines
    trial = optuna.trial.create_trial(values=[est.top1, 0.38], user_attrs=attrs,
                                      distributions={}, params={})
    trial.number = 7
    c = Candidate.from_trial(trial, lambda ms: ms <= 0.4)
    assert (c.arch, c.trial, c.cost, c.feasible, c.params, c.macs) == ("k3e3-k5e6", 7, 0.38, True, 1200, 34000)
    assert c.predicted_ms == (engines or {"openvino:bf16": 0.38}) and c.engine == "openvino:bf16"
    pt = c.study_point()
    assert (pt.accuracy, pt.latency_ms, pt.engine, pt.score) == (pytest.approx(est.top1), 0.38, "openvino:bf16",
                                                                pytest.approx(est.top1))
    assert pt.ci95[0] < pt.accuracy < pt.ci95[1]
    c.timing = {"onnxruntime:fp32": RoundLatency.of([0.35, 0.36, 0.37, 0.36]),
                "openvino:bf16": RoundLatency.of([0.45, 0.44, 0.46, 0.45])}
    raced = Estimate(100.0 * (~correct).mean(), 1.1, ~correct, np.full(50, 1.1, np.float32))
    c.estimate = raced
    chosen = c.measured_point("top1")
    assert chosen.engine == "onnxruntime:fp32" and chosen.latency_ms == pytest.approx(0.36)
    assert chosen.accuracy == pytest.approx(raced.top1) and c.score("top1") == pytest.approx(raced.top1)
    assert c.study_point() == pt  # the study's figures stay as the study stored them
    record = c.finalist_record("top1", target=0.4)
    assert record.study_top1 == pytest.approx(est.top1) and record.race_top1 == pytest.approx(raced.top1)
    assert record.engine == "onnxruntime:fp32" and record.verdict == c.timing["onnxruntime:fp32"].verdict(0.4)
    assert (record.predicted, record.measured, record.rounds) == (0.41 if engines else None, pytest.approx(0.36), 4)
    from dataclasses import asdict

    from nasdeploy.pipeline.config import from_table
    from nasdeploy.search.config import FinalistRecord

    assert from_table(FinalistRecord, json.loads(json.dumps(asdict(record))), "finalist") == record


@pytest.mark.parametrize("seed", range(4))
def test_finalists_the_tables_under_predicted_bring_a_second_round_that_meets_the_target_when_corrected(seed):
    """Whatever the candidates: when every timed finalist misses the target and runs slower than its tables said,
    the second round takes only evaluated architectures not yet timed whose prediction, scaled by the finalists'
    median bias, meets the target; none where a finalist already holds it, or where the tables over-predicted."""
    import random

    import numpy as np

    from nasdeploy.search.candidate import Candidate
    from nasdeploy.search.estimate import Estimate
    from nasdeploy.search.finalists import second_round, second_round_text, table_bias

    rng, target, images = random.Random(seed), 1.0, 300
    cands = []
    for i in range(rng.randint(12, 30)):
        cost = rng.uniform(0.85, 1.0) if i < 4 else rng.uniform(0.5, 1.0)  # the first four: the first finalists
        correct = np.array([rng.random() < 0.4 + 0.3 * cost for _ in range(images)])  # slower: more accurate
        cands.append(Candidate(f"a{i}", {"e1": cost, "e2": cost * rng.uniform(1.0, 1.3)}, trial=i, cost=cost,
                               study_score=100 * correct.mean(),
                               study_estimate=Estimate(100 * correct.mean(), 1.0, correct, np.ones(images))))
    cfg = SearchConfig(target_ms=target, finalists=4)
    first = cands[:cfg.finalists]
    slow = rng.uniform(1.25, 1.4)  # the tables under-predict what the search selected: every finalist misses
    for f in first:
        f.timing = {e: RoundLatency.of([v * slow * rng.uniform(0.98, 1.02) for _ in range(6)])
                    for e, v in f.predicted_ms.items()}
    bias = table_bias(first)
    assert all(abs(b / slow - 1) < 0.03 for b in bias.values())
    meets = (lambda ms: ms <= target)
    more, record = second_round(cands, first, cfg, meets, ("accuracy", "latency"))
    timed = {f.arch for f in first}
    eligible = {c.arch for c in cands if c.arch not in timed and min(v * bias[e] for e, v in c.predicted_ms.items())
                <= target}
    best = max((c for c in cands if c.arch in eligible), key=lambda c: c.study_score)
    assert {c.arch for c in more} <= eligible and 0 < len(more) <= cfg.finalists and best.arch in record["finalists"]
    assert all(not c.timing and c.predicted_ms == next(x for x in cands if x.arch == c.arch).predicted_ms
               for c in more)  # the tables' predictions as they were, nothing timed yet
    assert record["finalists"] == [c.arch for c in more]
    assert "second round" in second_round_text({"second_round": record})
    first[0].timing["e1"] = RoundLatency.of([0.5] * 6)  # one finalist holds the target: no second round
    assert second_round(cands, first, cfg, meets, ("accuracy", "latency"))[0] == []
    for f in first:  # the tables over-predicted: no second round either
        f.timing = {e: RoundLatency.of([v * 0.9] * 6) for e, v in f.predicted_ms.items()}
    assert table_bias(first)["e1"] < 1.0 and second_round(cands, first, cfg, meets, ("accuracy", "latency"))[0] == []


@pytest.mark.parametrize("above", [1.5])
def test_a_target_above_every_network_spends_the_budget_on_new_networks(lut, tmp_path, above):
    """A target above the slowest network of the space: the first generation is drawn near the slowest network that
    exists, not in a band above every network (where it would be one network over and over), and every trial of
    the budget evaluates a network of its own."""
    from nasdeploy.search.problem import space_problem
    from nasdeploy.latency import EngineTables
    from nasdeploy.nas.space import get_space

    tables = EngineTables.load(lut)
    slowest = tables.predict(tables.first.slowest())
    r, _ = _proxy(lut, tmp_path / "s", above * slowest, pop=8, evaluations=16, confidence=0.5)
    archs = [c.arch for c in r.candidates]
    assert len(archs) == 16 and len(set(archs)) == 16, archs
    assert r.throughput["evaluated"] == 16 and r.throughput.get("reused", 0) == 0
    problem = space_problem(get_space("fairnas"), tables, above * slowest)
    assert problem.band_floor(0.2) < slowest  # the band lies under the slowest network, inside the space


# settings whose valid values the type alone cannot give (checked against a list)
OTHER_VALUE = {"criterion": "loss", "objectives": ("accuracy", "latency")}


def _other(name: str, value, hint):
    """A valid value of a search setting other than ``value``, derived from its type: a new setting needs no entry
    here unless its values are a closed list."""
    import typing

    if name in OTHER_VALUE:
        return OTHER_VALUE[name]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return max(2, value // 4) if value > 2 else value + 1  # smaller budgets keep the search quick
    if isinstance(value, float):
        return round(value * 0.9, 4)
    if isinstance(value, str) or str in typing.get_args(hint):
        return f"{value or ''}-other"
    raise AssertionError(f"give OTHER_VALUE a value for the search setting {name} ({hint})")


def test_the_command_lines_defaults_are_the_searchs_own():
    """`nasdeploy search` with only a target runs the settings a SearchConfig has by default: the command line
    writes no default of its own (it wrote 2000 evaluation images where the search said 1000)."""
    from dataclasses import MISSING, fields

    from nasdeploy.cli import build_parser

    args = build_parser().parse_args(["search", "--latency-target", "1ms"])
    flag = {"time_repeats": "repeats", "time_rounds": "rounds"}  # the two whose flag is named otherwise
    checked = 0
    for f in fields(SearchConfig):
        name = flag.get(f.name, f.name)
        if f.default is MISSING or f.metadata.get("run") or not hasattr(args, name):
            continue
        want = ",".join(f.default) if isinstance(f.default, tuple) else f.default
        assert getattr(args, name) == want, f.name
        checked += 1
    assert checked >= 12


def test_every_search_setting_round_trips_through_the_study_and_reaches_the_report(lut, tmp_path):
    """Each setting of SearchConfig, set to a value other than its default, is stored with the study, read back by
    a worker (and `search --report`), and written to pareto.json and the result; the list of settings is the
    dataclass's, so a new field is covered without an edit here."""
    import dataclasses
    import typing

    from nasdeploy.search import study as S
    from nasdeploy.search.job import study_config

    hints = typing.get_type_hints(SearchConfig)
    base = SearchConfig(target_ms=1.0)
    kw = {f.name: _other(f.name, getattr(base, f.name), hints[f.name])
          for f in dataclasses.fields(SearchConfig) if not f.metadata.get("run")}
    t = LatencyTable.load(lut)
    kw |= {"target_ms": round(2.0 * t.fastest()[1], 4), "accuracy_proxy": True}  # a proxy search: no supernet
    cfg = SearchConfig(**kw).check()
    assert all(getattr(cfg, k) != getattr(base, k) for k in kw), "every setting differs from its default"
    r = search(SearchInputs(space="fairnas", lut=str(lut), input_size=28), cfg, tmp_path, progress=False)
    assert r.settings == cfg.settings() == json.loads((tmp_path / "pareto.json").read_text())["settings"]
    study = S.load(S.open_storage(f"sqlite:///{tmp_path / 'search.db'}", None), None)
    _, back = study_config(study, device="cpu")
    assert back.settings() == cfg.settings() and back.objectives == cfg.objectives
    clash = SearchConfig.defining()
    assert set(clash) >= {"target_ms", "objectives", "criterion", "evaluations"}
    for k in clash:  # another value for a defining setting is another study
        other = {"settings": {**cfg.settings(), k: "changed"}, "space": "fairnas"}
        assert S.clashes({"settings": cfg.settings(), "space": "fairnas"}, other) == [k]


def test_a_study_stored_by_the_version_before_reads_back():
    """Settings beside the inputs, some under evaluation and finalists, the budget twice: the same settings."""
    from nasdeploy.search import study as S

    old = {"space": "fairnas", "target_ms": 1.5, "objectives": ["accuracy"], "criterion": "top1", "budget": 30,
           "population": 8, "evaluations": 30, "seed": 3, "engines": ["onnxruntime:fp32"], "accuracy_proxy": False,
           "evaluation": {"calib_batches": 2, "calib_batch_size": 64, "eval_images": 500, "split": "search_val"},
           "finalists": {"count": 4, "race_images": 0, "race_calib_images": 512, "time_repeats": 20,
                         "time_rounds": 3, "latency_confidence": 0.8}}
    cfg = SearchConfig.from_settings(S.stored_settings(old))
    assert (cfg.target_ms, cfg.evaluations, cfg.seed, cfg.eval_images, cfg.finalists, cfg.time_rounds,
            cfg.latency_confidence, cfg.objectives) == (1.5, 30, 3, 500, 4, 3, 0.8, ("accuracy",))
