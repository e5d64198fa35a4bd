"""AOTInductor: a compiled package (``torch._inductor.aoti_compile_and_package``) for the GPU."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import DeviceError
from ..io import atomic_path


def export_aoti(model: nn.Module, path: str | Path, input_shape: tuple[int, ...], device: str = "cuda",
                dtype: str = "fp16", dynamic_batch: bool | tuple[int, int] = False) -> Path:
    """Compile ``model`` for ``device`` in ``dtype`` (channels_last inputs are not assumed) into a .pt2 package."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        raise DeviceError("--aoti builds a CUDA package and no CUDA device is visible here: run it on the GPU machine")
    from ..bench.runners import parse_dtype

    tdtype = parse_dtype(dtype)
    model = model.eval().to(device, tdtype)
    x = torch.randn(*input_shape, device=device, dtype=tdtype)
    dyn = None
    if dynamic_batch:
        lo, hi = dynamic_batch if isinstance(dynamic_batch, tuple) else (1, 1024)
        dyn = {"x": {0: torch.export.Dim("batch", min=max(lo, 1), max=hi)}}
    with torch.no_grad():
        ep = torch.export.export(model, (x,), dynamic_shapes=dyn)
        with atomic_path(path) as tmp:
            pkg = tmp.with_suffix(".pt2")
            torch._inductor.aoti_compile_and_package(ep, package_path=str(pkg))
            pkg.replace(tmp)
    return Path(path)
