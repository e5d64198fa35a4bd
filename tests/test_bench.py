"""The bench job (nasdeploy/bench/): timing statistics against numpy, the CPU bench against its baseline, the
command line and its refusals (the statistic over rounds: test_stats.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nasdeploy.bench.run import BASELINE, BenchOptions, bench
from nasdeploy.bench.timing import percentile, summarize

from .conftest import HAS_CUDA, run_cli


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_equal_numpys_linear_interpolation(seed):
    rng = np.random.default_rng(seed)
    xs = list(rng.lognormal(size=int(rng.integers(1, 60))))
    for q in (0, 10, 50, 90, 95, 99, 100):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12)
    s = summarize(xs)
    assert s.median == pytest.approx(float(np.median(xs))) and s.mean == pytest.approx(float(np.mean(xs)))


def test_cpu_bench_reports_baseline_and_speedups(tmp_path):
    res = bench(["fairnas_a"], BenchOptions("cpu", ["torch", "onnxruntime", "tensorrt"], [1], repeats=5,
                                            rounds=2, progress=False))
    backends = [r.backend for r in res.rows]
    assert backends == [BASELINE, "torch", "onnxruntime"]
    base = res.rows[0]
    assert base.speedup == 1.0 and base.throughput > 0
    for r in res.rows[1:]:
        assert r.speedup == pytest.approx(r.throughput / base.throughput)
        assert r.latency["p10"] <= r.latency["median"] <= r.latency["p99"]
        assert r.parity["max_rel"] < 1e-4 and r.parity["images"] == 1  # the folded row computes the same
    for r in res.rows:  # every CPU row states its threads, and its throughput per thread follows
        assert r.threads >= 1 and r.per_core == pytest.approx(r.throughput / r.threads)
    assert base.parity["max_rel"] == 0.0
    assert any(s["backend"] == "tensorrt" for s in res.skipped)
    assert res.environment["device"] == "cpu" and res.environment["onnxruntime"]


def test_bench_cli_writes_json_and_plot(tmp_path):
    r = run_cli("bench", "scarlet_c", "--backends", "onnxruntime", "--batch", "1,2", "--repeats", "3",
                "--rounds", "2", "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png"), "--no-progress")
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "b.json").read_text())
    assert {row["batch"] for row in d["rows"]} == {1, 2} and (tmp_path / "b.png").stat().st_size > 1000
    for row in d["rows"]:  # the table states each row's images/s per thread its runtime ran with
        assert row["threads"] >= 1 and f"{row['throughput'] / row['threads']:,.1f}" in r.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--backends", "tvm"], "unknown backend 'tvm'"),
    pytest.param(["--device", "cuda"], "no CUDA device", marks=pytest.mark.skipif(HAS_CUDA, reason="has CUDA")),
    (["--batch", "0"], "at least 1"),
])
def test_bench_bad_input(args, fragment):
    r = run_cli("bench", "fairnas_a", *args)
    assert r.returncode == 2 and fragment in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_the_timing_process_returns_results_errors_and_survives_a_crash():
    """The clean process timing runs in (nasdeploy.bench.worker): a result comes back as it is, a nasdeploy error as
    the same error, a crash of the process (a native runtime's SIGSEGV) as one line naming the signal, and the next
    call starts a new process."""
    import os
    import signal

    from nasdeploy.bench.worker import TimingWorker
    from nasdeploy.errors import ArtifactError, DeviceError
    from nasdeploy.latency.table import LatencyTable

    with TimingWorker() as w:
        pid = w.call(os.getpid)
        assert pid != os.getpid() and w.call(sum, [1, 2, 3]) == 6
        with pytest.raises(ArtifactError, match="latency table /nonexistent.json does not exist"):
            w.call(LatencyTable.load, "/nonexistent.json")
        assert w.call(os.getpid) == pid  # an error does not end the process
        with pytest.raises(DeviceError, match=r"the timing process died \(killed by SIGSEGV\) while running kill"):
            w.call(os.kill, pid, signal.SIGSEGV)
        assert w.call(os.getpid) not in (pid, os.getpid())


@pytest.mark.parametrize("shipped, searched, agrees", [
    ([0.70, 0.72, 0.71, 0.69, 0.70], [0.70, 0.71, 0.72, 0.70, 0.69], True),  # the same speed
    ([0.76, 0.78, 0.77, 0.75, 0.76], [0.70, 0.71, 0.72, 0.70, 0.69], True),  # 8% slower: within 10%
    ([0.84, 0.86, 0.85, 0.83, 0.84], [0.70, 0.71, 0.72, 0.70, 0.69], False),  # 20% slower in every round
    ([0.90, 0.70, 0.91, 0.71, 0.90], [0.70, 0.71, 0.72, 0.70, 0.69], True),  # bounds hold 1: not told apart
])
def test_side_by_side_agrees_by_the_round_by_round_ratio(shipped, searched, agrees):
    """The shipped file and the search's network agree when the ratio of their paired rounds is within 10% of 1 or
    its bounds hold 1; a machine that changed speed since the search moves both alike, so only the drift figure
    shows it."""
    from nasdeploy.bench.side_by_side import SideBySide
    from nasdeploy.bench.stats import RoundLatency

    ratio = RoundLatency.of([a / b for a, b in zip(shipped, searched)]).as_dict()
    sb = SideBySide("onnxruntime:fp32", 1, RoundLatency.of(shipped).as_dict(), RoundLatency.of(searched).as_dict(),
                    ratio, 1.3)
    assert sb.agrees is agrees


def _row(engine_threads, threads, throughput, batch=1, backend="onnxruntime"):
    from nasdeploy.bench.run import BenchRow

    return BenchRow("m", backend, "fp32", batch, throughput, {"median": 1e3 * batch / throughput}, threads=threads,
                    engine_threads=engine_threads)


@pytest.mark.parametrize("cores", [1, 2, 4, 8])
def test_the_serving_layout_is_the_most_images_per_second_on_every_core(cores):
    """Per row, cores // threads instances: one-thread instances win where one thread gives more than 1/cores of
    the many-thread throughput (the Intel machine of 2026-12-07: 1,337 images/s at 1 thread, 1,486 at 2)."""
    from nasdeploy.bench.run import BASELINE, serving_layouts

    rows = [_row(1, 1, 1337.0), _row(None, cores, 1486.0), _row(None, 1, 9999.0, batch=16),
            _row(None, 1, 99999.0, backend=BASELINE)]
    lay = serving_layouts(rows, cores)
    if cores == 1:  # on one core the default runs one thread too, and its own figure is the higher
        assert [x.engine for x in lay] == ["onnxruntime:fp32", "onnxruntime:fp32@1"]
        assert lay[0].images_per_s == 1486.0 and lay[0].instances == 1
    else:
        assert [x.engine for x in lay] == ["onnxruntime:fp32@1", "onnxruntime:fp32"]
        best = lay[0]
        assert best.instances == cores and best.threads == 1 and best.images_per_s == pytest.approx(cores * 1337.0)
    assert all(x.images_per_s >= y.images_per_s for x, y in zip(lay, lay[1:]))
    assert serving_layouts([_row(None, 2 * cores, 5000.0)], cores) == []  # more threads than cores: no layout
