"""Fine-tuning (nasdeploy/finetune.py): killed at any moment and resumed, equal to the uninterrupted run
(tests/test_pipeline.py kills the pipeline inside its supernet and fine-tune stages); the model's classes must match
the data's."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nasdeploy.checkpoints.files import read_file

from .helpers import kill_when


FINETUNE = """
import sys, torch
torch.use_deterministic_algorithms(True)
from nasdeploy.finetune import FinetuneConfig, finetune
finetune(sys.argv[1], sys.argv[2], FinetuneConfig(steps=int(sys.argv[3]), batch_size=16, lr=0.05, ckpt_every=1,
                                                 device="cpu"), progress=False)
"""


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


@pytest.mark.extended  # the pipeline kill test kills its fine-tune mid-way and compares bit for bit
def test_finetune_killed_mid_way_resumes_to_the_uninterrupted_result(tmp_path):
    import random

    from nasdeploy.data import SMALL_INPUT_STRIDES
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import get_space
    from nasdeploy.zoo import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(Network(get_space("scarlet").sample(random.Random(4)), "scarlet", 10, SMALL_INPUT_STRIDES),
                    tmp_path / "sub.pt")
    steps = "8"
    cmd = [sys.executable, "-c", FINETUNE, str(tmp_path / "sub.pt")]
    subprocess.run(cmd + [str(tmp_path / "ref"), steps], check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd + [str(tmp_path / "cut"), steps], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "cut" / "finetune_state.pt"
    kill_when(proc, lambda: _state_step(state) >= 3, "fine-tune step 3", timeout=300)
    assert 3 <= _state_step(state) < 8 and not (tmp_path / "cut" / "model.pt").exists()
    subprocess.run(cmd + [str(tmp_path / "cut"), steps], check=True, capture_output=True, timeout=600)
    _same_weights(tmp_path / "ref" / "model.pt", tmp_path / "cut" / "model.pt")


def test_a_fine_tune_resumed_from_its_state_equals_the_uninterrupted_one(tmp_path):
    """The state saved at step 2 of 4, taken up by a second call (the rest of a killed run), ends with the weights an
    uninterrupted run ends with, bit for bit: the data order is a function of (seed, step)."""
    import copy
    import random

    from nasdeploy.data import SMALL_INPUT_STRIDES, fashion_mnist
    from nasdeploy.finetune import FinetuneConfig, train_model
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import get_space

    arch = get_space("fairnas").sample(random.Random(2))
    torch.manual_seed(0)
    net = Network(arch, "fairnas", 10, SMALL_INPUT_STRIDES)
    start = copy.deepcopy(net.state_dict())
    torch.manual_seed(1)
    other = Network(arch, "fairnas", 10, SMALL_INPUT_STRIDES)  # other weights: only the state file can make it agree
    data = fashion_mnist("train", 256)
    cfg = FinetuneConfig(steps=4, batch_size=8, ckpt_every=2, lr=0.05, device="cpu")
    state = tmp_path / "state.pt"
    done = train_model(net, data, cfg, state, progress=False).state_dict()
    assert read_file(state)["step"] == 2  # saved at step 2, not at the end
    assert not all(torch.equal(done[k], start[k]) for k in done)  # it trained
    resumed = train_model(other, data, cfg, state, progress=False).state_dict()  # from step 2: steps 3 and 4
    assert all(torch.equal(done[k], resumed[k]) for k in done)


def test_a_model_for_other_classes_than_the_data_is_refused(tmp_path):
    from nasdeploy.errors import UsageError
    from nasdeploy.finetune import FinetuneConfig, finetune

    with pytest.raises(UsageError, match="fairnas_a predicts 1000 classes, fashion-mnist has 10"):
        finetune("fairnas_a", tmp_path / "out", FinetuneConfig(steps=1, device="cpu"), "fashion-mnist", progress=False)
    with pytest.raises(UsageError, match="--steps and --batch-size must be positive"):
        finetune("fairnas_a", tmp_path / "out", FinetuneConfig(steps=0, device="cpu"), progress=False)

