"""The CUDA paths: skipped without a GPU (CI has none). Run them first on any GPU: ``pytest -m gpu``."""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from nasdeploy.backends.torch_eager import TorchRunner
from nasdeploy.bench.run import BASELINE, COMPILE_REFERENCE, BenchOptions, bench
from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.fold import fold
from nasdeploy.latency import Settings, measure_table, validate_table
from nasdeploy.nas.train import TrainConfig, train_supernet
from nasdeploy.zoo import create_model

from .conftest import needs_cuda
from .helpers import small_net

pytestmark = [pytest.mark.gpu, needs_cuda]


def test_cuda_graph_fp16_runner_agrees_with_eager_fp32():
    model = create_model("fairnas_a").eval()
    plain, _ = fold(model, input_size=64)
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        ref = model(x)
    runner = TorchRunner(plain, "cuda", torch.float16)
    out = runner(x).float().cpu()
    again = runner(x).float().cpu()  # a replay of the captured graph
    assert torch.equal(out, again)
    assert (out - ref).abs().max() / ref.abs().max() < 2e-2


def test_bench_cuda_reports_events_copies_and_compile_ratio():
    res = bench(["fairnas_c"], BenchOptions("cuda", ["torch", "compile"], [1, 8], ["fp16"], repeats=20, progress=False))
    by = {(r.backend, r.batch): r for r in res.rows}
    assert {b for b, _ in by} == {BASELINE, COMPILE_REFERENCE, "torch", "compile"}
    for (backend, n), r in by.items():
        assert r.throughput > 0 and r.latency_with_copies["median"] >= r.latency["p10"]
        if backend not in (BASELINE,):
            assert r.vs_compile == pytest.approx(r.throughput / by[(COMPILE_REFERENCE, n)].throughput)
    assert res.environment["device"].startswith("cuda")


def test_cuda_latency_table_fp16_and_validation(tmp_path):
    s = Settings("fairnas", "cuda", "torch", 4, "fp16", 28, list(SMALL_INPUT_STRIDES), 10, warmup=3, repeats=10)
    t = measure_table(s, tmp_path / "lut.json", progress=False)
    assert t.complete and t.stem["median"] > 0
    m = validate_table(t, 4, repeats=10, progress=False).metrics()
    assert m["n"] == 6 and math.isfinite(m["calibrated"]["mape_pct"])


def test_supernet_step_with_amp_on_cuda(tmp_path):
    cfg = TrainConfig(space="scarlet", steps=2, batch_size=8, ckpt_every=1, device="cuda")
    res = train_supernet(cfg, tmp_path / "sn", progress=False)
    assert len(res.history) == 2 and all(math.isfinite(h[1]) for h in res.history)


# ------------------------------------------------ what the review of the never-run GPU code named

def _small(seed: int):
    return small_net(seed)


def test_cuda_graph_outputs_are_not_overwritten_by_the_next_call():
    runner = TorchRunner(_small(1), "cuda", torch.float32)
    a, b = torch.randn(2, 3, 28, 28), torch.randn(2, 3, 28, 28)
    ya = runner(a)
    yb = runner(b)
    assert not torch.equal(ya, yb) and torch.equal(ya, runner(a))


@pytest.mark.parametrize("dynamic", [False, True])
def test_aoti_cuda_static_and_dynamic_batches(tmp_path, dynamic):
    from nasdeploy.backends.aoti import AotiRunner, export_aoti

    net = _small(2)
    x = torch.randn(9, 3, 28, 28)
    with torch.no_grad():
        ref = net(x)
    rng = (1, 8) if dynamic else (8, 8)
    pkg = export_aoti(net, tmp_path / "m.pt2", (8, 3, 28, 28), "cuda", "fp32", rng if dynamic else False)
    r = AotiRunner(str(pkg), "cuda", torch.float32, rng)
    for b in ((1, 5, 8) if dynamic else (8,)):
        assert (r(x[:b]).cpu() - ref[:b]).abs().max() / ref.abs().max() < 1e-3


def test_no_compile_fallback_across_models_and_batches():
    from nasdeploy.backends.compile import CompileRunner

    import copy

    for seed in range(9):
        net = _small(seed)
        r = CompileRunner(copy.deepcopy(net), "cuda", torch.float32)  # the runner moves its module to the GPU
        for b in (1, 4):
            x = torch.randn(b, 3, 28, 28)
            with torch.no_grad():
                assert (r(x).cpu() - net(x)).abs().max() < 1e-3
        assert r.graphs >= 1


def test_event_timing_agrees_with_wall_time():
    from nasdeploy.bench.timing import time_cuda, time_wall_cuda

    runner = TorchRunner(create_model("fairnas_a").eval(), "cuda", torch.float32)
    fn = runner.timed(torch.randn(32, 3, 224, 224))
    ev = time_cuda(fn, 10, 30).median
    wall = time_wall_cuda(fn, 10, 30).median
    assert 0.5 * wall <= ev <= 1.2 * wall, (ev, wall)


def test_bench_records_tf32_and_runs_on_a_named_device():
    res = bench(["fairnas_c"], BenchOptions("cuda:0", ["torch"], [2], ["fp32"], repeats=5, rounds=1, progress=False))
    assert res.environment["tf32"] is False
    assert all("TF32 off" in r.note for r in res.rows if r.dtype == "fp32")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_torchrun_nccl_on_two_gpus(tmp_path):
    import os
    import subprocess
    import sys

    from .conftest import ROOT

    script = tmp_path / "r.py"
    script.write_text("import sys, torch, nasdeploy.nas.train as T\n"
                      "T.train_supernet(T.TrainConfig(space='fairnas', steps=2, batch_size=8, device='cuda'), "
                      "sys.argv[1], progress=False)\n"
                      "assert torch.cuda.current_device() == int(__import__('os').environ['LOCAL_RANK'])\n")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(script), str(tmp_path / "run")], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed")
@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_profile_covers_a_ragged_last_batch(tmp_path, fp16):
    import json

    from nasdeploy.export.api import ExportOptions, export_model
    from nasdeploy.zoo import save_checkpoint

    save_checkpoint(_small(3), tmp_path / "m.pt")
    export_model(str(tmp_path / "m.pt"), tmp_path / "e", opt=ExportOptions(
        engines=[("tensorrt", "fp16" if fp16 else "fp32")], batch=(1, 4, 8), dynamic=True, parity_images=13))
    par = {p["backend"]: p for p in json.loads((tmp_path / "e" / "parity.json").read_text())["parity"]}
    # random weights leave top-1 margins of a few hundredths, which fp16 rounding can flip on one image of 13:
    # the logits' error is what is checked there, agreement only in fp32
    assert par["tensorrt"]["images"] == 13
    assert par["tensorrt"]["real"]["max_rel"] < (2e-2 if fp16 else 1e-3)
    assert fp16 or par["tensorrt"]["top1_agreement"] == 100.0
