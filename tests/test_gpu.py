"""The CUDA paths: skipped without a GPU (CI has none). Run them first on any GPU: ``pytest -m gpu``."""
from __future__ import annotations

import math

import pytest
import torch

from nasdeploy.bench.run import BASELINE, COMPILE_REFERENCE, bench
from nasdeploy.bench.runners import TorchRunner
from nasdeploy.fold import fold
from nasdeploy.latency import Settings, measure_table, validate_table
from nasdeploy.space import SMALL_INPUT_STRIDES
from nasdeploy.train import TrainConfig, train_supernet
from nasdeploy.zoo import create_model

from .conftest import needs_cuda

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
    res = bench(["fairnas_c"], "cuda", ["torch", "compile"], [1, 8], ["fp16"], repeats=20, progress=False)
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
