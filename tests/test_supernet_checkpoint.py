"""Supernet checkpoints (nasdeploy/nas/supernet_checkpoint.py): written and read back without the training loop,
with their input setting; what is not a whole supernet checkpoint refused."""
from __future__ import annotations

import pytest
import torch

from .helpers import sgd_with_schedule


def _supernet_checkpoint(tmp_path, **changes):
    from nasdeploy.checkpoints.resume import training_state
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.nas.supernet import Supernet
    from nasdeploy.nas.supernet_checkpoint import save_checkpoint

    torch.manual_seed(0)
    sn = Supernet("fairnas", 10, BUILTIN_SETTING.stride_plan, input_setting=BUILTIN_SETTING)
    opt, sched = sgd_with_schedule(sn)
    p = save_checkpoint(tmp_path / "supernet.pt", sn, train_config={"data": "fashion-mnist", "steps": 3},
                        setting=BUILTIN_SETTING, training=training_state(sn, opt, sched, 3),
                        sampler={"name": "fair"}, history=[[1, 2.3], [2, 2.2], [3, 2.1]])
    if changes:
        obj = torch.load(p, weights_only=True)
        obj.update(changes)
        obj = {k: v for k, v in obj.items() if v is not None}
        torch.save(obj, p)
    return sn, p


def test_a_supernet_checkpoint_reads_back_with_its_input_setting(tmp_path):
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.nas.supernet_checkpoint import FORMAT, load_checkpoint, load_supernet

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

    code = ("import sys, nasdeploy.nas.supernet_checkpoint, nasdeploy.search; "
            "assert 'nasdeploy.nas.train' not in sys.modules, sorted(m for m in sys.modules if 'nasdeploy' in m)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_what_is_not_a_whole_supernet_checkpoint_is_refused(tmp_path):
    from nasdeploy.errors import ArtifactError
    from nasdeploy.nas.supernet_checkpoint import load_checkpoint, load_supernet

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
