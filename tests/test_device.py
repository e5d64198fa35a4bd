"""Devices by name (nasdeploy/device.py): one resolver for training, fine-tuning, export and the pipeline."""
from __future__ import annotations

import pytest
import torch

from nasdeploy.device import check_device, resolve_device
from nasdeploy.errors import DeviceError, UsageError

from .conftest import HAS_CUDA


def test_auto_is_cuda_where_visible_else_cpu():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.parametrize("name, fragment", [("gpu", "unknown device 'gpu': use cpu, cuda or cuda:N"),
                                            ("CPU", "unknown device 'CPU'"), ("", "unknown device ''")])
def test_unknown_names_are_refused_in_one_line(name, fragment):
    with pytest.raises(UsageError, match=fragment):
        resolve_device(name)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message given without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_says_to_use_the_cpu(name):
    with pytest.raises(DeviceError, match=f"--device {name} but no CUDA device is visible here: use --device cpu"):
        resolve_device(name)


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_a_gpu_index_past_the_last_is_refused():
    n = torch.cuda.device_count()
    assert check_device(f"cuda:{n - 1}") == f"cuda:{n - 1}"
    with pytest.raises(DeviceError, match=f"only {n} CUDA device"):
        resolve_device(f"cuda:{n}")
    with pytest.raises(UsageError, match="cuda:N with N a GPU index"):
        resolve_device("cuda:x")


def test_the_trainers_take_devices_through_the_resolver(tmp_path):
    """Supernet training and fine-tuning refuse a device the resolver refuses, before writing anything."""
    from nasdeploy.finetune import FinetuneConfig, train_model
    from nasdeploy.nas.train import TrainConfig, train_supernet

    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        train_supernet(TrainConfig(space="fairnas", steps=1, batch_size=2, device="tpu"), tmp_path / "run",
                       progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        train_model(torch.nn.Linear(2, 2), torch.utils.data.TensorDataset(torch.zeros(4, 2), torch.zeros(4).long()),
                    FinetuneConfig(steps=1, batch_size=2, device="tpu"), progress=False)
