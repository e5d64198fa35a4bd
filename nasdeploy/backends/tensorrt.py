"""TensorRT 10/11: engine from ONNX (strongly typed, optimisation profile, timing cache) and a runner on torch
CUDA tensors.

Not exercised by nasdeploy's continuous integration, which has no GPU: this module is written against the
documented TensorRT 10 and 11 Python API and kept deliberately thin. Precision lives in the graph (strong
typing: required by TensorRT 11, where the FP16/BF16 builder flags are gone, and accepted by 10.x): an fp16
engine is built from an fp16 ONNX graph, an fp32 engine from an fp32 one with TF32 switched off unless asked, and an
INT8 engine from the Q/DQ graph quantized with symmetric activations, biases left in float (explicit quantization:
TensorRT takes signed INT8 with zero points of 0, no INT8 builder flag and no calibrator, which TensorRT 10
deprecates), its float tensors in float16 so that the layers between the quantized ones run in fp16, as a TensorRT
user expects of an INT8 engine (``qdq_problems`` checks the parser's Q/DQ rules before the build).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DeviceError
from ..onnxgraph import INPUT, OUTPUT, ExportError
from ..io import write_atomic
from .base import Backend, Runner, Sources, Target

INSTALL_HINT = ("TensorRT is not installed: pip install 'nasdeploy[tensorrt]' (wheels from NVIDIA's index, "
                "pip install --extra-index-url https://pypi.nvidia.com tensorrt) or use NVIDIA's TensorRT container")


def _trt():
    try:
        import tensorrt as trt  # type: ignore[import-not-found]
    except ImportError:
        raise DeviceError(INSTALL_HINT) from None
    if not torch.cuda.is_available():
        raise DeviceError("TensorRT needs a CUDA device and none is visible here")
    return trt


def check_profile(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    lo, opt, hi = batch
    if not 1 <= lo <= opt <= hi:
        raise ExportError(f"TensorRT profile needs 1 <= min <= opt <= max batch, got {lo}:{opt}:{hi}")
    return lo, opt, hi


def build_engine(onnx_path: str | Path, engine_path: str | Path, batch: tuple[int, int, int],
                 chw: tuple[int, ...], tf32: bool = False, workspace_gib: float = 4.0) -> Path:
    """Build and atomically write a serialized engine for batches ``batch`` = (min, opt, max).

    The engine's precision is the ONNX graph's (export it in float16 for an fp16 engine). The timing cache is
    kept beside the engine and reused.
    """
    trt = _trt()
    lo, opt, hi = check_profile(batch)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    import onnx

    problems = qdq_problems(onnx.load(str(onnx_path)))
    if problems:
        raise ExportError(f"{onnx_path} breaks TensorRT's Q/DQ rules: {'; '.join(problems[:3])}")
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: "fp32" would be TF32 convolutions
    cache_path = Path(engine_path).with_suffix(".timing-cache")
    shared = shared_timing_cache(trt)
    seed = cache_path if cache_path.exists() else shared
    cache = config.create_timing_cache(seed.read_bytes() if seed.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT, (lo, *chw), (opt, *chw), (hi, *chw))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)")
    timings = bytes(config.get_timing_cache().serialize())
    write_atomic(cache_path, lambda p: p.write_bytes(timings))
    write_atomic(shared, lambda p: p.write_bytes(timings))  # every later build on this GPU starts from it
    return write_atomic(engine_path, lambda p: p.write_bytes(bytes(serialized)))


def shared_timing_cache(trt) -> Path:
    """One timing cache per TensorRT version and GPU, kept across builds (``NASDEPLOY_CACHE``, default
    ~/.cache/nasdeploy): a bench's engines for several batch sizes, and later exports, reuse the kernel timings."""
    import os
    import re

    root = Path(os.environ.get("NASDEPLOY_CACHE", Path.home() / ".cache" / "nasdeploy"))
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name())
    return root / f"tensorrt-{trt.__version__}-{gpu}.timing-cache"


class TrtRunner(Runner):
    """Runs a serialized engine on torch CUDA tensors (set_tensor_address / execute_async_v3; no pycuda).

    Work goes to a dedicated CUDA stream (``self.stream``, which the timer records its events on). ``timed(x)``
    sets the shape, allocates the output and binds both addresses once, outside the timed call.
    """

    name = "tensorrt"
    clock = "cuda"

    def __init__(self, engine_path: str | Path, device: str = "cuda") -> None:
        trt = _trt()
        self.trt = trt
        self.threads = None
        self.device = torch.device(device)
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        with torch.cuda.device(self.device):
            self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
            if self.engine is None:
                raise ExportError(f"{engine_path} is not an engine this TensorRT can load")
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        self.in_dtype = self._torch_dtype(self.engine.get_tensor_dtype(INPUT))
        self.out_dtype = self._torch_dtype(self.engine.get_tensor_dtype(OUTPUT))
        self.dtype = self.in_dtype
        lo, _, hi = self.engine.get_tensor_profile_shape(INPUT, 0)
        self.batch_range = (int(lo[0]), int(hi[0]))

    def _torch_dtype(self, dt) -> torch.dtype:
        trt = self.trt
        table = {trt.float32: torch.float32, trt.float16: torch.float16}
        if hasattr(trt, "bfloat16"):
            table[trt.bfloat16] = torch.bfloat16
        if dt not in table:
            raise ExportError(f"engine tensor type {dt} is not one nasdeploy runs (float32, float16, bfloat16)")
        return table[dt]

    def _bind(self, x: torch.Tensor) -> torch.Tensor:
        """Set the input shape (refused outside the profile), allocate the output, bind both addresses."""
        lo, hi = self.batch_range
        if not lo <= x.shape[0] <= hi or not self.context.set_input_shape(INPUT, tuple(x.shape)):
            raise ExportError(f"batch {x.shape[0]} is outside this engine's profile ({lo}..{hi}): rebuild it with "
                              f"--dynamic-batch covering it")
        y = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT)), dtype=self.out_dtype, device=self.device)
        if not (self.context.set_tensor_address(INPUT, x.data_ptr())
                and self.context.set_tensor_address(OUTPUT, y.data_ptr())):
            raise ExportError("TensorRT refused a tensor address")
        return y

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise ExportError("TensorRT execution failed")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self.device):
            x = x.to(self.device, self.in_dtype).contiguous()
            y = self._bind(x)
            self.stream.wait_stream(torch.cuda.current_stream(self.device))  # x was written there
            self._execute()
            torch.cuda.current_stream(self.device).wait_stream(self.stream)  # y is read there
            x.record_stream(self.stream)
            y.record_stream(self.stream)
        return y

    def timed(self, x: torch.Tensor):
        """One inference per call on ``self.stream``, shapes and addresses bound here, once."""
        with torch.cuda.device(self.device):
            x = x.to(self.device, self.in_dtype).contiguous()
            y = self._bind(x)
            torch.cuda.current_stream(self.device).synchronize()

        def run() -> None:
            self._execute()

        run.buffers = (x, y)  # type: ignore[attr-defined]  # the bound buffers live as long as the function
        return run


class TensorRtBackend(Backend):
    name = "tensorrt"
    order = 60
    description = "TensorRT engine (strongly typed; INT8 from the symmetric Q/DQ graph); not exercised by nasdeploy's CI"
    package = "tensorrt"
    install_hint = "pip install 'nasdeploy[tensorrt]'"
    dtypes = {"cuda": ("fp32", "fp16", "int8")}
    artefact = "model.engine"  # built for its optimisation profile: called only inside it
    isolated = True  # a native engine: a crash while loading costs its bench row, not the run
    candidates = {"cuda": ("fp16", "int8")}

    def unavailable(self, device: str) -> str | None:
        why = super().unavailable(device)
        if why and why.startswith(f"{self.package} is not installed"):
            return INSTALL_HINT
        if why is None and not torch.cuda.is_available():
            return "TensorRT needs a CUDA device and none is visible here"
        return why

    def build(self, src: Sources, target: Target) -> Path | None:
        onnx = src.onnx("int8-fp16") if target.dtype == "int8" else src.onnx(target.dtype)
        lo, hi = target.batch_range
        opt = min(max(target.shape[0], lo), hi)
        name = "model.engine" if target.dtype == "fp32" else f"model.{target.dtype}.engine"
        return build_engine(onnx, src.work / name, (lo, opt, hi), target.chw, tf32=target.tf32)

    def load(self, src: Sources | None, path: Path | None, target: Target) -> Runner:
        runner = TrtRunner(path, target.device)
        if target.dtype == "int8":
            runner.precision = "int8 with fp16 float layers"
        return runner


BACKEND = TensorRtBackend()


def qdq_problems(model) -> list[str]:
    """What TensorRT 10's ONNX parser refuses in an explicitly quantized graph, read without TensorRT
    (onnx-tensorrt docs/operators.md: DequantizeLinear takes INT8, FP8 or INT4 inputs; zero points of 0;
    per-channel scales along one axis of the right length; opset 13 or later, 19 for float16 scales)."""
    from onnx import TensorProto, numpy_helper

    allowed = {TensorProto.INT8, TensorProto.INT4, getattr(TensorProto, "FLOAT8E4M3FN", -1)}
    inits = {i.name: i for i in model.graph.initializer}
    produced = {o: n for n in model.graph.node for o in n.output}
    opset = max((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), default=0)
    out: list[str] = []
    if opset < 13:
        out.append(f"opset {opset}: per-channel Q/DQ needs opset 13 or later")
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale = inits.get(n.input[1])
        if scale is not None and scale.data_type == TensorProto.FLOAT16 and opset < 19:
            out.append(f"{n.name}: float16 scale needs opset 19")
        if len(n.input) > 2 and n.input[2] in inits:
            zp = inits[n.input[2]]
            if zp.data_type not in allowed:
                out.append(f"{n.name}: zero point of type {TensorProto.DataType.Name(zp.data_type)}")
            elif numpy_helper.to_array(zp).any():
                out.append(f"{n.name}: non-zero zero point")
        if n.op_type == "DequantizeLinear":
            src = inits.get(n.input[0])
            if src is not None and src.data_type not in allowed:
                out.append(f"{n.name}: DequantizeLinear of {TensorProto.DataType.Name(src.data_type)} "
                           f"({n.input[0]})")
            if src is not None and scale is not None and len(scale.dims) == 1 and scale.dims[0] > 1:
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                if src.dims[axis] != scale.dims[0]:
                    out.append(f"{n.name}: {scale.dims[0]} scales along axis {axis} of a {list(src.dims)} tensor")
        elif n.input[0] in produced and produced[n.input[0]].op_type == "DequantizeLinear":
            pass  # a requantization after a DQ: allowed
    return out
