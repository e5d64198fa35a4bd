"""OpenVINO on the CPU: the float32 ONNX graph in fp32 or bf16 (where the CPU has bf16), or the INT8 Q/DQ graph.

Compiled for latency (one stream, ``PERFORMANCE_HINT=LATENCY``), with the precision set explicitly: OpenVINO
would otherwise pick bf16 by itself on CPUs with AMX, and an "fp32" row must be float32.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .base import Backend, Runner, Sources, Target, check_batch, installed, runtime_threads

INSTALL_HINT = "pip install 'nasdeploy[openvino]', or pip install openvino"


@lru_cache(maxsize=1)
def core():
    import openvino as ov

    return ov.Core()


@lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    """What OpenVINO's CPU plugin says this CPU can run (FP32, BF16, INT8, ...)."""
    return tuple(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OvRunner(Runner):
    """A compiled OpenVINO model; host arrays in and out, so timed by the host clock. ``config``: OpenVINO
    properties over nasdeploy's (for measuring what a setting does)."""

    name = "openvino"
    clock = "wall"

    def __init__(self, model_path: str | Path, dtype: str, batch_range: tuple[int, int], chw: tuple[int, ...],
                 threads: int | None = None, config: dict | None = None) -> None:
        import openvino as ov

        super().__init__("cpu", torch.float32)
        self.batch_range = batch_range
        model = core().read_model(str(model_path))
        lo, hi = batch_range
        model.reshape({model.inputs[0]: ov.PartialShape([ov.Dimension(lo, hi) if hi > lo else lo, *chw])})
        self.threads = threads or runtime_threads()
        config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": self.threads,
                  "INFERENCE_PRECISION_HINT": "bf16" if dtype == "bf16" else "f32", **(config or {})}
        self.compiled = core().compile_model(model, "CPU", config)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # what OpenVINO says it will run
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self.request = self.compiled.create_infer_request()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_batch(x.shape[0], self.batch_range, "OpenVINO model")
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        self.request.infer({0: arr})
        return torch.from_numpy(self.request.get_output_tensor(0).data.copy())

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        check_batch(x.shape[0], self.batch_range, "OpenVINO model")
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        request = self.request
        return lambda: request.infer({0: arr}, share_inputs=True)


class OpenVinoBackend(Backend):
    name = "openvino"
    order = 40
    description = "OpenVINO CPU plugin: fp32, bf16 (CPUs with bf16), INT8 from the Q/DQ graph"
    package = "openvino"
    install_hint = INSTALL_HINT
    dtypes = {"cpu": ("fp32", "bf16", "int8")}
    candidates = {"cpu": ("fp32", "int8", "bf16")}
    sets_threads = True

    def precision_reason(self, dtype: str, device: str) -> str | None:
        why = super().precision_reason(dtype, device)
        if why is None and dtype == "bf16" and self.unavailable(device) is None and "BF16" not in cpu_capabilities():
            return "this CPU has no bf16 instructions (OpenVINO lists " + ", ".join(cpu_capabilities()) + ")"
        if why is None and dtype == "int8" and not installed("nncf"):
            return "OpenVINO INT8 is quantized with NNCF, which is not installed (pip install 'nasdeploy[openvino]')"
        return why

    def build(self, src: Sources, target: Target) -> Path | None:
        # NNCF places Q/DQ where OpenVINO's CPU plugin fuses them (see nasdeploy.quantize)
        return src.onnx("int8", quantizer="nncf") if target.dtype == "int8" else src.onnx("fp32")

    def load(self, src: Sources | None, path: Path | None, target: Target) -> Runner:
        return OvRunner(path, target.dtype, target.batch_range, target.chw, target.threads)


BACKEND = OpenVinoBackend()
