"""What a measurement ran on: device, driver and library versions."""
from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
from functools import lru_cache

import torch

from ..isa import this_cpu


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> list[str]:
    """The vector and matrix extensions of this CPU that INT8/bf16 kernels use (from /proc/cpuinfo)."""
    return list(this_cpu().flags)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    from ..backends.base import usable_cores

    return f"{cpu_name()} ({usable_cores()} cores)"


@lru_cache(maxsize=1)
def driver_version() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _usable_cores() -> int:
    from ..backends.base import usable_cores

    return usable_cores()


def environment(device: str) -> dict:
    env = {
        "device": device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "onnx": _version("onnx"),
        "tensorrt": _version("tensorrt"),
        "openvino": _version("openvino"),
        "cpu": cpu_name(),
        "cpu_isa": cpu_isa(),
        "int8_class": this_cpu().int8_class,  # vnni | no-vnni (16-bit saturating INT8 products) | arm | other
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "cores": _usable_cores(),
    }
    if device.startswith("cuda"):
        from ..backends.base import tf32_state

        state = tf32_state()
        env.update({"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "driver": driver_version(),
                    "tf32": state["matmul"] or state["cudnn"], "tf32_switches": state})
    return env
