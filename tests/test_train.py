"""Supernet training (nasdeploy/nas/train.py): one optimizer update per step, a run killed at any moment resumes to the
uninterrupted result bit for bit, bad data folders and bad resumes refused in one line."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import nasdeploy.nas.train as T
from nasdeploy.errors import ArtifactError, DataError, UsageError
from nasdeploy.nas.supernet_checkpoint import load_checkpoint
from nasdeploy.nas.train import TrainConfig, train_supernet

from .conftest import ROOT, run_cli
from .helpers import assert_same_training, kill_when


def test_one_optimizer_update_per_step(tmp_path, monkeypatch):
    calls = []
    orig = torch.optim.SGD.step

    def counting(self, *a, **k):
        calls.append(1)
        return orig(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", counting)
    cfg = TrainConfig(space="fairnas", steps=2, batch_size=4, ckpt_every=1)
    train_supernet(cfg, tmp_path / "run", progress=False)
    assert len(calls) == 2  # 6 paths per step, one update per step
    ck = load_checkpoint(tmp_path / "run" / "supernet.pt")
    assert ck["step"] == 2 and ck["scheduler"]["last_epoch"] == 2


def _train_cmd(out, steps):
    return [sys.executable, str(ROOT / "cli.py"), "train-supernet", "--space", "fairnas", "--steps", str(steps),
            "--batch-size", "8", "--ckpt-every", "1", "--deterministic", "--no-progress", "--out", str(out)]


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    steps = 6
    subprocess.run(_train_cmd(tmp_path / "ref", steps), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(_train_cmd(tmp_path / "cut", steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "cut" / "checkpoint.pt"
    kill_when(proc, lambda: ck.exists() and load_checkpoint(ck)["step"] >= 3, "supernet step 3", timeout=300)
    stopped = load_checkpoint(ck)["step"]
    assert 3 <= stopped < steps, "the run was not interrupted mid-way"
    r = subprocess.run(_train_cmd(tmp_path / "cut", steps) + ["--resume"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(tmp_path / "cut" / "supernet.pt")["step"] == steps
    assert_same_training(tmp_path / "ref" / "supernet.pt", tmp_path / "cut" / "supernet.pt")


def test_bad_data_folders(tmp_path):
    base = dict(space="fairnas", steps=1, batch_size=2)
    with pytest.raises(DataError, match="does not exist"):
        train_supernet(TrainConfig(data=str(tmp_path / "nope"), **base), tmp_path / "o1", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="one subfolder per class"):
        train_supernet(TrainConfig(data=str(tmp_path / "empty"), **base), tmp_path / "o2", progress=False)
    loose = tmp_path / "loose" / "train"
    loose.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(loose / "a.png")
    with pytest.raises(DataError, match="images directly inside it"):
        train_supernet(TrainConfig(data=str(tmp_path / "loose"), **base), tmp_path / "o3", progress=False)


def test_resume_refuses_another_space_and_corrupt_checkpoints(tmp_path):
    run = tmp_path / "run"
    train_supernet(TrainConfig(space="fairnas", steps=1, batch_size=4), run, progress=False)
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(ArtifactError, match="is a fairnas supernet, not scarlet"):
        train_supernet(TrainConfig(space="scarlet", steps=2, batch_size=4), run, resume=True, progress=False)
    with pytest.raises(UsageError, match="pass --resume"):
        train_supernet(TrainConfig(space="fairnas", steps=2, batch_size=4), run, progress=False)
    assert (run / "checkpoint.pt").read_bytes() == before  # nothing overwritten
    (run / "checkpoint.pt").write_bytes(before[:100])
    r = run_cli("train-supernet", "--space", "fairnas", "--steps", "2", "--out", str(run), "--resume")
    assert r.returncode == 2 and "truncated" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli("train-supernet", "--space", "resnet", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown search space" in r.stderr


@pytest.mark.parametrize("space, path_batches, sampler, ckpt_every, kill_at", [
    ("scarlet", "shared", "fair", 2, 5),      # killed between checkpoints: the lost step is redone
    pytest.param("fairnas", "separate", "fair", 3, 4,  # one batch per path, across the warm-start boundary
                 marks=pytest.mark.extended),
    pytest.param("fairnas", "shared", "uniform", 2, 3, marks=pytest.mark.extended),  # SPOS
])
def test_any_run_killed_mid_way_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, space, path_batches,
                                                                    sampler, ckpt_every, kill_at):
    cfg = TrainConfig(space=space, steps=6, batch_size=4, ckpt_every=ckpt_every, device="cpu",
                      path_batches=path_batches, sampler=sampler, warm_start=2)
    ref = train_supernet(cfg, tmp_path / "ref", progress=False)
    real = T.accumulate_paths
    calls = {"n": 0}

    def dies(*a, **k):
        calls["n"] += 1
        if calls["n"] == kill_at + 1:  # inside step kill_at (0-based), after kill_at completed steps
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(T, "accumulate_paths", dies)
    with pytest.raises(KeyboardInterrupt):
        train_supernet(cfg, tmp_path / "cut", progress=False)
    saved = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"]
    assert saved == (kill_at // ckpt_every) * ckpt_every  # at most ckpt_every - 1 steps lost
    monkeypatch.setattr(T, "accumulate_paths", real)
    cut = train_supernet(cfg, tmp_path / "cut", resume=True, progress=False)
    assert_same_training(ref.path, cut.path)


def test_a_second_training_on_the_same_folder_is_refused_and_the_first_completes(tmp_path):
    """Two trainings aimed at one folder: the second is refused at once, in one line, while the first goes on and
    ends intact (its supernet at its last step, its checkpoint its own)."""
    from nasdeploy.io import LOCK

    from .helpers import wait_until

    out, steps = tmp_path / "run", 6
    first = subprocess.Popen(_train_cmd(out, steps), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (out / "checkpoint.pt").exists() or first.poll() is not None, 300, "the first checkpoint")
        assert first.poll() is None, "the first training ended before the second could try"
        r = run_cli("train-supernet", "--space", "fairnas", "--steps", "3", "--out", out, "--resume", "--no-progress")
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert r.stderr.startswith(f"nasdeploy train-supernet: error: {out} is being written by another nasdeploy "
                                   "process (a supernet training, pid"), r.stderr
    finally:
        _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert load_checkpoint(out / "supernet.pt")["step"] == steps and (out / LOCK).exists()
    r = run_cli("train-supernet", "--space", "fairnas", "--steps", str(steps), "--out", out, "--resume",
                "--no-progress")  # the lock goes with its process: the folder can be continued afterwards
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("ckpt_every", [1, 1000])
def test_an_interrupted_training_says_what_it_left(tmp_path, ckpt_every):
    """Ctrl-C during training: with a checkpoint, the line says where and that --resume continues; before the first
    one, that nothing was saved, and the empty folder is gone."""
    import signal

    from .helpers import wait_until

    out = tmp_path / "run"
    cmd = _train_cmd(out, 10_000)
    cmd[cmd.index("--ckpt-every") + 1] = str(ckpt_every)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = (lambda: (out / "checkpoint.pt").exists()) if ckpt_every == 1 else (lambda: (out / ".nasdeploy.lock")
                                                                                 .exists())
    try:
        wait_until(lambda: ready() or proc.poll() is not None, 300, "the training to start")
        if ckpt_every == 1000:
            import time

            time.sleep(3)  # inside the first steps
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    if ckpt_every == 1:
        assert line.startswith("nasdeploy train-supernet: interrupted: the checkpoint at step ") and \
            f"is in {out}: the same command with --resume continues from it" in line, err
    else:
        assert line == f"nasdeploy train-supernet: interrupted: stopped before the first checkpoint: nothing was " \
                       f"saved in {out}", err
        assert not out.exists()


def test_resume_without_a_checkpoint_says_it_starts_fresh(tmp_path):
    r = run_cli("train-supernet", "--space", "fairnas", "--steps", "1", "--batch-size", "4", "--out", tmp_path / "r",
                "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"no checkpoint in {tmp_path / 'r'} to resume from: training starts at step 0" in r.stdout
