"""INT8 post-training quantization of a folded model's ONNX graph to Q/DQ, through ONNX Runtime's quantization tools.

Why ONNX Runtime's ``quantize_static`` (measured in ``benchmarks/quantizers.py``, table in benchmarks/README): its
Q/DQ graph runs fast on ONNX Runtime, OpenVINO and (with symmetric activations) TensorRT alike, it ships with
onnxruntime (no new dependency), and it calibrates in seconds. NNCF's ONNX output kept the accuracy but ran 5x
slower than float32 on ONNX Runtime (its Q/DQ placement is tuned for OpenVINO), and NVIDIA ModelOpt's ONNX PTQ
pulls onnxruntime-gpu and cupy, which conflict with the CPU onnxruntime.

One Q/DQ graph: per-channel symmetric INT8 weights, per-tensor activations (asymmetric UINT8 by default,
symmetric INT8 for TensorRT), calibrated on real images of the train split (never the images the accuracy gate
scores). For depthwise-heavy networks, ``exclude`` keeps chosen layers in float (``depthwise``, ``se``, ``first``,
``last`` or node-name patterns) and ``method`` chooses the range estimator (minmax, entropy, percentile).
"""
from __future__ import annotations

import fnmatch
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, UsageError

log = logging.getLogger(__name__)
METHODS = ("minmax", "entropy", "percentile")
EXCLUDE_GROUPS = ("depthwise", "se", "first", "last")
MIN_CALIB_IMAGES = 16


@dataclass(frozen=True)
class QuantOptions:
    method: str = "minmax"
    per_channel: bool = True
    exclude: tuple[str, ...] = ()  # groups (depthwise, se, first, last) or fnmatch patterns on ONNX node names
    images: int = 256  # calibration images

    def check(self) -> "QuantOptions":
        if self.method not in METHODS:
            raise UsageError(f"unknown calibration method '{self.method}': choose one of {', '.join(METHODS)}")
        if self.images < MIN_CALIB_IMAGES:
            raise UsageError(f"--calib-images {self.images} is too few: INT8 calibration needs at least "
                             f"{MIN_CALIB_IMAGES} images")
        return self


@dataclass
class Calibration:
    """Calibration images (preprocessed as the model expects) and how to quantize with them."""

    batches: list[torch.Tensor]
    options: QuantOptions = field(default_factory=QuantOptions)
    source: str = ""

    @property
    def images(self) -> int:
        return sum(len(b) for b in self.batches)


def calibration_images(input_size: int, small: bool, data: str | None = None,
                       options: QuantOptions | None = None) -> Calibration:
    """``options.images`` real images from the train split of ``data`` (an ImageNet-layout folder) or of the
    built-in set, preprocessed as the model expects. Refused when there are fewer than asked for."""
    from .export.parity import real_batches

    options = (options or QuantOptions()).check()
    batches = real_batches(input_size, small, data, options.images, split="train")
    n = sum(len(b) for b in batches)
    if n < options.images:
        where = data or "the built-in images"
        raise DataError(f"only {n} calibration images in {where} (asked for {options.images}): give a folder with "
                        f"more images or a smaller --calib-images (at least {MIN_CALIB_IMAGES})")
    return Calibration(batches, options, f"{n} images of {data or 'the built-in set'} (train split)")


def random_calibration(shape: tuple[int, ...], n: int = 8, seed: int = 0) -> Calibration:
    """Gaussian inputs: for latency measurements only, where the ranges do not change the work done."""
    g = torch.Generator().manual_seed(seed)
    return Calibration([torch.randn(n, *shape[1:], generator=g)], QuantOptions(images=max(n, MIN_CALIB_IMAGES)),
                       f"{n} random inputs (latency only)")


class _Reader:
    """ONNX Runtime's CalibrationDataReader over calibration batches, one image at a time (batch-1 graphs)."""

    def __init__(self, input_name: str, batches: list[torch.Tensor]) -> None:
        self.items = [{input_name: x[None].numpy().astype(np.float32)} for b in batches for x in b]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.items):
            return None
        self.i += 1
        return self.items[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


def excluded_nodes(model, patterns: tuple[str, ...]) -> list[str]:
    """Node names matched by the exclusion groups and patterns (checked: a pattern matching nothing is refused)."""
    nodes = list(model.graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    out: list[str] = []
    for p in patterns:
        if p == "depthwise":
            hit = [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
        elif p == "se":
            hit = [n.name for n in nodes if "mid_se" in n.name or "/se/" in n.name]
        elif p == "first":
            hit = [convs[0].name] if convs else []
        elif p == "last":
            lin = [n for n in nodes if n.op_type in ("Gemm", "MatMul", "Conv")]
            hit = [lin[-1].name] if lin else []
        else:
            hit = [n.name for n in nodes if fnmatch.fnmatchcase(n.name, p)]
        if not hit:
            raise UsageError(f"--quant-exclude '{p}' matches no layer of this model: use one of "
                             f"{', '.join(EXCLUDE_GROUPS)} or a pattern on ONNX node names (e.g. '/mb_module.3/*')")
        out += [h for h in hit if h not in out]
    return out


class _quiet:
    """ONNX Runtime's quantizer logs a line per adjusted tensor on the root logger: keep them off the terminal."""

    def __enter__(self) -> None:
        self.level = logging.root.manager.disable
        logging.disable(logging.INFO)

    def __exit__(self, *exc) -> None:
        logging.disable(self.level)


def quantize_onnx(src: str | Path, dst: str | Path, calib: Calibration, symmetric: bool = False) -> dict:
    """Quantize the float32 ONNX graph ``src`` to an INT8 Q/DQ graph at ``dst`` (written atomically).

    ``symmetric``: signed INT8 activations with zero points of 0 (TensorRT); else UINT8 with zero points.
    Returns what was done (method, per-channel, excluded nodes, calibration, quantized node counts)."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .io import atomic_path

    opt = calib.options
    if calib.images < 1:
        raise DataError("no calibration images: give --calib-data DIR or use the built-in images")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[opt.check().method]
    model = onnx.load(str(src))
    input_name = model.graph.input[0].name
    exclude = excluded_nodes(model, opt.exclude)
    extra = {"WeightSymmetric": True, "ActivationSymmetric": symmetric}
    if opt.method == "percentile":
        extra["CalibTensorRangeSymmetric"] = symmetric
    with tempfile.TemporaryDirectory(prefix="nasdeploy-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        with atomic_path(dst) as out, _quiet():
            quantize_static(str(pre), str(out), _Reader(input_name, calib.batches), quant_format=QuantFormat.QDQ,
                            per_channel=opt.per_channel,
                            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=method,
                            extra_options=extra)
    q = onnx.load(str(dst))
    ops = [n.op_type for n in q.graph.node]
    return {"library": f"onnxruntime.quantization {onnxruntime.__version__}", "format": "QDQ",
            "activations": "int8 symmetric" if symmetric else "uint8 asymmetric",
            "weights": "int8 symmetric " + ("per-channel" if opt.per_channel else "per-tensor"),
            **asdict(opt), "exclude": list(opt.exclude), "excluded_nodes": exclude, "calibration": calib.source,
            "calibration_images": calib.images, "quantize_nodes": ops.count("QuantizeLinear"),
            "dequantize_nodes": ops.count("DequantizeLinear")}
