import collections
import random
import subprocess
import sys

import pytest
import torch
from torch import nn

from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.errors import ArtifactError, DataError, UsageError
from nasdeploy.nas.checkpoint import load_checkpoint
from nasdeploy.nas.paths import FairPathSampler, UniformPathSampler
from nasdeploy.nas.space import get_space
from nasdeploy.nas.supernet import Supernet
from nasdeploy.nas.train import TrainConfig, accumulate_paths, train_supernet

from .conftest import ROOT, run_cli
from .helpers import assert_same_training, kill_when, randomize, spread


def _count_calls(net):
    fwd, bwd = collections.Counter(), collections.Counter()
    for li, layer in enumerate(net.layers):
        for ci, cand in enumerate(layer.candidates):
            cand.register_forward_hook(lambda *a, k=(li, ci): fwd.update([k]))
            cand.register_full_backward_hook(lambda *a, k=(li, ci): bwd.update([k]))
    return fwd, bwd


@pytest.mark.parametrize("space", ["fairnas", "scarlet"])
def test_strict_fairness_invariant_by_counting(space, monkeypatch):
    torch.manual_seed(0)
    net = Supernet(space, 10, SMALL_INPUT_STRIDES)
    fwd, bwd = _count_calls(net)
    sampler = FairPathSampler(net.space, 0)
    for _ in range(2):
        fwd.clear(), bwd.clear()
        paths = sampler.paths()
        batches = iter([(torch.randn(4, 3, 28, 28), torch.randint(0, 10, (4,)))] * 20)
        accumulate_paths(net, paths, batches, nn.CrossEntropyLoss(), torch.device("cpu"), False, False)
        for li in range(net.space.num_layers):
            n = len(net.space.choices_at(li))
            counts = [fwd[(li, ci)] for ci in range(n)]
            assert [bwd[(li, ci)] for ci in range(n)] == counts
            if n == sampler.num_paths:  # every choice exactly once per step
                assert counts == [1] * n, (li, counts)
            else:  # fewer choices than paths: each at least once, at most twice (documented)
                assert min(counts) == 1 and max(counts) <= 2 and sum(counts) == sampler.num_paths


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


def test_uniform_sampler_is_single_path():
    s = UniformPathSampler(get_space("scarlet"), 0)
    paths = s.paths()
    assert len(paths) == 1 and len(paths[0]) == 19


@pytest.mark.parametrize("space", ["fairnas", "scarlet"])
def test_supernet_and_extracted_subnet_agree_in_float64(space):
    torch.manual_seed(1)
    net = randomize(Supernet(space, 10, SMALL_INPUT_STRIDES), seed=2).double()
    rng = random.Random(3)
    x = torch.randn(2, 3, 28, 28, dtype=torch.float64)
    archs = [net.space.sample(rng) for _ in range(4)]
    if space == "scarlet":
        archs.append(net.space.validate("k3e3-skip-k5e3-skip-skip-skip-k3e6se-skip-skip-skip-k3e3-skip-skip-skip"
                                        "-k5e6-skip-skip-skip-k7e6se"))
    for arch in archs:
        sub = net.extract(arch).eval()
        with torch.no_grad():
            a, b = net(x, arch), sub(x)
        assert spread(a) > 1e-3  # outputs depend on the input far above the 1e-10 compared below
        assert (a - b).abs().max() / a.abs().max() <= 1e-10
        if space == "scarlet":
            assert sum(m.stabilizer is not None for m in sub.mb_module if hasattr(m, "stabilizer")) \
                == sum(c.skip for c in arch)


def test_stabilizer_starts_as_identity():
    net = Supernet("scarlet", 10, SMALL_INPUT_STRIDES)
    skip = net.layers[1].candidates[-1]
    assert torch.equal(skip.stabilizer.conv.weight.flatten(1), torch.eye(32))
    assert skip.stabilizer.bn is None


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
