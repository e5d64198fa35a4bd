"""What each INT8 setting does to OpenVINO's speed at batch 1, against plain ONNX Runtime fp32 in the same run.

For each network (FairNAS-A, SCARLET-A, FairNAS-A-SE by default, the zoo's architectures at 224 px with random
weights: the work, and so the time, does not depend on their values; min/max ranges from random inputs, which
random weights can make too narrow for a histogram), every variant below is built from the same
float32 ONNX graph and timed by nasdeploy's clock (interleaved rounds, a pause before each, the fastest round;
more rounds for what has not settled) together with plain ONNX Runtime fp32 (all graph optimisations, the usable
cores) and nasdeploy's ONNX Runtime INT8:

* ``nasdeploy``: what `export`/`bench` build for openvino:int8 (NNCF's "performance" preset on the ONNX graph,
  every layer quantized, static batch 1, latency hint, one stream, the usable cores, OpenVINO's own pinning);
* one setting changed at a time: NNCF's "mixed" preset; NNCF run on the OpenVINO model instead of the ONNX graph;
  the first, the last, the first and last, the depthwise or the SE layers kept in float; a dynamic batch (1..16);
  CPU pinning off; bf16 for the layers left in float; one thread.

Each ratio is ONNX Runtime fp32's fastest round over the variant's; its range pairs each one's fastest round with
the other's second fastest (how far one quiet round could move it). A setting helps where its range lies above the
nasdeploy row's.

    python -m benchmarks.int8_knobs --json benchmarks/results/int8_knobs_vnni.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224


def variants(has_se: bool, bf16: bool) -> list[tuple[str, dict]]:
    """(name, how it differs from what nasdeploy builds)."""
    out = [("nasdeploy", {}), ("NNCF preset mixed", {"preset": "mixed"}), ("NNCF on the OpenVINO model", {"ir": True}),
           ("first layer float", {"exclude": ("first",)}), ("last layer float", {"exclude": ("last",)}),
           ("first and last float", {"exclude": ("first", "last")}), ("depthwise float", {"exclude": ("depthwise",)})]
    if has_se:
        out.append(("SE float", {"exclude": ("se",)}))
    out += [("dynamic batch 1..16", {"batch_range": (1, 16)}), ("CPU pinning off", {"config": {"ENABLE_CPU_PINNING":
                                                                                                  False}})]
    if bf16:
        out.append(("bf16 for float layers", {"config": {"INFERENCE_PRECISION_HINT": "bf16"}}))
    out.append(("one thread", {"threads": 1}))
    return out


def quantized(fp32: Path, out: Path, knob: dict) -> Path:
    """The INT8 graph (or OpenVINO model file) a variant runs."""
    from nasdeploy.quantize import QuantOptions, quantize_onnx_nncf, random_calibration

    opt = QuantOptions(method="minmax", images=16, exclude=tuple(knob.get("exclude", ())))
    calib = random_calibration((1, 3, SIZE, SIZE), 16, options=opt)
    if knob.get("ir"):
        return nncf_on_ir(fp32, out.with_suffix(".xml"), calib)
    quantize_onnx_nncf(fp32, out, calib, bias_correction=False, preset=knob.get("preset", "performance"))
    return out


def nncf_on_ir(fp32: Path, out: Path, cal) -> Path:
    """NNCF's OpenVINO backend on the model OpenVINO reads from the ONNX file (same options as nasdeploy's)."""
    import logging

    import nncf
    import openvino as ov
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as Ranges

    nncf.set_log_level(logging.ERROR)
    model = ov.Core().read_model(str(fp32))
    model.reshape({model.inputs[0]: ov.PartialShape([1, 3, SIZE, SIZE])})
    items = [x[None].numpy() for b in cal.batches for x in b]
    q = nncf.quantize(model, nncf.Dataset(items), target_device=nncf.TargetDevice.CPU, subset_size=len(items),
                      fast_bias_correction=True, advanced_parameters=nncf.AdvancedQuantizationParameters(
                          disable_bias_correction=True, activations_range_estimator_params=Ranges.MINMAX))
    ov.save_model(q, str(out))
    return out


def sweep(name: str, work: Path, clock) -> dict:
    import torch

    from nasdeploy.backends.onnxruntime import OrtRunner
    from nasdeploy.backends.openvino import OvRunner, cpu_capabilities
    from nasdeploy.onnxgraph import export_onnx
    from nasdeploy.quantize import quantize_onnx, random_calibration
    from nasdeploy.zoo import resolve

    from .profiles import graph_families

    plain = resolve(name).folded()[0]
    fp32 = export_onnx(plain, work / f"{name}.onnx", (1, 3, SIZE, SIZE))
    has_se = "SE" in graph_families(fp32)[1]
    runners = {"onnxruntime:fp32": OrtRunner(str(fp32))}
    ort_int8 = work / f"{name}.ort-int8.onnx"
    quantize_onnx(fp32, ort_int8, random_calibration((1, 3, SIZE, SIZE), 16))
    runners["onnxruntime:int8 (nasdeploy)"] = OrtRunner(str(ort_int8))
    for label, knob in variants(has_se, "BF16" in cpu_capabilities()):
        path = quantized(fp32, work / f"{name}.{len(runners)}.onnx", knob)
        runners[label] = OvRunner(path, "int8", knob.get("batch_range", (1, 1)), (3, SIZE, SIZE),
                                  knob.get("threads"), knob.get("config"))
        print(f"{name}: built {label}", flush=True)
    x = torch.randn(1, 3, SIZE, SIZE)
    rounds = clock.time_all([r.timed(x) for r in runners.values()])
    medians = {k: sorted(st.median for st in rs) for k, rs in zip(runners, rounds)}
    ref = medians["onnxruntime:fp32"]
    rows = []
    for k, m in medians.items():
        second = m[1] if len(m) > 1 else m[0]
        ref2 = ref[1] if len(ref) > 1 else ref[0]
        rows.append({"variant": k, "ms": m[0], "rounds": len(m), "vs_onnxruntime_fp32": ref[0] / m[0],
                     "range": [ref[0] / second, ref2 / m[0]], "threads": runners[k].threads})
    return {"model": name, "has_se": has_se, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="fairnas_a,scarlet_a,fairnas_a_se")
    ap.add_argument("--repeats", type=int, default=50, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (more for rows not settled)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from nasdeploy.bench.env import environment
    from nasdeploy.bench.timing import Clock
    from nasdeploy.io import provenance
    from nasdeploy.isa import this_cpu

    clock = Clock(repeats=args.repeats, rounds=args.rounds)
    results = []
    with tempfile.TemporaryDirectory(prefix="nasdeploy-knobs-") as tmp:
        for name in args.models.split(","):
            r = sweep(name, Path(tmp), clock)
            results.append(r)
            for row in r["rows"]:
                print(f"{name:14s} {row['variant']:30s} {row['ms']:7.3f} ms  x{row['vs_onnxruntime_fp32']:.2f} "
                      f"[{row['range'][0]:.2f}, {row['range'][1]:.2f}] ORT fp32  ({row['rounds']} rounds)", flush=True)
    out = {"command": " ".join(["python -m benchmarks.int8_knobs", *sys.argv[1:]]), "cpu": this_cpu().describe(),
           "int8_class": this_cpu().int8_class, "results": results, "environment": environment("cpu"),
           "provenance": provenance()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
