"""Bad checkpoints, names and architecture strings: one-line errors, non-zero exit, never a traceback."""
import pickle

import pytest
import torch

import nasdeploy
from nasdeploy.errors import CheckpointError, ModelNotFoundError

from .conftest import run_cli


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


def test_unknown_model():
    with pytest.raises(ModelNotFoundError, match="did you mean fairnas_a"):
        nasdeploy.create_model("fairnas_aa")


def test_cli_errors_are_one_line():
    cases = [("info", "nope"), ("bogus-command",), ("info",)]
    for args in cases:
        r = run_cli(*args)
        assert r.returncode != 0, args
        lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
        assert len(lines) == 1 and "Traceback" not in r.stderr, (args, r.stderr)


def test_cli_malformed_arch_is_one_line(tmp_path):
    card = tmp_path / "bad.toml"
    card.write_text('format_version = 1\nname = "x"\nspace = "fairnas"\nflavour = "fairnas"\narch = "k7e3-k9e9"\n')
    r = run_cli("info", str(card))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "layer 1" in r.stderr
