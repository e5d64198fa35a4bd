"""TensorRT 10/11: engine from ONNX (optimisation profile, timing cache, FP16) and a runner on torch CUDA tensors.

UNVERIFIED in this project's own test runs: TensorRT cannot be installed where nasdeploy is
developed and tested (its wheels come from NVIDIA's own index). This module is written against
the documented TensorRT 10/11 Python API and kept deliberately thin; its tests skip without TensorRT.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import DeviceError
from ..io import write_atomic
from .onnx import INPUT, OUTPUT, ExportError

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


def build_engine(onnx_path: str | Path, engine_path: str | Path, batch: tuple[int, int, int],
                 chw: tuple[int, ...], fp16: bool = False, workspace_gib: float = 4.0) -> Path:
    """Build and atomically write a serialized engine; the timing cache is kept beside it and reused."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise ExportError("this TensorRT has no FP16 builder flag (strongly typed networks only): export an "
                              "fp16 ONNX graph instead")
        config.set_flag(trt.BuilderFlag.FP16)
    cache_path = Path(engine_path).with_suffix(".timing-cache")
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    lo, opt, hi = batch
    profile.set_shape(INPUT, (lo, *chw), (opt, *chw), (hi, *chw))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT log above)")
    write_atomic(cache_path, lambda p: p.write_bytes(bytes(config.get_timing_cache().serialize())))
    return write_atomic(engine_path, lambda p: p.write_bytes(bytes(serialized)))


class TrtRunner:
    """Runs a serialized engine on torch CUDA tensors (set_tensor_address / execute_async_v3; no pycuda)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, device: str = "cuda") -> None:
        trt = _trt()
        self.trt = trt
        self.device = device
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ExportError(f"{engine_path} is not an engine this TensorRT can load")
        self.context = self.engine.create_execution_context()
        self.in_dtype = self._torch_dtype(self.engine.get_tensor_dtype(INPUT))
        self.out_dtype = self._torch_dtype(self.engine.get_tensor_dtype(OUTPUT))
        self.dtype = self.in_dtype

    def _torch_dtype(self, dt) -> torch.dtype:
        trt = self.trt
        return {trt.float32: torch.float32, trt.float16: torch.float16}.get(dt, torch.float32)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.in_dtype).contiguous()
        self.context.set_input_shape(INPUT, tuple(x.shape))
        y = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT)), dtype=self.out_dtype, device=self.device)
        self.context.set_tensor_address(INPUT, x.data_ptr())
        self.context.set_tensor_address(OUTPUT, y.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise ExportError("TensorRT execution failed")
        return y

    def timed(self, x: torch.Tensor):
        x = x.to(self.device, self.in_dtype).contiguous()
        return lambda: self(x)
