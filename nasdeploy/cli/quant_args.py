"""The INT8 calibration and accuracy-gate options, shared by export, bench and verify."""
from __future__ import annotations

import argparse

from ..isa import REQUESTS, this_cpu
from ..quantize import EXCLUDE_GROUPS, METHODS, OP_SETS, QuantOptions


def add_quant_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("INT8 quantization")
    g.add_argument("--calib-data", default=None,
                   help="ImageNet-layout folder whose train split calibrates INT8 (default: --data, else the built-in "
                        "images)")
    g.add_argument("--calib-images", type=int, default=256, help="calibration images (default 256, at least 16)")
    g.add_argument("--calib-method", default="auto", choices=METHODS,
                   help="activation range estimator: auto (default: entropy for OpenVINO's graph, min/max for ONNX "
                        "Runtime's, whose entropy calibration takes about 15 times longer), minmax, entropy, "
                        "percentile")
    g.add_argument("--quant-exclude", default="",
                   help=f"comma list of layers kept in float: {', '.join(EXCLUDE_GROUPS)} or ONNX node-name patterns")
    g.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default: per channel)")
    g.add_argument("--quant-ops", default="all", choices=tuple(OP_SETS),
                   help="operators given INT8 inputs: all that ONNX Runtime quantizes, or conv (Conv/Gemm only)")
    g.add_argument("--int8-isa", default="native", choices=REQUESTS,
                   help="CPU instruction set the INT8 graph is quantized for: native (this CPU: "
                        f"{this_cpu().int8_class}), portable (7-bit weights, right on any x86-64), vnni (full 8-bit "
                        "weights, for CPUs with VNNI or AMX), no-vnni (as portable)")


def add_gate_args(p: argparse.ArgumentParser, force: bool) -> None:
    g = p.add_argument_group("accuracy gate (held-out images of --data, else of the built-in set)")
    g.add_argument("--budget", default="1.0",
                   help="most top-1 points a reduced-precision engine may lose against float32 (default 1.0)")
    g.add_argument("--gate-images", type=int, default=1000, help="held-out images the gate scores (default 1000)")
    if force:
        g.add_argument("--force-accuracy", action="store_true",
                       help="keep an engine that fails the accuracy gate (the failure is recorded)")


def quant_options(args: argparse.Namespace) -> QuantOptions:
    exclude = tuple(v.strip() for v in args.quant_exclude.split(",") if v.strip())
    return QuantOptions(args.calib_method, not args.per_tensor, exclude, args.calib_images, args.quant_ops,
                        args.int8_isa)
