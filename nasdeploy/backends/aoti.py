"""AOTInductor: a compiled package (``torch._inductor.aoti_compile_and_package``) for the GPU or the CPU."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..errors import DeviceError, UsageError
from ..io import atomic_path
from .base import Backend, Runner, Sources, Target, check_batch, device_context, parse_dtype, quiet_cpu_compiler


def example_batch(batch: int, lo: int, hi: int) -> int:
    """The example batch to export a ``lo..hi`` dynamic batch with: torch.export specialises a dimension whose
    example is 0 or 1, so the example must be at least 2 (inside the range)."""
    return min(max(batch, lo, 2), hi)


def check_aoti(device: str, dtype: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--aoti for {device} but no CUDA device is visible here: use --device cpu")
    if not device.startswith("cuda") and dtype != "fp32":
        raise UsageError(f"AOTInductor {dtype} packages are built for the GPU: use fp32 (drop --fp16) on the CPU")


def export_aoti(model: nn.Module, path: str | Path, input_shape: tuple[int, ...], device: str = "cuda",
                dtype: str = "fp32", dynamic_batch: bool | tuple[int, int] = False) -> Path:
    """Compile a copy of ``model`` for ``device`` in ``dtype`` into a .pt2 package (the caller's module is left as
    it was). ``dynamic_batch``: (min, max) batch the package accepts; False: exactly ``input_shape[0]``."""
    check_aoti(device, dtype)
    quiet_cpu_compiler(device)
    tdtype = parse_dtype(dtype)
    model = copy.deepcopy(model).eval().to(device, tdtype)
    shape = tuple(input_shape)
    dyn = None
    if dynamic_batch:
        lo, hi = dynamic_batch if isinstance(dynamic_batch, tuple) else (1, 1024)
        if hi > lo:
            shape = (example_batch(shape[0], lo, hi), *shape[1:])
            dyn = {"x": {0: torch.export.Dim("batch", min=lo, max=hi)}}
        else:
            shape = (lo, *shape[1:])
    with device_context(device), torch.no_grad():
        x = torch.randn(*shape, device=device, dtype=tdtype)
        ep = torch.export.export(model, (x,), dynamic_shapes=dyn)
        with atomic_path(path) as tmp:
            pkg = tmp.with_suffix(".pt2")
            torch._inductor.aoti_compile_and_package(ep, package_path=str(pkg))
            pkg.replace(tmp)
    return Path(path)


class AotiRunner(Runner):
    """An AOTInductor package (``torch._inductor.aoti_load_package``)."""

    name = "aoti"

    def __init__(self, package: str, device: str, dtype: torch.dtype,
                 batch_range: tuple[int, int | None] = (1, None)) -> None:
        super().__init__(device, dtype)
        with device_context(device):
            self.fn = torch._inductor.aoti_load_package(str(package))
        self.batch_range = batch_range
        self.threads = None if device.startswith("cuda") else torch.get_num_threads()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.batch_range
        check_batch(x.shape[0], (lo, hi if hi is not None else x.shape[0]), "AOTInductor package")
        with device_context(self.device):
            return self.fn(x.to(self.device, self.dtype))


class AotiBackend(Backend):
    name = "aoti"
    order = 50
    description = "AOTInductor package (.pt2) compiled for the CPU or the GPU"
    dtypes = {"cpu": ("fp32",), "cuda": ("fp32", "fp16", "bf16")}
    artefact = "model.pt2"
    isolated = True  # a native package: a crash while loading costs its bench row, not the run
    candidates = {"cuda": ("fp16",)}

    def build(self, src: Sources, target: Target) -> Path | None:
        return export_aoti(src.model, src.work / self.artefact, target.shape, target.device, target.dtype,
                           target.batch_range if target.dynamic else False)

    def load(self, src: Sources | None, path: Path | None, target: Target) -> Runner:
        return AotiRunner(str(path), target.device, parse_dtype(target.dtype), target.batch_range)


BACKEND = AotiBackend()
