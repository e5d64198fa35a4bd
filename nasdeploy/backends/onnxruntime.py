"""ONNX Runtime on the exported graph: float32, or the INT8 Q/DQ graph (CPU); the CUDA provider where installed."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..errors import DeviceError
from .base import Backend, Runner, Sources, Target, runtime_threads


def ort_session(model: bytes | str | Path, threads: int | None = None, device: str = "cpu",
                profile_prefix: str | None = None):
    """An ONNX Runtime session with all graph optimisations; ``threads`` defaults to the usable cores.
    ``profile_prefix``: write ONNX Runtime's per-node profile there (``session.end_profiling()`` names the file)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or runtime_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    providers: list = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DeviceError("this onnxruntime has no CUDA provider: pip install onnxruntime-gpu, or use --device cpu")
        providers = [("CUDAExecutionProvider", {"device_id": _index(device)})]
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, opts, providers=providers)


def _index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else (torch.cuda.current_device()
                                                               if torch.cuda.is_available() else 0)


class OrtRunner(Runner):
    """ONNX Runtime on an exported graph (float32 in and out; an INT8 Q/DQ graph quantizes inside).

    Timed by the host clock on every device: on CUDA the timed call runs with I/O binding on device tensors (the
    input placed once, the output left on the GPU, as the event-timed rows do) and ONNX Runtime synchronises its
    stream at the end of each run, so the host clock sees the whole inference and no copy."""

    name = "onnxruntime"
    clock = "wall"

    def __init__(self, onnx_model: bytes | str | Path, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__(device, torch.float32)
        self.session = ort_session(onnx_model, threads, device)
        self.threads = threads or runtime_threads()
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0])

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        if not self.device.startswith("cuda"):
            feed = {self.input_name: x.detach().float().cpu().numpy()}
            return lambda: self.session.run(None, feed)
        xd = x.detach().float().to(self.device).contiguous()
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", _index(self.device), __import__("numpy").float32,
                           tuple(xd.shape), xd.data_ptr())
        binding.bind_output(self.session.get_outputs()[0].name, "cuda", _index(self.device))
        torch.cuda.synchronize(self.device)

        def run() -> None:
            self.session.run_with_iobinding(binding)

        run.buffers = (xd, binding)  # type: ignore[attr-defined]  # alive as long as the function
        return run


class OrtBackend(Backend):
    name = "onnxruntime"
    order = 30
    description = "ONNX Runtime (CPU provider; CUDA provider with onnxruntime-gpu): fp32 or INT8 Q/DQ"
    dtypes = {"cpu": ("fp32", "int8"), "cuda": ("fp32",)}
    candidates = {"cpu": ("fp32", "int8"), "cuda": ("fp32",)}
    table_default = ("cpu",)
    sets_threads = True
    reference = {"cpu": "fp32"}  # what CPU users compare with: the model in plain ONNX Runtime

    def unavailable(self, device: str) -> str | None:
        if device.startswith("cuda"):
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return "onnxruntime has no CUDA provider here (onnxruntime-gpu); it runs on --device cpu"
        return super().unavailable(device)

    def export_device(self, requested: str) -> str:
        return "cpu"  # the ONNX graph is checked on the CPU provider, which every onnxruntime has

    def build(self, src: Sources, target: Target) -> Path | None:
        return src.onnx(target.dtype)

    def load(self, src: Sources | None, path: Path | None, target: Target) -> Runner:
        return OrtRunner(str(path), target.device, target.threads)


BACKEND = OrtBackend()
