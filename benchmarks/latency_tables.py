"""How well a per-block latency table predicts whole networks on this CPU, and why a plain sum misses.

For each setting (space, input size, engine) it measures the table (every block alone, by ONNX Runtime or OpenVINO,
as `nasdeploy latency-table` does), then `latency-table validate --archs N`: N architectures spread evenly over the
table's range of sums plus the fastest and slowest, timed end to end by the clock `bench` uses, and predicted by
leave-one-out calibrations. It also records what explains the misses:

* the runtime's fixed cost of one call (an identity graph timed the same way at the stem's input shape): every
  entry carries it once, a network once in all;
* the calibration's terms: the sum's scale, the per-block term, and the memory term (the size beyond which a
  network's weights no longer stay in the CPU's caches between calls, as a block's alone do).

    python -m benchmarks.latency_tables --json benchmarks/results/latency_tables_<isa>.json
    python -m benchmarks.latency_tables --settings scarlet-28-fp32 --archs 30
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# (space, input size, backend, precision): the settings the README quotes
SETTINGS = {
    "scarlet-28-fp32": ("scarlet", 28, "onnxruntime", "fp32"),
    "fairnas-224-fp32": ("fairnas", 224, "onnxruntime", "fp32"),
    "fairnas-224-int8": ("fairnas", 224, "onnxruntime", "int8"),
    "scarlet-28-int8": ("scarlet", 28, "onnxruntime", "int8"),
    "fairnas-224-openvino-int8": ("fairnas", 224, "openvino", "int8"),
}


def call_cost_ms(table, clock) -> float:
    """The runtime's cost of one call that does (almost) nothing, at the table's input shape."""
    import torch
    from torch import nn

    from nasdeploy.latency.measure import runner_for, settings_of

    class Scale(nn.Module):
        def forward(self, x):
            return x * 1.0

    shape = (table.batch, 3, table.input_size, table.input_size)
    r = runner_for(Scale(), shape, settings_of(table, clock))
    return min(s.median for s in clock.time_all([r.timed(torch.randn(*shape))], table.device)[0])


def run_setting(name: str, out_dir: Path, archs: int, seed: int) -> dict:
    from nasdeploy.bench.timing import Clock
    from nasdeploy.data import InputSetting
    from nasdeploy.latency import LatencyTable, Settings, measure_table, validate_table

    space, size, backend, dtype = SETTINGS[name]
    setting = InputSetting.default_for(size, 10 if size < 64 else 1000)
    path = out_dir / f"lut_{name}.json"
    t0 = time.perf_counter()
    measure_table(Settings.for_input(space, "cpu", backend, 1, dtype, setting), path, progress=False)
    measured_s = time.perf_counter() - t0
    table = LatencyTable.load(path)
    t0 = time.perf_counter()
    v = validate_table(table, archs, seed, progress=False)
    m = v.metrics()
    table = LatencyTable.load(path)
    fast, _ = table.fastest(False)
    return {"setting": name, "space": space, "input_size": size, "engine": f"{backend}:{dtype}",
            "table": str(path), "entries": table.entries(), "table_seconds": round(measured_s, 1),
            "validation_seconds": round(time.perf_counter() - t0, 1), "metrics": m,
            "call_cost_ms": call_cost_ms(table, Clock()), "blocks_of_fastest": sum(not c.skip for c in fast),
            "archs": v.archs, "raw_ms": v.raw, "measured_ms": v.measured, "calibrated_loo_ms": v.calibrated_loo,
            "params": v.params, "blocks": v.blocks, "round_medians": v.round_medians}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="scarlet-28-fp32,fairnas-224-fp32,fairnas-224-int8",
                    help=f"comma list of: {', '.join(SETTINGS)}")
    ap.add_argument("--archs", type=int, default=30, help="architectures validated per table (plus 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/latency_tables", help="folder for the tables")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from nasdeploy.bench.env import environment
    from nasdeploy.isa import this_cpu

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.settings.split(","):
        r = run_setting(name, out, args.archs, args.seed)
        rows.append(r)
        m = r["metrics"]
        cal = m["calibration"]
        print(f"{name}: {m['n']} archs, measured {min(r['measured_ms']):.3f}-{max(r['measured_ms']):.3f} ms | raw "
              f"MAPE {m['raw']['mape_pct']:.1f}% tau {m['raw']['kendall_tau']:.3f} | calibrated (LOO) MAPE "
              f"{m['calibrated']['mape_pct']:.1f}% max {m['calibrated']['max_err_pct']:.1f}% tau "
              f"{m['calibrated']['kendall_tau']:.3f} | a {cal['a']:.3f} c {cal['c'] * 1e3:+.1f} us/block d "
              f"{cal['d'] * 1e6:.3f} ms/M params beyond {(cal['cache_params'] or 0) / 1e6:.2f}M b {cal['b']:+.3f} ms | "
              f"call cost {r['call_cost_ms'] * 1e3:.1f} us | round spread {m.get('round_spread_pct_median', 0):.1f}%",
              flush=True)
    if args.json:
        from nasdeploy.io import provenance, write_json

        write_json(args.json, {"command": "python -m benchmarks.latency_tables " + " ".join(argv or sys.argv[1:]),
                               "cpu": this_cpu().as_dict(), "environment": environment("cpu"), "rows": rows,
                               "provenance": provenance()})
    json.dumps(rows)  # fail here, not after a long run, if a row is not JSON-able


if __name__ == "__main__":
    main()
