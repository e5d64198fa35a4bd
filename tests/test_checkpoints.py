"""Checkpoints (nasdeploy/checkpoints/): the official layouts and nasdeploy's network checkpoints (missing, unexpected
and mis-shaped keys named, truncated files and pickled objects refused in one line), and the training state a
killed run resumes from. Supernet checkpoints: tests/test_supernet_checkpoint.py."""
from __future__ import annotations

import pickle

import pytest
import torch

import nasdeploy
from nasdeploy.errors import CheckpointError

from .helpers import sgd_with_schedule


@pytest.fixture()
def good_sd(refweights):
    return refweights.make_checkpoint("fairnas_a", 0)["model_state"]


def _save(tmp_path, obj, name="c.pth"):
    p = tmp_path / name
    torch.save(obj, p)
    return p


def test_missing_key_is_named(tmp_path, good_sd):
    del good_sd["mb_module.3.conv2.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys: mb_module\.3\.conv2\.weight"):
        nasdeploy.create_model("fairnas_a", weights=_save(tmp_path, {"model_state": good_sd}))


def test_unexpected_key_is_named(tmp_path, good_sd):
    good_sd["extra.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"unexpected keys: extra\.weight"):
        nasdeploy.create_model("fairnas_a", weights=_save(tmp_path, good_sd))


def test_misshaped_key_is_named(tmp_path, good_sd):
    good_sd["classifier.1.weight"] = torch.zeros(10, 1280)
    with pytest.raises(CheckpointError, match=r"mis-shaped: classifier\.1\.weight \(10, 1280\)"):
        nasdeploy.create_model("fairnas_a", weights=_save(tmp_path, good_sd))


def test_checkpoint_of_another_model(tmp_path, refweights):
    p = _save(tmp_path, refweights.make_checkpoint("scarlet_a", 0))
    with pytest.raises(CheckpointError, match="another model"):
        nasdeploy.create_model("fairnas_a", weights=p)


def test_truncated_file(tmp_path, good_sd):
    p = _save(tmp_path, good_sd)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        nasdeploy.create_model("fairnas_a", weights=p)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        nasdeploy.create_model("fairnas_a", weights=p)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_refused_by_weights_only(tmp_path):
    p = tmp_path / "evil.pth"
    with open(p, "wb") as f:
        pickle.dump({"model_state": Evil()}, f)
    with pytest.raises(CheckpointError, match="safe load refuses"):
        nasdeploy.create_model("fairnas_a", weights=p)


# ----------------------------------------------------------------- the training state (nasdeploy/checkpoints/resume.py)

def test_a_restored_training_state_continues_as_the_run_it_was_saved_from(tmp_path):
    """Weights, optimizer momentum, schedule, step and torch's random state all come back: the next step of the
    restored run (dropout drawn from torch's random state) equals the next step of the run that saved it."""
    from nasdeploy.checkpoints.files import read_file
    from nasdeploy.checkpoints.resume import restore, training_state
    from nasdeploy.io import torch_save

    def net():
        return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))

    def step(model, opt, sched):
        opt.zero_grad()
        model(torch.ones(4, 6)).square().mean().backward()
        opt.step()
        sched.step()

    torch.manual_seed(0)
    a = net()
    opt_a, sched_a = sgd_with_schedule(a)
    for _ in range(3):
        step(a, opt_a, sched_a)
    torch_save(tmp_path / "state.pt", training_state(a, opt_a, sched_a, 3))
    step(a, opt_a, sched_a)
    torch.manual_seed(123)  # another random state and other weights: only the file can make them agree
    b = net()
    opt_b, sched_b = sgd_with_schedule(b)
    assert restore(read_file(tmp_path / "state.pt"), b, opt_b, sched_b) == 3
    step(b, opt_b, sched_b)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert sched_b.last_epoch == sched_a.last_epoch == 4


@pytest.mark.parametrize("drop", ["model", "optimizer", "scheduler", "step"])
def test_a_training_state_without_a_part_is_refused_in_one_line(drop):
    from nasdeploy.checkpoints.resume import restore, training_state

    net = torch.nn.Linear(2, 2)
    opt, sched = sgd_with_schedule(net)
    state = training_state(net, opt, sched, 1)
    del state[drop]
    with pytest.raises(CheckpointError, match=f"has no {drop}: it is not a training state") as e:
        restore(state, net, opt, sched, "run/state.pt")
    assert "\n" not in str(e.value)
