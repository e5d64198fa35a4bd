"""Latency tables (nasdeploy/latency/): structure, resume, prediction and validation of measured tables, refusals, INT8
tables; the metrics (MAPE, Kendall's tau-b, the calibration fit) at known numbers, at their edges and against
independent references."""
import json
import random

import numpy as np
import pytest

from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.errors import ArtifactError
from nasdeploy.latency import LatencyTable, Settings, measure_table, validate_table
from nasdeploy.latency import measure as measure_mod
from nasdeploy.latency.metrics import calibrated, fit_calibration, kendall_tau, loo_calibrated, mape, max_error

from .conftest import HAS_CUDA, run_cli


def small(space="fairnas", **kw):
    return Settings(space, "cpu", "onnxruntime", 1, "fp32", 28, list(SMALL_INPUT_STRIDES), 10, warmup=1, repeats=3,
                    **kw)


def test_metrics_on_known_numbers():
    assert mape([110, 90, 100], [100, 100, 100]) == pytest.approx(20 / 3)
    assert max_error([110, 90, 100], [100, 100, 100]) == pytest.approx(10)
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / (3 * 2) ** 0.5)  # tau-b with a tie in x
    cal = fit_calibration([1, 2, 3], [5, 5, 5], [9, 9, 9], [3, 5, 7])  # blocks and sizes constant: a * sum + b
    assert (cal["a"], cal["b"], cal["c"], cal["d"]) == pytest.approx((2.0, 1.0, 0.0, 0.0))
    cal = fit_calibration([2, 3, 4], [5, 5, 5], [9, 9, 9], [1, 3, 5])  # a negative intercept is kept
    assert (cal["a"], cal["b"]) == pytest.approx((2.0, -3.0))
    assert loo_calibrated([1, 2, 3, 4], [5] * 4, [9] * 4, [3, 5, 7, 9]) == pytest.approx([3, 5, 7, 9])


def test_small_table_structure_and_resume(tmp_path, monkeypatch):
    out = tmp_path / "lut.json"
    t = measure_table(small(), out, positions=[0, 1], progress=False)
    d = json.loads(out.read_text())
    assert d["format"] == "nasdeploy-latency-table" and d["space"] == "fairnas" and d["batch"] == 1
    assert d["backend"] == "onnxruntime" and d["complete"] is False and "environment" in d["provenance"]
    for entry in [d["stem"], d["head"], *d["layers"][0].values(), *d["layers"][1].values()]:
        assert entry["p10"] <= entry["median"] <= entry["p90"] and entry["repeats"] == 3
    assert set(d["layers"][0]) == {"k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6"}
    assert all(not l for l in d["layers"][2:])
    calls = []
    real = measure_mod.time_module
    monkeypatch.setattr(measure_mod, "time_module", lambda *a, **k: calls.append(1) or real(*a, **k))
    t2 = measure_table(small(), out, positions=[0, 1, 2], progress=False)  # rerun continues
    assert len(calls) == 6  # only layer 2's six choices were timed
    assert t2.layers[0] == t.layers[0] and t2.stem == t.stem


def test_identical_blocks_are_timed_once(tmp_path, monkeypatch):
    calls = []
    real = measure_mod.time_module
    monkeypatch.setattr(measure_mod, "time_module", lambda *a, **k: calls.append(1) or real(*a, **k))
    t = measure_table(small(), tmp_path / "lut.json", positions=[3, 4, 5], progress=False)  # 40->40, same size
    assert len(calls) == 2 + 6  # stem, head and one set of six
    assert t.layers[4]["k5e6"]["median"] == t.layers[3]["k5e6"]["median"]


def test_full_table_predicts_and_validates(tmp_path):
    out = tmp_path / "lut.json"
    t = measure_table(small(), out, progress=False)
    assert t.complete
    arch, fastest = t.fastest()
    assert str(arch).count("k3e3") == 19 or fastest <= t.predict("-".join(["k7e6"] * 19))
    v = validate_table(t, 4, repeats=3, rounds=2, progress=False)
    m = v.metrics()
    assert m["n"] == 4 + 2 and m["raw"]["mape_pct"] >= 0  # plus the fastest and slowest architectures
    assert t.fastest(False)[0] and str(t.fastest(False)[0]) in v.archs and str(t.slowest()) in v.archs
    again = LatencyTable.load(out)
    assert again.calibration["n"] == 6 and again.calibration["a"] > 0  # fitted on whole networks, stored
    assert again.fastest()[1] > 0
    assert again.predict(str(arch)) == pytest.approx(again.calibration["a"] * again.raw(arch) + again.calibration["b"])


def test_tables_refused_for_another_space_or_when_truncated(tmp_path):
    out = tmp_path / "lut.json"
    measure_table(small(), out, positions=[0], progress=False)
    with pytest.raises(ArtifactError, match="measured for the fairnas space, not scarlet"):
        LatencyTable.load(out, space="scarlet")
    data = out.read_text()
    out.write_text(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        LatencyTable.load(out)
    with pytest.raises(ArtifactError, match="other settings"):
        measure_table(small(), tmp_path / "x.json", positions=[0], progress=False)
        measure_table(Settings("fairnas", "cpu", "onnxruntime", 2, "fp32", 28, list(SMALL_INPUT_STRIDES), 10,
                               warmup=1, repeats=3), tmp_path / "x.json", positions=[0], progress=False)


@pytest.mark.parametrize("args, fragment", [
    (["--batch", "0"], "--batch must be at least 1"),
    (["--backend", "tvm"], "unknown backend 'tvm'"),
    (["--backend", "onnxruntime", "--dtype", "bf16"], "use fp32 or int8"),
    (["--backend", "torch", "--dtype", "int8"], "runs fp32 on cpu"),
    (["--dtype", "int4"], "unknown precision 'int4'"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    pytest.param(["--device", "cuda"], "no CUDA device", marks=pytest.mark.skipif(HAS_CUDA, reason="has CUDA")),
])
def test_bad_input_is_one_line(tmp_path, args, fragment):
    r = run_cli("latency-table", "--out", str(tmp_path / "l.json"), *args)
    assert r.returncode == 2 and fragment in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.skipif(__import__("importlib").util.find_spec("openvino") is None, reason="OpenVINO is not installed")
def test_an_int8_table_times_quantized_blocks_and_networks(tmp_path):
    """The deployed precision: OpenVINO INT8 entries, resumable like any table, and the end-to-end timing that
    validation uses runs whole INT8 networks."""
    from nasdeploy.data import SMALL_INPUT_STRIDES
    from nasdeploy.latency import Settings, measure_table, time_network
    from nasdeploy.latency.measure import choice_block, input_sizes, runner_for
    from nasdeploy.nas.space import get_space

    s = Settings("fairnas", "cpu", "openvino", 1, "int8", 28, list(SMALL_INPUT_STRIDES), 10, warmup=2, repeats=5,
                 rounds=1)
    t = measure_table(s, tmp_path / "lut.json", positions=[18], progress=False)
    assert t.dtype == "int8" and len(t.layers[18]) == 6 and all(e["median"] > 0 for e in t.layers[18].values())
    again = measure_table(s, tmp_path / "lut.json", positions=[17, 18], progress=False)  # resumes, keeps layer 18
    assert again.layers[18] == t.layers[18] and len(again.layers[17]) == 6
    block = choice_block("fairnas", 18, get_space("fairnas").choices_at(18)[0], SMALL_INPUT_STRIDES)
    h = input_sizes("fairnas", 28, SMALL_INPUT_STRIDES)[0][18]
    runner = runner_for(block, (1, block.inp, h, h), s)
    assert runner.precision == "f32" and runner.name == "openvino"  # float ops of the Q/DQ graph stay float32
    arch = get_space("fairnas").sample(random.Random(0))
    assert time_network(t, arch, warmup=1, repeats=3).median > 0


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


def test_calibration_edges():
    # a flat or falling measurement does not follow the table: the sum is only scaled, through the origin
    cal = fit_calibration([1.0, 2.0, 3.0], [4, 5, 6], [7, 8, 9], [3.0, 2.0, 1.0])
    assert cal["a"] > 0 and cal["b"] == 0.0 and cal["c"] == 0.0 and cal["model"] == "a * sum"
    assert fit_calibration([0.0, 0.0], [1, 1], [1, 1], [1.0, 2.0])["a"] == 1.0  # nothing to scale
    cal = fit_calibration([1.0, 2.0, 3.0], [4, 4, 4], [1, 1, 1], [5.0, 5.0, 5.0])
    assert cal["a"] == pytest.approx(30 / 14) and cal["b"] == 0.0
    assert calibrated(None, 2.5, 7, 100) == 2.5
    assert calibrated({"a": 2.0, "b": 1.0, "c": -0.1, "d": 0.5, "cache_params": 10.0}, 3.0, 10, 12.0) \
        == pytest.approx(6.0 + 1.0)
    assert calibrated({"a": 2.0, "b": 1.0, "c": -0.1, "d": 0.5, "cache_params": 10.0}, 3.0, 10, 8.0) \
        == pytest.approx(6.0)  # inside the cache: no memory term


@pytest.mark.parametrize("seed", range(5))
def test_calibration_takes_back_a_per_block_cost(seed):
    """Tables whose entries each carry a fixed per-call cost: the sum over-predicts by that cost per block. Least
    squares on (sum, blocks, 1) recovers the scale, the per-block cost and the intercept (numpy's lstsq as the
    independent reference), and leave-one-out predicts each point from a fit without it."""
    rng = np.random.default_rng(seed)
    k = rng.integers(8, 20, 24)
    true = rng.uniform(0.2, 2.0, 24)
    overhead = rng.uniform(0.01, 0.05)
    raw = true + overhead * k  # what summing stand-alone blocks gives
    size = np.full(24, 5.0)  # every network the same size: no memory term to find
    meas = 0.9 * true + 0.05 + rng.normal(0, 1e-4, 24)
    cal = fit_calibration(list(raw), list(k), list(size), list(meas))
    ref, *_ = np.linalg.lstsq(np.c_[raw, k, np.ones(24)], meas, rcond=None)
    assert (cal["a"], cal["c"], cal["b"]) == pytest.approx(tuple(ref), rel=1e-9, abs=1e-12) and cal["d"] == 0.0
    assert cal["a"] == pytest.approx(0.9, rel=1e-2) and cal["c"] == pytest.approx(-0.9 * overhead, rel=2e-2)
    loo = loo_calibrated(list(raw), list(k), list(size), list(meas))
    for i in range(24):
        keep = [j for j in range(24) if j != i]
        ci = fit_calibration([raw[j] for j in keep], [k[j] for j in keep], [size[j] for j in keep],
                             [meas[j] for j in keep])
        assert loo[i] == pytest.approx(calibrated(ci, raw[i], int(k[i]), size[i]))
    assert mape(loo, list(meas)) < 1.0  # the per-block cost taken back: the sum alone misses by far more
    assert mape(list(raw), list(meas)) > 5.0


@pytest.mark.parametrize("seed", range(3))
def test_calibration_finds_where_the_weights_outgrow_the_cache(seed):
    """Networks whose weights outgrow the caches read them from memory on every call, which blocks timed alone
    never do: the fit finds the size where that starts (among the measured sizes) and its cost per parameter, and
    predicts what a sum alone misses by tens of percent."""
    rng = np.random.default_rng(seed)
    n = 40
    raw = rng.uniform(0.2, 1.3, n)
    k = rng.integers(6, 20, n)
    size = 0.8 + 6.0 * (raw - 0.2) / 1.1 + rng.normal(0, 0.3, n)  # bigger networks are slower and larger
    cache = float(np.quantile(size, 0.6))
    meas = 0.8 * raw - 0.004 * k + 0.3 * np.maximum(0.0, size - cache) + 0.02
    cal = fit_calibration(list(raw), list(k), list(size), list(meas))
    assert cal["d"] == pytest.approx(0.3, rel=0.05) and abs(cal["cache_params"] - cache) < 0.6
    loo = loo_calibrated(list(raw), list(k), list(size), list(meas))
    assert mape(loo, list(meas)) < 2.0 and kendall_tau(loo, list(meas)) > 0.95
    assert mape(list(raw), list(meas)) > 10.0


def test_error_metrics_and_tau_against_scipy_free_references():
    pred, meas = [1.1, 1.9, 3.3], [1.0, 2.0, 3.0]
    assert mape(pred, meas) == pytest.approx(100 * (0.1 + 0.05 + 0.1) / 3)
    assert max_error(pred, meas) == pytest.approx(10.0)
    assert kendall_tau([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0 and kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # tau-b with ties, worked by hand: x=(1,2,2,3), y=(1,3,2,3): C=4, D=0, ties x only 1, y only 1
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 3]) == pytest.approx(4 / np.sqrt(5 * 5))


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_a_table_names_the_threads_its_engine_ran_with(tmp_path, threads):
    """A table measured for ENGINE@THREADS records them, is that engine, and times its blocks with them; a table
    without them (older ones too) is the runtime's default."""
    from dataclasses import replace

    from nasdeploy.bench.timing import Clock
    from nasdeploy.latency.measure import runner_for, settings_of
    from torch import nn

    s = replace(small(), threads=threads)
    t = measure_table(s, tmp_path / "lut.json", positions=[0], progress=False)
    assert t.threads == threads and t.engine == "onnxruntime:fp32" + (f"@{threads}" if threads else "")
    back = LatencyTable.load(tmp_path / "lut.json")
    assert back.threads == threads and back.engine == t.engine and back.setting() == t.setting()
    d = json.loads((tmp_path / "lut.json").read_text())
    d.pop("threads")
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert LatencyTable.load(tmp_path / "old.json").threads is None  # a table from before threads were recorded
    if threads:  # what the search's finalists and the speed check build from the table runs with them
        r = runner_for(nn.Sequential(nn.Conv2d(3, 4, 3)).eval(), (1, 3, 8, 8), settings_of(t, Clock()))
        assert r.threads == threads
