"""Checkpoints: the official layouts and nasdeploy's network checkpoints (nasdeploy/checkpoint.py: missing, unexpected
and mis-shaped keys named, truncated files and pickled objects refused in one line), and supernet checkpoints
(nasdeploy/nas/checkpoint.py: written and read back without the training loop, validated)."""
from __future__ import annotations

import pickle

import pytest
import torch

import nasdeploy
from nasdeploy.errors import CheckpointError


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


# ----------------------------------------------------------------- supernet checkpoints (nasdeploy/nas/checkpoint.py)

def _supernet_checkpoint(tmp_path, **changes):
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.nas.checkpoint import save_checkpoint
    from nasdeploy.nas.supernet import Supernet

    torch.manual_seed(0)
    sn = Supernet("fairnas", 10, BUILTIN_SETTING.stride_plan, input_setting=BUILTIN_SETTING)
    p = save_checkpoint(tmp_path / "supernet.pt", sn, train_config={"data": "fashion-mnist", "steps": 3},
                        setting=BUILTIN_SETTING, step=3, optimizer={}, scheduler={}, sampler={"name": "fair"},
                        history=[[1, 2.3], [2, 2.2], [3, 2.1]])
    if changes:
        obj = torch.load(p, weights_only=True)
        obj.update(changes)
        obj = {k: v for k, v in obj.items() if v is not None}
        torch.save(obj, p)
    return sn, p


def test_a_supernet_checkpoint_reads_back_with_its_input_setting(tmp_path):
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.nas.checkpoint import FORMAT, load_checkpoint, load_supernet

    sn, p = _supernet_checkpoint(tmp_path)
    back = load_supernet(p)
    assert back.input_setting == BUILTIN_SETTING and back.config() == sn.config() and not back.training
    assert all(torch.equal(a, b) for a, b in zip(sn.state_dict().values(), back.state_dict().values()))
    ck = load_checkpoint(p)
    assert ck["format"] == FORMAT and ck["step"] == 3 and ck["history"][-1] == [3, 2.1]
    assert ck["splits"]["search_val_source"] == "carved from the training images" and ck["provenance"]["torch"]


def test_reading_a_supernet_checkpoint_needs_no_training_loop():
    import subprocess
    import sys

    code = ("import sys, nasdeploy.nas.checkpoint, nasdeploy.search; "
            "assert 'nasdeploy.nas.train' not in sys.modules, sorted(m for m in sys.modules if 'nasdeploy' in m)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_what_is_not_a_whole_supernet_checkpoint_is_refused(tmp_path):
    from nasdeploy.errors import ArtifactError
    from nasdeploy.nas.checkpoint import load_checkpoint, load_supernet

    for changes, fragment in [({"format": "nasdeploy-checkpoint"}, "is not a nasdeploy supernet checkpoint"),
                              ({"format_version": 99}, "supernet checkpoint format 99 is not 1"),
                              ({"model": None}, "has no 'model': is it truncated?")]:
        _, p = _supernet_checkpoint(tmp_path, **changes)
        with pytest.raises(ArtifactError, match=fragment):
            load_checkpoint(p)
    _, p = _supernet_checkpoint(tmp_path, config={"space": "scarlet", "num_classes": 10,
                                                  "stride_plan": [2, 2, 1, 1, 2, 1]})
    with pytest.raises(ArtifactError, match="weights do not fit the supernet they claim"):
        load_supernet(p)
