import json
import signal
import subprocess
import sys
import time

import pytest

from nasdeploy.errors import UsageError
from nasdeploy.pipeline import PipelineConfig, run_pipeline

from .conftest import ROOT

TINY = """
out = "{out}"
space = "scarlet"
data = "fashion-mnist"
device = "cpu"
accuracy_images = 200

[supernet]
steps = {steps}
batch_size = 8
ckpt_every = 1

[latency]
repeats = 3
warmup = 1
validate_archs = 3

[search]
population = 4
generations = 1
calib_batches = 1
eval_images = 100

[finetune]
steps = 5
batch_size = 16

[export]
parity_images = 32

[bench]
batches = [1]
repeats = 5
"""


def tiny(tmp_path, name="run", steps=2):
    p = tmp_path / f"{name}.toml"
    p.write_text(TINY.format(out=tmp_path / name, steps=steps))
    return p


def test_tiny_pipeline_end_to_end_under_two_minutes(tmp_path):
    cfg = PipelineConfig.read(tiny(tmp_path))
    t0 = time.perf_counter()
    results, report = run_pipeline(cfg, progress=False)
    elapsed = time.perf_counter() - t0
    assert elapsed < 120, elapsed
    out = tmp_path / "run"
    assert all(results[s]["status"] == "ran"
               for s in ("supernet", "latency", "search", "finetune", "export", "accuracy", "bench"))
    text = report.read_text()
    for section in ("## Stages", "Pareto front", "Parity of the exported artefacts", "## Speed", "## Artefacts"):
        assert section in text
    for f in ("report.json", "search/pareto.png", "search/best.toml", "export/model.onnx", "bench.png",
              "lut_validation.png"):
        assert (out / f).exists(), f
    par = results["export"]["parity"][0]
    assert par["backend"] == "onnxruntime" and par["top1_agreement"] == 100.0
    best = results["search"]["best"]
    assert best["latency_ms"] <= results["search"]["target_ms"]
    # a rerun skips everything
    again, _ = run_pipeline(cfg, progress=False)
    assert all(r["status"] == "cached" for r in again.values())


def test_killed_pipeline_resumes_without_redoing_stages(tmp_path):
    cfg = tiny(tmp_path, "cut", steps=3)
    cmd = [sys.executable, str(ROOT / "cli.py"), "pipeline", "--config", str(cfg), "--no-progress"]
    out = tmp_path / "cut"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "stage_latency.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-search
    proc.wait()
    assert (out / "stage_latency.json").exists() and not (out / "stage_bench.json").exists()
    before = {s: (out / f"stage_{s}.json").read_text() for s in ("supernet", "latency")}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[supernet] done before: skipped" in r.stdout and "[latency] done before: skipped" in r.stdout
    for s, text in before.items():
        assert (out / f"stage_{s}.json").read_text() == text
    assert json.loads((out / "stage_bench.json").read_text())["rows"]


def test_bad_config_is_one_line(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[supernet]\nstepz = 3\n")
    with pytest.raises(UsageError, match="unknown setting.*stepz"):
        PipelineConfig.read(p)
