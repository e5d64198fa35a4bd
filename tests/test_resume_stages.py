"""Killed at any moment, resumed, equal to the uninterrupted run: fine-tuning on its own, and the pipeline killed
inside its supernet and fine-tune stages (tests/test_pipeline.py kills it mid-search)."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from nasdeploy.checkpoint import read_file
from nasdeploy.train import load_checkpoint

from .conftest import ROOT
from .helpers import assert_same_training
from .test_pipeline import tiny

FINETUNE = """
import sys, torch
torch.use_deterministic_algorithms(True)
from nasdeploy.finetune import FinetuneConfig, finetune
finetune(sys.argv[1], sys.argv[2], FinetuneConfig(steps=int(sys.argv[3]), batch_size=16, lr=0.05, ckpt_every=1,
                                                 device="cpu"), progress=False)
"""


def _kill_when(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if ready():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ready(), f"the run ended or timed out before {what}"


def _state_step(path: Path) -> int:
    try:
        return int(read_file(path)["step"]) if path.exists() else -1
    except Exception:  # noqa: BLE001 - being replaced right now: not yet readable
        return -1


def _same_weights(a: Path, b: Path) -> None:
    sa, sb = read_file(a)["state_dict"], read_file(b)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_finetune_killed_mid_way_resumes_to_the_uninterrupted_result(tmp_path):
    import random

    from nasdeploy.net import Network
    from nasdeploy.space import SMALL_INPUT_STRIDES, get_space
    from nasdeploy.zoo import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(Network(get_space("scarlet").sample(random.Random(4)), "scarlet", 10, SMALL_INPUT_STRIDES),
                    tmp_path / "sub.pt")
    steps = "8"
    cmd = [sys.executable, "-c", FINETUNE, str(tmp_path / "sub.pt")]
    subprocess.run(cmd + [str(tmp_path / "ref"), steps], check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd + [str(tmp_path / "cut"), steps], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "cut" / "finetune_state.pt"
    _kill_when(proc, lambda: _state_step(state) >= 3, "step 3")
    assert 3 <= _state_step(state) < 8 and not (tmp_path / "cut" / "model.pt").exists()
    subprocess.run(cmd + [str(tmp_path / "cut"), steps], check=True, capture_output=True, timeout=600)
    _same_weights(tmp_path / "ref" / "model.pt", tmp_path / "cut" / "model.pt")


def _config(tmp_path: Path, name: str, tables) -> Path:
    p = tiny(tmp_path, tables, name, steps=6)
    p.write_text(p.read_text().replace("[finetune]\nsteps = 5", "[finetune]\nsteps = 12\nckpt_every = 1"))
    return p


def _pipeline(cfg: Path, stop_after: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "pipeline", "--config", str(cfg), "--no-progress",
            "--stop-after", stop_after]


def test_pipeline_killed_in_the_supernet_stage_resumes_to_the_same_supernet(tmp_path, tiny_tables):
    subprocess.run(_pipeline(_config(tmp_path, "ref", tiny_tables), "supernet"), check=True, capture_output=True,
                   timeout=600)
    cfg = _config(tmp_path, "cut", tiny_tables)
    proc = subprocess.Popen(_pipeline(cfg, "supernet"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "cut" / "supernet" / "checkpoint.pt"
    _kill_when(proc, lambda: ck.exists() and _ckpt_step(ck) >= 2, "supernet step 2")
    assert not (tmp_path / "cut" / "stage_supernet.json").exists()
    r = subprocess.run(_pipeline(cfg, "supernet"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert_same_training(tmp_path / "ref" / "supernet" / "supernet.pt", tmp_path / "cut" / "supernet" / "supernet.pt")


def _ckpt_step(path: Path) -> int:
    try:
        return int(load_checkpoint(path)["step"])
    except Exception:  # noqa: BLE001 - being replaced right now
        return -1


def test_pipeline_killed_in_fine_tuning_resumes_to_the_same_model(tmp_path, tiny_tables):
    """The stages before fine-tuning are copied from the uninterrupted run; the cut run then starts in fine-tuning
    and is killed."""
    subprocess.run(_pipeline(_config(tmp_path, "ref", tiny_tables), "finetune"), check=True, capture_output=True,
                   timeout=600)
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    shutil.copytree(ref, cut, ignore=shutil.ignore_patterns("finetune", "stage_finetune.json"))
    for f in cut.glob("stage_*.json"):  # the copied markers name the reference run's paths
        f.write_text(f.read_text().replace(str(ref), str(cut)))
    cfg = _config(tmp_path, "cut", tiny_tables)
    proc = subprocess.Popen(_pipeline(cfg, "finetune"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = cut / "finetune" / "finetune_state.pt"
    _kill_when(proc, lambda: _state_step(state) >= 3, "fine-tune step 3")
    assert not (cut / "stage_finetune.json").exists()
    r = subprocess.run(_pipeline(cfg, "finetune"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[search] done before: skipped" in r.stdout
    _same_weights(ref / "finetune" / "model.pt", cut / "finetune" / "model.pt")
