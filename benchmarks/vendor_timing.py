"""nasdeploy's batch-1 medians beside the vendors' own timers, for the same files; and each engine's multiply-adds
per second against what the CPU's cores can do at that precision.

For one export folder (FairNAS-A by default: ONNX Runtime fp32 and INT8, OpenVINO INT8 and fp32), in ``--repeats``
passes, one tool at a time with nothing else running:

* ``nasdeploy bench EXPORT --batch 1`` (its clock: warm-up, 50 calls per round, interleaved rounds, fastest round);
* ONNX Runtime's perf loop in Python (``onnxruntime_perf_test`` is not shipped in the wheel): a session with the
  options nasdeploy's runner sets (all graph optimisations, intra-op threads = the usable cores, one inter-op
  thread), 10 warm-up runs, then ``--iterations`` runs, P50;
* OpenVINO's ``benchmark_app -hint latency -niter N -infer_precision f32`` on the same ONNX file, its reported
  median (and, for information, at its default precision, which is bf16 on a CPU with bf16 instructions).

Each tool's figure is its fastest pass (background load only adds time). Because this kind of machine changes
speed from minute to minute, each vendor tool is also run back to back with one round of nasdeploy's timer on the
same file (same calls, alternating which goes first), and the median of those paired ratios is the agreement. Weights are the zoo's architecture with
random weights: the work, and so the time, does not depend on their values.

Peak multiply-adds per second = usable cores x clock x MACs per cycle per core for the precision, with the clock
read from /proc/cpuinfo (a VM's reported clock, not a measured boost) and the MACs per cycle taken from the
instruction set (``PEAK_MACS_PER_CYCLE``); both are recorded beside the figure. The reported clock is not what
the cores run at (a large float32 GEMM reaches more than the nominal fp32 peak), so each engine's ceiling is also
measured: its rate on a stack of 1x1 convolutions (``ceilings``), the kind of layer that does most of the work. Then
each engine's per-layer profile (``benchmarks.profiles``) says where its time goes and how fast each kind of layer
runs against that ceiling.

    python -m benchmarks.vendor_timing --json benchmarks/results/vendor_timing_vnni.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# multiply-adds per cycle per core: fp32 FMA lanes x FMA pipes; INT8: VNNI's 4 MACs per 32-bit lane. AMD Zen 4 runs
# AVX-512 on two 256-bit FMA pipes (16 fp32 FMAs a cycle) and one 512-bit VPDPBUSD a cycle (64 INT8 MACs); without
# VNNI, INT8 goes through VPMADDUBSW + VPMADDWD + VPADDD (about 32 MACs a cycle on two 256-bit pipes)
PEAK_MACS_PER_CYCLE = {("vnni", "fp32"): 16, ("vnni", "int8"): 64, ("no-vnni", "fp32"): 16, ("no-vnni", "int8"): 32}
FILES = {"onnxruntime:fp32": "model.onnx", "onnxruntime:int8": "model.int8.onnx",
         "openvino:int8": "model.int8-nncf.onnx", "openvino:fp32": "model.onnx"}


def export(model: str, out: Path) -> Path:
    from nasdeploy.export.api import ExportOptions, export_model

    if (out / "manifest.json").exists():
        return out
    engines = [tuple(e.split(":")) for e in FILES]
    export_model(model, out, opt=ExportOptions(engines=engines, parity_images=16, gate_images=200,
                                               force_accuracy=True))
    return out


def nasdeploy_medians(folder: Path) -> dict[str, float]:
    js = folder / "bench_b1.json"
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "bench", str(folder), "--device", "cpu", "--batch", "1",
                    "--json", str(js), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    rows = json.loads(js.read_text())["rows"]
    return {f"{r['backend']}:{r['dtype']}": r["latency"]["median"] for r in rows}


def ort_loop(path: Path, size: int, iterations: int) -> float:
    import numpy as np

    from nasdeploy.backends.onnxruntime import ort_session

    sess = ort_session(path)  # nasdeploy's session options; the loop is the perf test's, not nasdeploy's clock
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    for _ in range(10):
        sess.run(None, {name: x})
    ms = []
    for _ in range(iterations):
        t = time.perf_counter()
        sess.run(None, {name: x})
        ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms)


def paired(folder: Path, engine: str, size: int, iterations: int, ours_first: bool) -> tuple[float, float]:
    """(nasdeploy's median, the vendor tool's median) for one engine's file, measured back to back: nasdeploy's
    timer is one round of its clock on the export's runner (10 warm-up calls, ``iterations`` timed, median)."""
    import torch

    from nasdeploy.bench.timing import time_runner
    from nasdeploy.export.manifest import open_export

    def ours() -> float:
        runner = open_export(folder).runner(engine, "cpu", (1, 1))
        return time_runner(runner, torch.randn(1, 3, size, size), "cpu", 10, iterations).median

    def theirs() -> float:
        if engine.startswith("onnxruntime"):
            return ort_loop(folder / FILES[engine], size, iterations)
        return benchmark_app(folder / FILES[engine], size, iterations)

    if ours_first:
        a = ours()
        return a, theirs()
    b = theirs()
    return ours(), b


def benchmark_app(path: Path, size: int, iterations: int, precision: str | None = "f32") -> float:
    """benchmark_app's median; ``precision`` its -infer_precision (None: its default, which is bf16 on a CPU with
    bf16 instructions even for an "fp32" model; nasdeploy's fp32 and INT8 engines run their float layers in f32)."""
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    extra = ["-infer_precision", precision] if precision else []
    r = subprocess.run([exe, "-m", str(path), "-d", "CPU", "-hint", "latency", "-niter", str(iterations),
                        "-shape", f"[1,3,{size},{size}]", *extra], capture_output=True, text=True, check=True)
    m = re.search(r"Median:\s+([0-9.]+)\s*ms", r.stdout)
    if not m:
        raise RuntimeError(f"benchmark_app printed no median:\n{r.stdout[-2000:]}")
    return float(m.group(1))


def ceilings(channels: int = 256, side: int = 28, depth: int = 4) -> dict[str, float]:
    """What each engine reaches on the kind of layer that does most of the work: ``depth`` 1x1 convolutions (with
    ReLU) of ``channels`` to ``channels`` on a ``side`` x ``side`` map, batch 1 (205 M multiply-adds at the
    defaults, activations and weights within the caches), timed by nasdeploy's clock. GMAC/s per engine: a measured
    ceiling for that engine on this CPU, beside the nominal peak (of shapes tried, 256 channels at 28 px gave each
    engine its highest rate; 56 px maps spill the caches and lose a quarter of the INT8 rate)."""
    import torch

    from nasdeploy.backends import RunnerSpec, make_runner
    from nasdeploy.bench.timing import Clock
    from nasdeploy.quantize import random_calibration

    layers: list[torch.nn.Module] = []
    for _ in range(depth):
        layers += [torch.nn.Conv2d(channels, channels, 1), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers).eval()
    shape = (1, channels, side, side)
    x = torch.randn(shape)
    engines = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "int8"), ("openvino", "fp32")]
    runners = [make_runner(RunnerSpec(b, shape, "cpu", d), net, calibration=random_calibration(shape)) for b, d in engines]
    rounds = Clock(repeats=50).time_all([r.timed(x) for r in runners])
    macs = channels * channels * side * side * depth
    return {f"{b}:{d}": macs / (min(st.median for st in rs) / 1e3) / 1e9 for (b, d), rs in zip(engines, rounds)}


def where_time_goes(folder: Path, size: int, passes: int = 3) -> dict:
    """Each engine's per-layer profile by kind of layer (the quietest of ``passes``), the GMAC/s each kind reaches,
    and the measured ceilings."""
    from nasdeploy.backends.base import runtime_threads

    from .profiles import graph_families, profile

    kinds, macs = graph_families(folder / FILES["onnxruntime:fp32"])
    profiles: dict[str, dict[str, float]] = {}
    for _ in range(passes):  # the engines in turn; per engine the pass with the least total time (a quiet one)
        for e, f in FILES.items():
            prof = profile(e, folder / f, size, kinds, runtime_threads())
            if e not in profiles or sum(prof.values()) < sum(profiles[e].values()):
                profiles[e] = prof
    rates = {e: {k: macs[k] / (ms / 1e3) / 1e9 for k, ms in prof.items() if macs.get(k)} for e, prof in
             profiles.items()}
    return {"macs_by_kind": macs, "profile_ms": profiles, "gmacs_by_kind": rates, "ceiling_gmacs": ceilings()}


def cpu_clock_ghz() -> float | None:
    try:
        mhz = [float(v) for v in re.findall(r"cpu MHz\s*:\s*([0-9.]+)", Path("/proc/cpuinfo").read_text())]
    except OSError:
        return None
    return max(mhz) / 1e3 if mhz else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fairnas_a")
    ap.add_argument("--out", default="runs/vendor_timing")
    ap.add_argument("--repeats", type=int, default=5, help="passes of every tool; each tool's fastest counts")
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from nasdeploy.bench.env import environment
    from nasdeploy.io import provenance
    from nasdeploy.isa import this_cpu
    from nasdeploy.zoo import model_info

    size = 224
    folder = export(args.model, Path(args.out) / args.model)
    passes: dict[str, dict[str, list[float]]] = {"nasdeploy": {}, "onnxruntime_perf_loop": {}, "benchmark_app": {},
                                                 "benchmark_app_default_precision": {}}
    # on a shared VM the machine's speed changes from minute to minute: each tool is also timed back to back with
    # nasdeploy's timer on the same file (one round each, the same number of calls, in alternating order), and
    # the ratio of each such pair says whether the timers agree whatever the machine was doing
    pairs: dict[str, list[tuple[float, float]]] = {e: [] for e in FILES}
    for k in range(args.repeats):
        for e, ms in nasdeploy_medians(folder).items():
            passes["nasdeploy"].setdefault(e, []).append(ms)
        for e in FILES:
            pairs[e].append(paired(folder, e, size, args.iterations, ours_first=k % 2 == 0))
            tool = "onnxruntime_perf_loop" if e.startswith("onnxruntime") else "benchmark_app"
            passes[tool].setdefault(e, []).append(pairs[e][-1][1])
        for e in ("openvino:int8", "openvino:fp32"):
            passes["benchmark_app_default_precision"].setdefault(e, []).append(
                benchmark_app(folder / FILES[e], size, args.iterations, None))
        latest = {t: {e: round(v[-1], 3) for e, v in d.items()} for t, d in passes.items()}
        print(f"pass {k + 1}/{args.repeats}", latest, {e: [round(v, 3) for v in p[-1]] for e, p in pairs.items()},
              flush=True)

    cpu = this_cpu()
    cores = len(os.sched_getaffinity(0))
    ghz = cpu_clock_ghz()
    macs = model_info(args.model)["macs"]
    rows = []
    for e in FILES:
        ours = min(passes["nasdeploy"][e])
        tool = "onnxruntime_perf_loop" if e.startswith("onnxruntime") else "benchmark_app"
        theirs = min(passes[tool][e])
        prec = e.split(":")[1]
        peak = cores * ghz * 1e9 * PEAK_MACS_PER_CYCLE[(cpu.int8_class, prec)] if ghz else None
        achieved = macs / (ours / 1e3)
        default = passes["benchmark_app_default_precision"].get(e)
        ratios = sorted(o / t for o, t in pairs[e])
        rows.append({"engine": e, "file": FILES[e], "nasdeploy_ms": ours, "vendor_tool": tool, "vendor_ms": theirs,
                     "paired_ratio_median": statistics.median(ratios), "paired_ratio_range": [ratios[0], ratios[-1]],
                     "pairs_ms": pairs[e],
                     "benchmark_app_default_precision_ms": min(default) if default else None,
                     "nasdeploy_vs_vendor": ours / theirs, "macs": macs, "achieved_gmacs": achieved / 1e9,
                     "peak_gmacs": peak / 1e9 if peak else None,
                     "share_of_peak": achieved / peak if peak else None})
    ref = next(r["nasdeploy_ms"] for r in rows if r["engine"] == "onnxruntime:fp32")
    for r in rows:
        r["speedup_vs_onnxruntime_fp32"] = ref / r["nasdeploy_ms"]
    result = {"command": " ".join(["python -m benchmarks.vendor_timing", *sys.argv[1:]]), "model": args.model,
              "cpu": {"description": cpu.describe(), "int8_class": cpu.int8_class, "cores": cores,
                      "clock_ghz_reported": ghz, "peak_macs_per_cycle": {f"{k[0]}:{k[1]}": v for k, v in
                                                                         PEAK_MACS_PER_CYCLE.items()}},
              "passes": passes, "rows": rows,
              **where_time_goes(folder, size),
              "environment": environment("cpu"), "provenance": provenance()}
    for r in rows:
        print(f"{r['engine']:18s} nasdeploy {r['nasdeploy_ms']:.3f} ms  {r['vendor_tool']} {r['vendor_ms']:.3f} ms  "
              f"ratio {r['nasdeploy_vs_vendor']:.3f} (paired {r['paired_ratio_median']:.3f} "
              f"[{r['paired_ratio_range'][0]:.3f}, {r['paired_ratio_range'][1]:.3f}])  "
              f"x{r['speedup_vs_onnxruntime_fp32']:.2f} ORT fp32  "
              f"{r['achieved_gmacs']:.1f} GMAC/s of {r['peak_gmacs'] or float('nan'):.0f}")
    for e, prof in result["profile_ms"].items():
        print(f"{e:18s} ms by kind:", {k: round(v, 3) for k, v in prof.items()})
    print("GMAC/s of a 1x1 convolution (measured ceiling):", {k: round(v) for k, v in result["ceiling_gmacs"].items()})
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
