"""Devices by name: ``cpu``, ``cuda``, ``cuda:N`` and ``auto``, checked and resolved in one place (training,
fine-tuning, export, the pipeline and every command that takes ``--device``)."""
from __future__ import annotations

import torch

from .errors import DeviceError, UsageError


def check_device(device: str) -> str:
    """``device`` if it names a device visible here (cpu, cuda, cuda:N), else a one-line refusal."""
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise UsageError(f"unknown device '{device}': use cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device} but no CUDA device is visible here: use --device cpu")
    if device.startswith("cuda:"):
        idx = device.split(":", 1)[1]
        if not idx.isdigit():
            raise UsageError(f"unknown device '{device}': use cuda:N with N a GPU index")
        if int(idx) >= torch.cuda.device_count():
            raise DeviceError(f"--device {device} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return device


def resolve_device(device: str) -> str:
    """The device ``device`` names: ``auto`` is cuda where a CUDA device is visible, else cpu; any other name is
    checked (``check_device``) and returned as given."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return check_device(device)
