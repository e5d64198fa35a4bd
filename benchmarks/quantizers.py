"""Which INT8 quantizer: ONNX Runtime's quantize_static (several calibrations) against NNCF, on our models.

For each model: the folded float32 ONNX graph is quantized by each method on the same 256 calibration images
(train split); each INT8 graph is scored on 1,000 held-out images (top-1 and agreement with float32) and timed
at batch 1 on ONNX Runtime and on OpenVINO, all graphs of a model in interleaved rounds (the median of the round
medians counts; the recorded results before 2026-12-07 took the fastest round).
NVIDIA ModelOpt's ONNX PTQ is not run: `nvidia-modelopt[onnx]` requires onnxruntime-gpu (and cupy), which
replaces the CPU onnxruntime this toolkit runs on.

    pip install nncf            # only this script needs it
    python -m benchmarks.quantizers runs/int8/fairnas_a.pt runs/int8/scarlet_a.pt runs/demo/export/model.pt
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from nasdeploy.backends.onnxruntime import OrtRunner
from nasdeploy.backends.openvino import OvRunner
from nasdeploy.bench.env import environment
from nasdeploy.bench.timing import time_fn, typical_round
from nasdeploy.data import labelled_batches
from nasdeploy.gate import judge
from nasdeploy.io import write_json
from nasdeploy.onnxgraph import export_onnx
from nasdeploy.quantize import QuantOptions, calibration_images, quantize_onnx
from nasdeploy.zoo import resolve

ROOT = Path(__file__).resolve().parents[1]

ORT_METHODS = {"ort-minmax": QuantOptions(), "ort-entropy": QuantOptions(method="entropy"),
               "ort-percentile": QuantOptions(method="percentile"),
               "ort-minmax-no-depthwise": QuantOptions(exclude=("depthwise",))}


def nncf_quantize(src: Path, dst: Path, batches: list[torch.Tensor]) -> None:
    import nncf
    import onnx

    data = nncf.Dataset([x[None].numpy() for b in batches for x in b], lambda x: {"input": x})
    onnx.save(nncf.quantize(onnx.load(str(src)), data, subset_size=sum(len(b) for b in batches)), str(dst))


def one_model(spec: str, rounds: int, repeats: int) -> dict:
    model = resolve(spec)
    size = model.setting.size
    plain, _ = model.folded()
    work = Path(tempfile.mkdtemp(prefix="quantizers-"))
    fp32 = export_onnx(plain, work / "fp32.onnx", (1, 3, size, size))
    calib = calibration_images(model.setting, None, QuantOptions(images=256))
    graphs, seconds = {"fp32": fp32}, {}
    for name, opt in ORT_METHODS.items():
        t0 = time.perf_counter()
        quantize_onnx(fp32, work / f"{name}.onnx", type(calib)(calib.batches, opt, calib.source))
        graphs[name], seconds[name] = work / f"{name}.onnx", time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        nncf_quantize(fp32, work / "nncf.onnx", calib.batches)
        graphs["nncf"], seconds["nncf"] = work / "nncf.onnx", time.perf_counter() - t0
    except ImportError:
        print("nncf is not installed: pip install nncf (skipping it)")
    held, classes = labelled_batches(None, "test", model.setting, 1000)
    labels = torch.cat([y for _, y in held])
    with torch.no_grad():
        ref = torch.cat([plain(x) for x, _ in held])
    runners = {}
    for name, path in graphs.items():
        runners[(name, "onnxruntime")] = OrtRunner(str(path))
        runners[(name, "openvino")] = OvRunner(path, "fp32" if name == "fp32" else "int8", (1, 1), (3, size, size))
    rows = {}
    for (name, rt), r in runners.items():
        if rt == "onnxruntime":  # one score per graph (the runtimes run the same graph)
            out = torch.cat([torch.cat([r(x[i:i + 1]) for i in range(len(x))]) for x, _ in held])
            rows[name] = {"accuracy": judge(ref, out, labels, classes, 1.0).as_dict(),
                          "quantize_seconds": seconds.get(name)}
    x = held[0][0][:1]
    timers = {k: r.timed(x) for k, r in runners.items()}
    timed = {k: [] for k in runners}
    order = list(runners)
    for i in range(rounds):
        random.Random(i).shuffle(order)
        for k in order:
            timed[k].append(time_fn(timers[k], "cpu", 10, repeats))
    for (name, rt), st in timed.items():
        rows[name][f"{rt}_ms"] = typical_round(st).median
    base = rows["fp32"]["onnxruntime_ms"]
    for r in rows.values():
        r["vs_onnxruntime_fp32"] = {rt: base / r[f"{rt}_ms"] for rt in ("onnxruntime", "openvino")}
    return {"model": spec, "input_size": size, "methods": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "quantizers_cpu.json"))
    args = ap.parse_args()
    res = {"environment": environment("cpu"), "command": " ".join(sys.argv),
           "models": [one_model(m, args.rounds, args.repeats) for m in args.models]}
    write_json(args.json, res)
    for m in res["models"]:
        print(m["model"])
        for name, r in m["methods"].items():
            a = r["accuracy"]
            print(f"  {name:26s} top-1 {a['top1']:6.2f} (fp32 {a['top1_reference']:.2f}) agree {a['agreement']:6.2f}  "
                  f"ORT {r['onnxruntime_ms']:.3f} ms ({r['vs_onnxruntime_fp32']['onnxruntime']:.2f}x)  "
                  f"OV {r['openvino_ms']:.3f} ms ({r['vs_onnxruntime_fp32']['openvino']:.2f}x)")
    print(json.dumps({"written": args.json}))


if __name__ == "__main__":
    main()
