"""One runner per backend, all built from the same (folded) module and input shape.

A runner is a callable ``runner(x) -> logits`` on torch tensors plus ``runner.timed(x)``,
a zero-argument function for the timer that runs one inference on a pre-placed input.
Backends: torch (eager; CUDA graphs on the GPU), compile (torch.compile), onnxruntime,
aoti (AOTInductor package), tensorrt (engine; unverified in this project's own runs).
"""
from __future__ import annotations

import importlib.util
import os
from typing import Callable

import torch
from torch import nn

from ..errors import DeviceError, UsageError

BACKENDS = ("torch", "compile", "onnxruntime", "aoti", "tensorrt")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise UsageError(f"unknown dtype '{name}': choose one of {', '.join(DTYPES)}") from None


def check_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {device} but no CUDA device is visible here: use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"unknown device '{device}': use cpu or cuda")
    return device


def unavailable_reason(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run on ``device`` here, or None if it can."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}': choose from {', '.join(BACKENDS)}")
    cuda = device.startswith("cuda")
    if backend == "aoti" and not cuda:
        return "AOTInductor packages are built for the GPU here (use --device cuda)"
    if backend == "tensorrt":
        if not cuda:
            return "TensorRT needs a CUDA device"
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (pip install 'nasdeploy[tensorrt]')"
    if backend == "onnxruntime" and cuda:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDA provider here (onnxruntime-gpu); it runs on --device cpu"
    if backend == "compile" and not cuda and os.environ.get("NASDEPLOY_CPU_COMPILE") != "1":
        return "torch.compile on the CPU is left out by default (slow to build; NASDEPLOY_CPU_COMPILE=1 enables it)"
    return None


class Runner:
    name = "runner"

    def __init__(self, device: str, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        """A zero-argument function running one inference on ``x`` (placed once, not per call)."""
        x = x.to(self.device, self.dtype)
        return lambda: self(x)


class TorchRunner(Runner):
    """PyTorch eager; on CUDA the call is captured once in a CUDA graph per input shape and replayed."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str, dtype: torch.dtype, cuda_graph: bool = True,
                 channels_last: bool = False) -> None:
        super().__init__(device, dtype)
        self.model = model.eval().to(device, dtype)
        self.channels_last = channels_last and device.startswith("cuda")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cuda_graph = cuda_graph and device.startswith("cuda")
        self._graphs: dict[tuple, tuple] = {}

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prep(x)
        if not self.cuda_graph:
            return self.model(x)
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    self.model(static_in)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = self.model(static_in)
            self._graphs[key] = (g, static_in, static_out)
        g, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        g.replay()
        return static_out


class CompileRunner(TorchRunner):
    """Plain ``torch.compile`` (default mode): the baseline users compare against."""

    name = "compile"

    def __init__(self, model: nn.Module, device: str, dtype: torch.dtype, mode: str | None = None,
                 channels_last: bool = True) -> None:
        super().__init__(model, device, dtype, cuda_graph=False, channels_last=channels_last)
        self.model = torch.compile(self.model, mode=mode)


class OrtRunner(Runner):
    """ONNX Runtime on an exported graph (float32 in and out)."""

    name = "onnxruntime"

    def __init__(self, onnx_model: bytes | str, device: str = "cpu", threads: int | None = None) -> None:
        from ..export.onnx import ort_session

        super().__init__(device, torch.float32)
        self.session = ort_session(onnx_model, threads, device)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0])

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        feed = {self.input_name: x.detach().float().cpu().numpy()}
        return lambda: self.session.run(None, feed)


class AotiRunner(Runner):
    """An AOTInductor package (``torch._inductor.aoti_load_package``)."""

    name = "aoti"

    def __init__(self, package: str, device: str, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        self.fn = torch._inductor.aoti_load_package(str(package))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x.to(self.device, self.dtype))


def make_runner(backend: str, model: nn.Module, input_shape: tuple[int, ...], device: str = "cpu",
                dtype: str = "fp32", workdir: str | None = None, dynamic_batch: bool = False) -> Runner:
    """Build ``backend``'s runner from a (folded) module; refuses with the reason where it cannot run."""
    check_device(device)
    reason = unavailable_reason(backend, device)
    if reason:
        raise DeviceError(f"backend {backend} cannot run here: {reason}")
    tdtype = parse_dtype(dtype)
    if backend == "torch":
        return TorchRunner(model, device, tdtype)
    if backend == "compile":
        return CompileRunner(model, device, tdtype)
    if backend == "onnxruntime":
        from ..export.onnx import to_onnx_bytes

        return OrtRunner(to_onnx_bytes(model, input_shape, dynamic_batch), device)
    import tempfile
    from pathlib import Path

    work = Path(workdir or tempfile.mkdtemp(prefix="nasdeploy-"))
    if backend == "aoti":
        from ..export.aoti import export_aoti

        pkg = export_aoti(model, work / "model.pt2", input_shape, device, dtype, dynamic_batch)
        return AotiRunner(str(pkg), device, tdtype)
    from ..export.onnx import export_onnx
    from ..export.tensorrt import TrtRunner, build_engine

    onnx_path = export_onnx(model, work / "model.onnx", input_shape, dynamic_batch=True)
    b = input_shape[0]
    engine = build_engine(onnx_path, work / "model.engine", (b, b, b), input_shape[1:], fp16=dtype == "fp16")
    return TrtRunner(engine, device)
