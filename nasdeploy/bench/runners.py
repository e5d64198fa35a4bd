"""One runner per backend, all built from the same (folded) module and input shape.

A runner is a callable ``runner(x) -> logits`` on torch tensors plus ``runner.timed(x)``,
a zero-argument function for the timer that runs one inference on a pre-placed input.
Backends: torch (eager; CUDA graphs on the GPU), compile (torch.compile), onnxruntime,
aoti (AOTInductor package), tensorrt (engine; not exercised by nasdeploy's CI, which has no GPU).

``runner.stream`` (CUDA stream the work runs on, None: the current one) and ``runner.clock`` ("cuda": CUDA
events on that stream; "wall": the host clock, for runtimes that synchronise themselves) tell the timer how
to time it.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import types
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


def quiet_cpu_compiler(device: str) -> None:
    """Inductor's C++ build on a CUDA-enabled torch without a CUDA runtime logs a warning about CUDA_HOME that
    has nothing to do with a CPU build: keep it off the user's terminal."""
    if not str(device).startswith("cuda"):
        import logging

        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


def device_context(device: str | torch.device):
    """Make ``device`` current for CUDA work (streams, graphs, events); nothing on the CPU."""
    d = torch.device(device)
    return torch.cuda.device(d) if d.type == "cuda" else contextlib.nullcontext()


# Precisions each backend runs; the rest is refused with a reason, never run as another precision.
BACKEND_DTYPES = {"torch": ("fp32", "fp16", "bf16"), "compile": ("fp32", "fp16", "bf16"),
                  "onnxruntime": ("fp32",), "aoti": ("fp32", "fp16", "bf16"), "tensorrt": ("fp32", "fp16")}


def dtype_reason(backend: str, dtype: str, device: str) -> str | None:
    """Why ``backend`` does not run ``dtype`` on ``device``, or None if it does."""
    parse_dtype(dtype)
    if dtype not in BACKEND_DTYPES[backend]:
        return f"the {backend} backend runs {', '.join(BACKEND_DTYPES[backend])} only"
    if dtype != "fp32" and not device.startswith("cuda"):
        return "reduced precision is run on the GPU only"
    return None


def unavailable_reason(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run on ``device`` here, or None if it can."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend '{backend}': choose from {', '.join(BACKENDS)}")
    cuda = device.startswith("cuda")
    if backend == "tensorrt":
        if not cuda:
            return "TensorRT needs a CUDA device"
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed (pip install 'nasdeploy[tensorrt]')"
    if backend == "onnxruntime" and cuda:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDA provider here (onnxruntime-gpu); it runs on --device cpu"
    return None


class Runner:
    name = "runner"
    stream: torch.cuda.Stream | None = None
    clock = "auto"  # CUDA events on CUDA devices, the host clock on the CPU

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
    def _graph(self, x: torch.Tensor) -> tuple:
        """The CUDA graph for x's shape (captured on first use, on the runner's device), its static buffers."""
        key = tuple(x.shape)
        if key not in self._graphs:
            with device_context(self.device):
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
        return self._graphs[key]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prep(x)
        if not self.cuda_graph:
            return self.model(x)
        g, static_in, static_out = self._graph(x)
        with device_context(self.device):
            static_in.copy_(x)
            g.replay()
            return static_out.clone()  # the static buffer is overwritten by the next replay

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        x = self._prep(x)
        if not self.cuda_graph:
            return lambda: self(x)
        g, static_in, _ = self._graph(x)
        static_in.copy_(x)
        return g.replay  # the input is already in place: one replay per call, no copies


def _isolated(module: nn.Module) -> nn.Module:
    """``module`` behind a forward with its own code object.

    Dynamo keeps compiled code and counts recompilations per code object: every Network shares
    ``Network.forward``, so after 8 models or shapes (``recompile_limit``) ``torch.compile`` would silently run
    eager. A fresh code object per runner gives each compiled model its own cache.
    """
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    fresh = types.FunctionType(forward.__code__.replace(), forward.__globals__, "forward")
    wrapper = nn.Module()
    wrapper.inner = module
    wrapper.forward = types.MethodType(fresh, wrapper)
    return wrapper


class CompileRunner(TorchRunner):
    """Plain ``torch.compile`` (default mode, whole graph): the baseline users compare against.

    Never runs eager in disguise: the model is compiled as one graph (``fullgraph``), in its own dynamo
    cache, with ``fail_on_recompile_limit_hit`` so a fallback raises instead; ``graphs`` counts the graphs
    dynamo compiled for this runner (at least one once it has run).
    """

    name = "compile"

    def __init__(self, model: nn.Module, device: str, dtype: torch.dtype, mode: str | None = None,
                 channels_last: bool = True, backend: str = "inductor") -> None:
        super().__init__(model, device, dtype, cuda_graph=False, channels_last=channels_last)
        quiet_cpu_compiler(device)
        self.compiled = torch.compile(_isolated(self.model), mode=mode, fullgraph=True, backend=backend)
        self.graphs = 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from torch._dynamo.utils import counters

        x = self._prep(x)
        before = counters["stats"]["unique_graphs"]
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            y = self.compiled(x)
        self.graphs += counters["stats"]["unique_graphs"] - before
        return y

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        self(x)  # compiled for this shape here, so the timed calls only replay it
        x = self._prep(x)
        compiled = self.compiled

        def run() -> object:
            with torch.no_grad():
                return compiled(x)

        return run


class OrtRunner(Runner):
    """ONNX Runtime on an exported graph (float32 in and out).

    ``session.run`` returns host arrays, so it is timed by the host clock on every device (CUDA events
    around it would time the wrong stream)."""

    name = "onnxruntime"
    clock = "wall"

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

    def __init__(self, package: str, device: str, dtype: torch.dtype,
                 batch_range: tuple[int, int | None] = (1, None)) -> None:
        super().__init__(device, dtype)
        with device_context(device):
            self.fn = torch._inductor.aoti_load_package(str(package))
        self.batch_range = batch_range

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = self.batch_range
        if x.shape[0] < lo or (hi is not None and x.shape[0] > hi):
            from ..export.onnx import ExportError

            raise ExportError(f"batch {x.shape[0]} is outside this AOTInductor package's batch range "
                              f"({lo}..{hi}): export it with --dynamic-batch covering it")
        with device_context(self.device):
            return self.fn(x.to(self.device, self.dtype))


def make_runner(backend: str, model: nn.Module, input_shape: tuple[int, ...], device: str = "cpu",
                dtype: str = "fp32", workdir: str | None = None, dynamic_batch: bool = False,
                tf32: bool = False) -> Runner:
    """Build ``backend``'s runner from a (folded) module; refuses with the reason where it cannot run.

    The caller's module is never modified. ``dynamic_batch``: the runner takes any batch from 1 to
    ``input_shape[0]`` (a ragged last batch); otherwise exactly ``input_shape[0]`` where the backend fixes it.
    """
    check_device(device)
    reason = unavailable_reason(backend, device) or dtype_reason(backend, dtype, device)
    if reason:
        raise DeviceError(f"backend {backend} cannot run {dtype} on {device} here: {reason}")
    tdtype = parse_dtype(dtype)
    model = copy.deepcopy(model)
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
    b = input_shape[0]
    if backend == "aoti":
        from ..export.aoti import export_aoti

        rng = (1, b) if dynamic_batch else (b, b)
        pkg = export_aoti(model, work / "model.pt2", input_shape, device, dtype, rng if dynamic_batch else False)
        return AotiRunner(str(pkg), device, tdtype, rng)
    from ..export.onnx import export_onnx
    from ..export.tensorrt import TrtRunner, build_engine

    onnx_path = export_onnx(model, work / "model.onnx", input_shape, dynamic_batch=True, dtype=tdtype)
    profile = (1, b, b) if dynamic_batch else (b, b, b)
    engine = build_engine(onnx_path, work / "model.engine", profile, input_shape[1:], tf32=tf32)
    return TrtRunner(engine, device)
