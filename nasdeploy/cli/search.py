"""`nasdeploy search --latency-target 1.2ms ...`: NSGA-II over the supernet and a latency table."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..pareto import overlaps
from ..search import SearchConfig, parse_latency
from ..search_job import SearchInputs, search


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="latency-constrained multi-objective architecture search (NSGA-II, Optuna)",
                       description="Searches architectures most accurate within a latency target. Killed and rerun "
                                   "with the same command, it continues from the trials stored in OUT/search.db.")
    p.add_argument("--latency-target", required=True, help="with units: 1.2ms, 850us")
    p.add_argument("--space", default=None, help="fairnas | scarlet (default: the supernet's)")
    p.add_argument("--supernet", help="supernet checkpoint from train-supernet")
    p.add_argument("--lut", help="latency table; without it one is measured for --device/--batch/--dtype")
    p.add_argument("--data", help="evaluation data (default: the supernet's training data)")
    p.add_argument("--device", default="cpu", help="latency device when measuring a table, and evaluation device")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--backend", default=None)
    p.add_argument("--input-size", type=int, default=None, help="with --accuracy-proxy: image size (default 224)")
    p.add_argument("--objectives", default="accuracy,latency", help="accuracy,latency[,params]")
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches per subnet")
    p.add_argument("--eval-images", type=int, default=2000,
                   help="held-out images per subnet evaluation (default 2000: a 95%% interval of about +-2 points)")
    p.add_argument("--accuracy-proxy", action="store_true",
                   help="no supernet: rank by a MACs proxy instead of accuracy (clearly labelled; for quick runs)")
    p.add_argument("--storage", help="Optuna storage URL shared by several workers (default: OUT/search.db)")
    p.add_argument("--study-name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/search", help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    cfg = SearchConfig(parse_latency(args.latency_target), tuple(o.strip() for o in args.objectives.split(",")),
                       args.population, args.generations, args.seed, args.calib_batches, 64, args.eval_images,
                       args.accuracy_proxy, "cuda" if args.device.startswith("cuda") else "cpu", args.storage,
                       args.study_name)
    inp = SearchInputs(args.space, args.supernet, args.lut, args.data, args.device, args.batch, args.dtype,
                       args.backend, args.input_size)
    r = search(inp, cfg, args.out, progress=not args.no_progress)
    t = Table(title=f"Pareto front under {cfg.target_ms:g} ms ({r.accuracy_label}; {len(r.candidates)} trials)")
    for col in ("", "architecture", "accuracy", "95% interval", "latency (ms)", "params", "MACs (M)"):
        t.add_column(col)

    def ci(v) -> str:
        return f"[{v[0]:.1f}, {v[1]:.1f}]" if v else "-"

    for c in r.front:
        mark = "*" if r.best and c.arch == r.best.arch else ""
        t.add_row(mark, c.arch, f"{c.accuracy:.2f}", ci(c.ci95), f"{c.latency_ms:.3f}", f"{c.params:,}",
                  f"{c.macs / 1e6:.1f}")
    for name, ref in r.references.items():
        acc = f"{ref['accuracy']:.2f}" if ref["accuracy"] is not None else "-"
        t.add_row("ref", name, acc, ci(ref.get("ci95")), f"{ref['latency_ms']:.3f}", "", "")
    Console(width=200).print(t)
    sp = r.throughput
    if sp.get("evaluated_per_minute"):
        Console().print(f"{sp['trials']} trials, {sp['evaluated']} architectures evaluated in {sp['seconds']:.0f} s: "
                        f"{sp['evaluated_per_minute']:.1f} per minute (BN recalibration on {cfg.calib_batches} x "
                        f"{cfg.calib_batch_size} images, top-1 on {cfg.eval_images})")
    if r.best is None:
        Console().print(f"[red]no trial met {cfg.target_ms:g} ms[/]: raise --generations or the target")
        return 1
    if r.best.ci95:
        tied = [c for c in r.front if c.arch != r.best.arch and overlaps(c.ci95, r.best.ci95)]
        if tied:
            Console().print(f"{len(tied)} other front architecture(s) lie within the chosen one's 95% interval: "
                            "their accuracy differences are not established at this evaluation size")
    Console().print(f"chosen: {r.best.arch} ({r.best.accuracy:.2f}, {r.best.latency_ms:.3f} ms) -> "
                    f"{args.out}/best.toml; front: {args.out}/pareto.json, {args.out}/pareto.png")
    return 0
