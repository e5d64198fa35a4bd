"""INT8 post-training quantization of a folded model's ONNX graph to Q/DQ, by the library that knows the runtime.

Measured on our models (``benchmarks/quantizers.py``, table in benchmarks/README, "Choosing the quantizer"):
the Q/DQ placement decides the speed, and each runtime fuses a different placement. ONNX Runtime's
``quantize_static`` makes graphs ONNX Runtime and TensorRT (with symmetric activations) run fast, but on
OpenVINO SCARLET's h-swish and SE blocks end up between Q/DQ pairs it cannot fuse (0.8x float32). NNCF,
OpenVINO's own quantizer, places them where OpenVINO fuses them (1.9x on SCARLET-A) but its graphs run several
times slower than float32 on ONNX Runtime. So ONNX Runtime and TensorRT engines get ONNX Runtime's graph and
OpenVINO gets NNCF's; both are ONNX Q/DQ files in the export. NVIDIA ModelOpt's ONNX PTQ needs onnxruntime-gpu
and cupy, which replace the CPU onnxruntime.

Both: per-channel symmetric INT8 weights, per-tensor activations (asymmetric UINT8 by default, symmetric INT8
for TensorRT), calibrated on real images of the train split (never the images the accuracy gate scores). For
depthwise-heavy networks, ``exclude`` keeps chosen layers in float (``depthwise``, ``se``, ``first``, ``last`` or
node-name patterns; both quantizers honour it) and, for ONNX Runtime's quantizer, ``method`` chooses the range
estimator (minmax, entropy, percentile), ``ops`` the operators quantized and ``per_channel`` the weight scales.
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, UsageError

log = logging.getLogger(__name__)
METHODS = ("auto", "minmax", "entropy", "percentile")
# "auto": the activation range estimator measured best for each quantizer at a bearable cost (benchmarks/README,
# "INT8 calibration"): entropy (NNCF's histogram) for OpenVINO's graph, which on four trained networks lowered the
# mean top-1 drop from 2.25 to 1.15 points (AVX-512 VNNI CPU, search-validation images) at the cost of min/max;
# min/max for ONNX Runtime's, whose entropy calibration lowers its drop less (1.27 to 0.73 points) and costs more
# (its 2048-bin histograms of every tensor; a 40-image INT8 `verify` at 224 px: 18 s against 10 s, after its
# threshold search lost its Python loops; 85 s before): `--calib-method entropy` when that time is worth it
AUTO_METHOD = {"onnxruntime": "minmax", "nncf": "entropy"}
# Which operators get INT8 inputs: "all" that ONNX Runtime's quantizer knows (Conv, Gemm, Add, Mul, pooling, ...),
# or "conv": only the weighted ones (Conv, Gemm), the rest stays float between them
OP_SETS = {"all": None, "conv": ("Conv", "Gemm", "MatMul")}
EXCLUDE_GROUPS = ("depthwise", "se", "first", "last")
MIN_CALIB_IMAGES = 16
ENTROPY_BINS = 2048
QUANTIZERS = ("onnxruntime", "nncf")


@dataclass(frozen=True)
class QuantOptions:
    method: str = "auto"  # see METHODS and AUTO_METHOD
    per_channel: bool = True
    exclude: tuple[str, ...] = ()  # groups (depthwise, se, first, last) or fnmatch patterns on ONNX node names
    images: int = 256  # calibration images
    ops: str = "all"  # see OP_SETS
    isa: str = "native"  # the instruction-set class quantized for (nasdeploy.isa.REQUESTS)

    def method_for(self, quantizer: str) -> str:
        """The range estimator ``quantizer`` (onnxruntime or nncf) uses for these options."""
        return AUTO_METHOD[quantizer] if self.method == "auto" else self.method

    def check(self) -> "QuantOptions":
        from .isa import int8_rule

        int8_rule(self.isa)
        if self.ops not in OP_SETS:
            raise UsageError(f"unknown operator set '{self.ops}': choose one of {', '.join(OP_SETS)}")
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
    random: bool = False  # random inputs, for latency measurements only

    @property
    def images(self) -> int:
        return sum(len(b) for b in self.batches)


def calibration_images(setting, data: str | None = None, options: QuantOptions | None = None) -> Calibration:
    """``options.images`` real training images of ``data`` (an ImageNet-layout folder's train/, or the built-in
    set's, search-validation part included: calibration chooses nothing the test split reports), preprocessed for
    ``setting`` (a ``data.InputSetting``). Refused when there are fewer."""
    from .data import BUILTIN, real_batches, resolve_split

    options = (options or QuantOptions()).check()
    if data and data != BUILTIN:
        try:
            train = resolve_split(data, "train")
        except DataError as e:
            raise DataError(f"{e}: INT8 calibration takes train images; give --calib-data DIR") from None
        try:
            same = train == resolve_split(data, "test")
        except DataError:  # a calibration-only folder
            same = False
        if same:
            log.warning("%s has no train/ and val/ subfolders: INT8 is calibrated on the images the accuracy gate "
                        "scores; give --calib-data with other images for an unbiased gate", data)
    batches = real_batches(data, "train_all", setting, options.images)
    n = sum(len(b) for b in batches)
    if n < options.images:
        where = data or "the built-in images"
        raise DataError(f"only {n} calibration images in {where} (asked for {options.images}): give a folder with "
                        f"more images or a smaller --calib-images (at least {MIN_CALIB_IMAGES})")
    return Calibration(batches, options, f"{n} images of {data or 'the built-in set'} (train split)")


def random_calibration(shape: tuple[int, ...], n: int = 8, seed: int = 0,
                       options: QuantOptions | None = None) -> Calibration:
    """Gaussian inputs: for latency measurements only, where the ranges do not change the work done. ``options``:
    how to quantize with them (default: nasdeploy's)."""
    g = torch.Generator().manual_seed(seed)
    return Calibration([torch.randn(n, *shape[1:], generator=g)],
                       options or QuantOptions(images=max(n, MIN_CALIB_IMAGES)), f"{n} random inputs (latency only)",
                       random=True)


class CalibrationReader:
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
    method_name = opt.check().method_for("onnxruntime")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[method_name]
    model = onnx.load(str(src))
    input_name = model.graph.input[0].name
    exclude = excluded_nodes(model, opt.exclude)
    # TensorRT's symmetric graph runs on GPUs, whose INT8 products do not saturate; CPU graphs follow the rule
    rule = _rule(opt, symmetric)
    extra = {"WeightSymmetric": True, "ActivationSymmetric": symmetric,
             # TensorRT's parser takes DequantizeLinear on INT8 only: biases stay float there (as ModelOpt does)
             "QuantizeBias": not symmetric}
    if method_name == "percentile":
        extra["CalibTensorRangeSymmetric"] = symmetric
    with tempfile.TemporaryDirectory(prefix="nasdeploy-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        op_types = list(OP_SETS[opt.ops]) if OP_SETS[opt.ops] else None
        cache = _entropy_ranges(pre, calib, input_name, op_types, symmetric, Path(tmp)) \
            if method_name == "entropy" else None
        with atomic_path(dst) as out, _quiet():
            quantize_static(str(pre), str(out), CalibrationReader(input_name, calib.batches),
                            quant_format=QuantFormat.QDQ,
                            per_channel=opt.per_channel, reduce_range=rule.saturation_safe,
                            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=exclude, calibrate_method=method,
                            op_types_to_quantize=op_types, extra_options=extra, calibration_cache_path=cache)
    q = onnx.load(str(dst))
    ops = [n.op_type for n in q.graph.node]
    return {"library": f"onnxruntime.quantization {onnxruntime.__version__}", "format": "QDQ",
            "activations": "int8 symmetric" if symmetric else "uint8 asymmetric",
            "weights": "int8 symmetric " + ("per-channel" if opt.per_channel else "per-tensor"),
            **asdict(opt), "method_requested": opt.method, "method": method_name,
            "exclude": list(opt.exclude), "excluded_nodes": exclude, "calibration": calib.source,
            "calibration_images": calib.images, "quantize_nodes": ops.count("QuantizeLinear"),
            "dequantize_nodes": ops.count("DequantizeLinear"), **_isa_record(rule)}


def _entropy_ranges(pre: Path, calib: Calibration, input_name: str, op_types: list[str] | None, symmetric: bool,
                    tmp: Path) -> Path:
    """Activation ranges by entropy (KL divergence) calibration, written where ``quantize_static`` reads them.

    ``quantize_static`` builds its entropy calibrator with 128 histogram bins for 128 quantized bins and offers no
    option to change them: its threshold search then has one candidate, the full range, so "entropy" gave exactly
    the min/max ranges (measured: all 157 activation scales of a SCARLET graph equal). TensorRT's entropy
    calibration, which ONNX Runtime's follows, takes 2048 bins for 128 quantized ones."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    types = op_types or sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = create_calibrator(pre, types, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": 128,
                                                  "symmetric": symmetric})
    with _quiet(), contextlib.redirect_stdout(io.StringIO()):  # it prints its bin counts
        calibrator.collect_data(CalibrationReader(input_name, calib.batches))
        # the same thresholds, found without its per-bin Python loops (85 s of a FairNAS-A export's 90 before)
        calibrator.collector.get_entropy_threshold = entropy_threshold
        ranges = calibrator.compute_data()
    cache = tmp / "entropy_ranges.json"
    save_tensors_data(ranges, cache)
    return cache


def entropy_threshold(histogram: tuple, num_quantized_bins: int) -> tuple:
    """ONNX Runtime's entropy threshold of one tensor (``HistogramCollector.get_entropy_threshold``: TensorRT's KL
    search, its integer truncations included), each candidate's bins merged and expanded by array operations
    instead of Python loops over the bins; the divergence is ONNX Runtime's own functions, so the thresholds are the
    same numbers (tests/test_quantize.py compares them on histograms of every shape)."""
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    hist, edges = histogram[0], histogram[1]
    n, nq = hist.size, num_quantized_bins
    zero, half = n // 2, nq // 2
    dtype = edges.dtype
    below = np.concatenate([[0], np.cumsum(hist)])  # below[k] = sum(hist[:k])
    kl = np.zeros(zero - half + 1)
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, n)
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += below[start]
        p[-1] += below[n] - below[end]
        merged = sliced.size // nq
        whole = nq * merged
        quantized = sliced[:whole].reshape(nq, merged).sum(1).astype(np.int64)
        quantized[-1] = np.int64(quantized[-1] + sliced[whole:].sum())
        norm = (p[:whole] != 0).astype(np.int64).reshape(nq, merged).sum(1)
        q = np.zeros(p.size, dtype=np.int64)
        q[:whole] = np.repeat(np.where(norm != 0, quantized / np.maximum(norm, 1), 0.0), merged).astype(np.int64)
        ps, qs = smooth_distribution(p), smooth_distribution(q)
        kl[i - half] = np.inf if ps is None or qs is None else np.array(entropy(ps, qs), dtype=dtype)
    k = int(np.argmin(kl)) + half
    lo, hi = edges[zero - k], edges[min(zero + k + 1, n)]
    return (histogram[2] if lo < histogram[2] else lo, histogram[3] if hi > histogram[3] else hi)


def quantize_onnx_nncf(src: str | Path, dst: str | Path, calib: Calibration, bias_correction: bool = True,
                       preset: str = "performance") -> dict:
    """Quantize ``src`` to an INT8 Q/DQ graph at ``dst`` with NNCF for OpenVINO's CPU plugin (written atomically).

    ``bias_correction`` off is for latency-only graphs (random calibration), where it would only cost time.
    ``preset``: NNCF's "performance" (symmetric activations: what ships; `benchmarks/int8_knobs.py` measured
    "mixed", asymmetric activations, slower on every network it timed) or "mixed"."""
    import onnx

    from .io import atomic_path

    try:
        import nncf
    except ImportError:
        raise UsageError("OpenVINO INT8 is quantized with NNCF, which is not installed: "
                         "pip install 'nasdeploy[openvino]' (or pip install nncf)") from None
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as Ranges

    opt = calib.options.check()
    if not opt.per_channel or opt.ops != "all":
        raise UsageError("--per-tensor and --quant-ops choose how ONNX Runtime's quantizer works; OpenVINO INT8 is "
                         "quantized by NNCF (its own placement): drop them for openvino:int8, or export the "
                         "onnxruntime:int8 engine alone")
    # the activation ranges as --calib-method names them. NNCF's own default (the mean of per-image minima and
    # maxima) clips every image whose range is wider than the average one: measured 8 to 28 points of top-1
    # lost on trained 28 px SCARLET networks where the global min/max loses none (benchmarks/README)
    ranges = {"minmax": Ranges.MINMAX, "entropy": Ranges.HISTOGRAM,
              "percentile": Ranges.MEAN_QUANTILE}[opt.method_for("nncf")]
    if calib.images < 1:
        raise DataError("no calibration images: give --calib-data DIR or use the built-in images")
    model = onnx.load(str(src))
    input_name = model.graph.input[0].name
    exclude = excluded_nodes(model, opt.exclude)
    items = [{input_name: x[None].numpy().astype(np.float32)} for b in calib.batches for x in b]
    rule = _rule(opt, False)
    # without VNNI every weighted layer gets half the weight range; with it, NNCF's default (the first layer only)
    overflow = nncf.OverflowFix.ENABLE if rule.saturation_safe else nncf.OverflowFix.FIRST_LAYER
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), _quiet():  # its progress bars and INFO lines
        q = nncf.quantize(model, nncf.Dataset(items), target_device=nncf.TargetDevice.CPU, subset_size=len(items),
                          preset=nncf.QuantizationPreset(preset), fast_bias_correction=True,
                          ignored_scope=nncf.IgnoredScope(names=exclude) if exclude else None,
                          advanced_parameters=nncf.AdvancedQuantizationParameters(
                              overflow_fix=overflow, disable_bias_correction=not bias_correction,
                              activations_range_estimator_params=ranges))
    with atomic_path(dst) as out:
        onnx.save(q, str(out))
    ops = [n.op_type for n in q.graph.node]
    return {"library": f"nncf {nncf.__version__}", "format": "QDQ", "target": "OpenVINO CPU",
            "activations": "per-tensor (NNCF's placement)", "weights": "int8 symmetric per-channel",
            **asdict(opt), "method_requested": opt.method, "method": opt.method_for("nncf"),
            "exclude": list(opt.exclude), "excluded_nodes": exclude, "calibration": calib.source,
            "calibration_images": calib.images, "bias_correction": bias_correction, "overflow_fix": overflow.value,
            "preset": preset,
            "quantize_nodes": ops.count("QuantizeLinear"), "dequantize_nodes": ops.count("DequantizeLinear"),
            **_isa_record(rule)}


def _rule(opt: QuantOptions, symmetric: bool):
    from .isa import Int8Rule, int8_rule

    return Int8Rule("gpu", "gpu", False) if symmetric else int8_rule(opt.isa)


def _isa_record(rule) -> dict:
    """Which instruction set a graph was quantized for, and the CPU it was calibrated on (its gate runs there too)."""
    from .isa import this_cpu

    return {"isa_rule": rule.as_dict(), "calibrated_on": this_cpu().as_dict()}
