"""`nasdeploy latency-table` (measure) and `nasdeploy latency-table validate LUT.json`."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import UsageError
from ..io import write_json
from ..latency import LatencyTable, Settings, measure_table, validate_table
from ..backends import DTYPES, engine_help, table_backend
from ..data import InputSetting


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency-table", help="measure a per-block latency table, or validate one end to end",
                       description="Measure: nasdeploy latency-table --space S --device D --batch N --dtype T "
                                   "--backend B --out LUT.json.  Validate: nasdeploy latency-table validate LUT.json "
                                   "--archs N.  Killed and rerun, measuring continues from the entries it has.")
    p.add_argument("what", nargs="*", help="nothing (measure) or: validate LUT.json")
    p.add_argument("--space", default="scarlet")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--backend", default=None,
                   help=f"default: {table_backend('cpu')} on the CPU, {table_backend('cuda')} on CUDA (CUDA graphs). "
                        f"Any of: {engine_help()}")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="fp32", help=f"{' | '.join(DTYPES)} (what the backend runs on --device)")
    p.add_argument("--input-size", type=int, default=224,
                   help="image size (28 for the built-in data set; under 64 px the small-input stride plan, as "
                        "train-supernet uses for such images)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier width (default 1000, 10 at 28 px)")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--out", default="LUT.json")
    p.add_argument("--archs", type=int, default=30,
                   help="validate: architectures spread evenly over the table's range, timed end to end (plus the "
                        "fastest and slowest possible; default 30)")
    p.add_argument("--rounds", type=int, default=None,
                   help="CPU: rounds per measurement, the fastest counts (default 5; validate: interleaved over all "
                        "architectures, as bench does)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_latency, outputs={"out": "file"})


def settings_from(args: argparse.Namespace) -> Settings:
    backend = args.backend or table_backend(args.device)
    setting = InputSetting.default_for(args.input_size, args.num_classes)
    return Settings.for_input(args.space, args.device, backend, args.batch, args.dtype, setting, args.warmup,
                              args.repeats, 5 if args.rounds is None else args.rounds)


def cmd_latency(args: argparse.Namespace) -> int:
    if not args.what:
        t = measure_table(settings_from(args), args.out, progress=not args.no_progress)
        Console().print(f"[bold]{t.entries()} entries[/] ({'complete' if t.complete else 'incomplete'}) -> {args.out}; "
                        f"fastest architecture predicted {t.fastest(False)[1]:.3f} ms")
        return 0
    if args.what[0] != "validate" or len(args.what) != 2:
        raise UsageError("use `nasdeploy latency-table [options]` to measure or "
                         "`nasdeploy latency-table validate LUT.json --archs N`")
    return validate_cmd(Path(args.what[1]), args.archs, args.seed, not args.no_progress,
                        5 if args.rounds is None else args.rounds)


def validate_cmd(lut: Path, archs: int, seed: int, progress: bool, rounds: int = 5) -> int:
    from ..plots import latency_scatter

    table = LatencyTable.load(lut)
    v = validate_table(table, archs, seed, progress, rounds=rounds)
    m = v.metrics()
    stem = lut.with_suffix("")
    write_json(f"{stem}.validation.json", {"table": str(lut), "setting": table.setting(),
                                            "device_name": table.device_name, "metrics": m,
                                            "archs": v.archs, "raw_ms": v.raw, "calibrated_loo_ms": v.calibrated_loo,
                                            "measured_ms": v.measured})
    latency_scatter(f"{stem}.validation.png", v.measured, v.raw, v.calibrated_loo,
                    f"{table.describe()}: {m['n']} random archs")
    t = Table(title=f"latency prediction vs measurement: {table.describe()} ({m['n']} architectures)")
    for col in ("predictor", "MAPE (%)", "max error (%)", "Kendall tau"):
        t.add_column(col, justify="right" if col != "predictor" else "left")
    for name in ("raw", "calibrated"):
        r = m[name]
        t.add_row(name if name == "raw" else "calibrated (LOO)", f"{r['mape_pct']:.2f}", f"{r['max_err_pct']:.2f}",
                  f"{r['kendall_tau']:.3f}")
    Console().print(t)
    Console().print(f"calibration a={m['calibration']['a']:.4f} b={m['calibration']['b']:.4f} ms stored in {lut}; "
                    f"results: {stem}.validation.json, {stem}.validation.png")
    return 0
