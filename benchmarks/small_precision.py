"""Does a reduced precision pay on a small network? Every CPU engine at 28 px and batch 1, at one thread and at the
usable cores, against plain ONNX Runtime fp32 (usable cores) in the same run, with where each engine's time goes.

The networks are ``--archs`` architectures of the SCARLET space drawn at random (seeded) in the built-in setting
(28 px, the built-in stride plan, 10 classes: what `make demo` searches and ships), folded, random weights (the
time does not depend on their values). Engines: ONNX Runtime fp32 and INT8 (its quantizer's Q/DQ graph),
OpenVINO fp32, bf16 (on CPUs with bf16 instructions) and INT8 (NNCF's graph), each at 1 thread and at the usable
cores; all rows of an architecture are timed by nasdeploy's clock together. Then, for the first architecture,
each engine's per-layer profile by kind of layer at each thread count (``benchmarks.profiles``).

    python -m benchmarks.small_precision --json benchmarks/results/small_precision_vnni.json
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

SIZE = 28


def engines(bf16: bool) -> list[tuple[str, str]]:
    out = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")]
    return out + ([("openvino", "bf16")] if bf16 else [])


def graphs(plain, work: Path, tag: str) -> dict[str, Path]:
    """The float32 graph and both INT8 graphs of a folded network (min/max ranges from random inputs: latency only)."""
    from nasdeploy.onnxgraph import export_onnx
    from nasdeploy.quantize import QuantOptions, quantize_onnx, quantize_onnx_nncf, random_calibration

    fp32 = export_onnx(plain, work / f"{tag}.onnx", (1, 3, SIZE, SIZE))
    calib = random_calibration((1, 3, SIZE, SIZE), 16, options=QuantOptions(method="minmax", images=16))
    quantize_onnx(fp32, work / f"{tag}.ort-int8.onnx", calib)
    quantize_onnx_nncf(fp32, work / f"{tag}.nncf-int8.onnx", calib, bias_correction=False)
    return {"fp32": fp32, "onnxruntime:int8": work / f"{tag}.ort-int8.onnx",
            "openvino:int8": work / f"{tag}.nncf-int8.onnx"}


def summarize(results: list[dict], engine_names: list[str], threads: list[int], cores: int) -> dict:
    """Per engine and thread count, over the architectures: the geometric mean (and range) of the ratio of fastest
    rounds to ONNX Runtime fp32 at ``cores`` threads, and, round by round (rows of a round ran together, so a slow
    spell of the machine touches both), the geometric mean of the per-round median ratio and the rounds it won."""
    out = {}
    for e in engine_names:
        for t in threads:
            best, per_round, won, n = [], [], 0, 0
            for a in results:
                row = next(r for r in a["rows"] if r["engine"] == e and r["threads"] == t)
                ref = next(r for r in a["rows"] if r["engine"] == "onnxruntime:fp32" and r["threads"] == cores)
                best.append(row["vs_onnxruntime_fp32"])
                pairs = list(zip(row["round_medians"], ref["round_medians"]))
                per_round.append(statistics.median(b / x for x, b in pairs))
                won += sum(x < b for x, b in pairs)
                n += len(pairs)
            out[f"{e} {t}t"] = {"geomean_vs_onnxruntime_fp32": statistics.geometric_mean(best), "min": min(best),
                                "max": max(best), "geomean_per_round_ratio": statistics.geometric_mean(per_round),
                                "rounds_faster": won, "rounds": n}
    return out


def runner(backend: str, dtype: str, files: dict[str, Path], threads: int):
    from nasdeploy.backends.onnxruntime import OrtRunner
    from nasdeploy.backends.openvino import OvRunner

    path = files.get(f"{backend}:{dtype}", files["fp32"])
    if backend == "onnxruntime":
        return OrtRunner(str(path), threads=threads)
    return OvRunner(path, dtype, (1, 1), (3, SIZE, SIZE), threads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=100, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from nasdeploy.backends.base import usable_cores
    from nasdeploy.backends.openvino import cpu_capabilities
    from nasdeploy.bench.env import environment
    from nasdeploy.bench.timing import Clock
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.fold import fold
    from nasdeploy.io import provenance
    from nasdeploy.isa import this_cpu
    from nasdeploy.nas.net import Network, count_macs
    from nasdeploy.nas.space import get_space
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    from .profiles import graph_families, profile

    cores = usable_cores()
    threads = sorted({1, cores})
    kinds_of_engine = engines("BF16" in cpu_capabilities())
    clock = Clock(repeats=args.repeats, rounds=args.rounds)
    space = get_space("scarlet")
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    x = torch.randn(1, 3, SIZE, SIZE)
    results, profiles = [], {}
    with tempfile.TemporaryDirectory(prefix="nasdeploy-small-") as tmp:
        for i, arch in enumerate(archs):
            net = Network(arch, SPACE_FLAVOUR["scarlet"], BUILTIN_SETTING.num_classes,
                          list(BUILTIN_SETTING.stride_plan)).eval()
            plain, _ = fold(net, check=False)
            files = graphs(plain, Path(tmp), f"a{i}")
            keys = [(b, d, t) for b, d in kinds_of_engine for t in threads]
            runners = [runner(b, d, files, t) for b, d, t in keys]
            rounds = clock.time_all([r.timed(x) for r in runners])
            best = {k: min(st.median for st in rs) for k, rs in zip(keys, rounds)}
            ref = best[("onnxruntime", "fp32", cores)]
            rows = [{"engine": f"{b}:{d}", "threads": t, "ms": ms, "vs_onnxruntime_fp32": ref / ms,
                     "rounds": len(rs), "round_medians": [st.median for st in rs]}
                    for (b, d, t), ms, rs in zip(keys, best.values(), rounds)]
            results.append({"arch": str(arch), "macs": count_macs(plain, SIZE), "rows": rows})
            print(f"arch {i + 1}/{len(archs)} {arch}  ({results[-1]['macs'] / 1e6:.1f} M MACs)")
            for r in sorted(rows, key=lambda r: r["ms"]):
                print(f"  {r['engine']:18s} {r['threads']} thread(s) {r['ms']:.3f} ms  x{r['vs_onnxruntime_fp32']:.2f}"
                      f"  (round medians spread {statistics.pstdev(r['round_medians']) / r['ms']:.0%})", flush=True)
            if i == 0:
                kinds, macs = graph_families(files["fp32"])
                for b, d in kinds_of_engine:
                    for t in threads:
                        path = files.get(f"{b}:{d}", files["fp32"])
                        profiles[f"{b}:{d} {t}t"] = profile(f"{b}:{d}", path, SIZE, kinds, t)
                profiles["macs_by_kind"] = macs
                for k, v in profiles.items():
                    print(f"  {k:24s}", {kk: round(vv, 4) if isinstance(vv, float) else vv for kk, vv in v.items()})
    summary = summarize(results, [f"{b}:{d}" for b, d in kinds_of_engine], threads, cores)
    print("over the architectures, against ONNX Runtime fp32 at", cores, "threads: geometric mean of the fastest "
          "rounds' ratio [range], of the per-round ratios, rounds faster")
    for k, v in sorted(summary.items(), key=lambda kv: -kv[1]["geomean_vs_onnxruntime_fp32"]):
        print(f"  {k:26s} x{v['geomean_vs_onnxruntime_fp32']:.2f} [{v['min']:.2f}, {v['max']:.2f}]  per round "
              f"x{v['geomean_per_round_ratio']:.2f}  faster in {v['rounds_faster']}/{v['rounds']} rounds")
    out = {"command": " ".join(["python -m benchmarks.small_precision", *sys.argv[1:]]),
           "cpu": this_cpu().describe(), "int8_class": this_cpu().int8_class, "cores": cores, "results": results,
           "summary": summary, "profile_ms_first_arch": profiles, "environment": environment("cpu"),
           "provenance": provenance()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
