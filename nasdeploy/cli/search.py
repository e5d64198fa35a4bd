"""`nasdeploy search --latency-target 1.2ms ...` (a steady-state evolution kept to the architectures that meet the
target, over the supernet and the latency tables of the candidate engines), `nasdeploy search-worker` (one more
worker on a shared study) and `search --report`."""
from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from rich.console import Console
from rich.table import Table

from ..search import CRITERIA, SearchConfig, SearchInputs, parse_latency, report, search, search_worker
from ..search.finalists import second_round_text


# the command line's defaults are the search's own (SearchConfig), written once
_DEFAULT = {f.name: f.default for f in fields(SearchConfig) if f.default is not MISSING}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="latency-constrained multi-objective architecture search (an evolution kept "
                                       "to the target, as an Optuna sampler)",
                       description="Searches the architectures most accurate within a latency target, evaluating "
                                   "only ones that meet it; estimates come from the search-validation split, never "
                                   "the test split. Killed and rerun with the same command, it continues from the "
                                   "trials in its storage (OUT/search.db, or --storage, which several "
                                   "`nasdeploy search-worker` processes can share).")
    p.add_argument("--latency-target", help="with units: 1.2ms, 850us (not needed with --report)")
    p.add_argument("--space", default=None, help="fairnas | scarlet (default: the supernet's)")
    p.add_argument("--supernet", help="supernet checkpoint from train-supernet")
    p.add_argument("--lut", action="append",
                   help="latency table; give one per candidate engine (repeat the option) to search them all: an "
                        "architecture's latency is that of its fastest engine. Without it one is measured for "
                        "--device/--backend/--batch/--dtype")
    p.add_argument("--data", help="data whose search-validation split scores subnets (default: the supernet's)")
    p.add_argument("--device", default="cpu", help="latency device when measuring a table, and evaluation device")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--backend", default=None)
    p.add_argument("--input-size", type=int, default=None, help="with --accuracy-proxy: image size (default 224)")
    p.add_argument("--objectives", default=",".join(_DEFAULT["objectives"]),
                   help="what the evolution selects by: accuracy (default; the latency target is a hard constraint), "
                        "or accuracy,latency[,params]. The fronts are always over accuracy and latency")
    p.add_argument("--criterion", default=_DEFAULT["criterion"], choices=CRITERIA,
                   help="what estimates are compared by, paired on the same images: top-1 or cross-entropy loss")
    p.add_argument("--evaluations", type=int, default=_DEFAULT["evaluations"],
                   help="architectures evaluated (default %(default)s): the search's budget, shared by every worker "
                        "of a study")
    p.add_argument("--population", type=int, default=_DEFAULT["population"],
                   help="architectures the evolution keeps (default %(default)s); the first ones are drawn near the "
                        "target")
    p.add_argument("--finalists", type=int, default=_DEFAULT["finalists"],
                   help="at most this many of the study's best and its front are timed end to end on every "
                        "candidate engine and scored on the whole search-validation split before the choice "
                        "(default %(default)s)")
    p.add_argument("--race-images", type=int, default=_DEFAULT["race_images"],
                   help="search-validation images the finalists are scored on (default %(default)s; 0: all of "
                        "them)")
    p.add_argument("--race-calib-images", type=int, default=_DEFAULT["race_calib_images"],
                   help="training images each finalist's BN statistics are recalibrated on before its race "
                        "(default %(default)s)")
    p.add_argument("--repeats", type=int, default=_DEFAULT["time_repeats"],
                   help="timed calls per round when the finalists are timed end to end (default %(default)s, as "
                        "bench)")
    p.add_argument("--rounds", type=int, default=_DEFAULT["time_rounds"],
                   help="interleaved rounds, at least, when the finalists are timed end to end (default "
                        "%(default)s, as bench; more, up to three times as many, for a finalist whose bounds "
                        "straddle the target)")
    p.add_argument("--latency-confidence", type=float, default=_DEFAULT["latency_confidence"],
                   help="how sure the measured latency must be to hold the target: a finalist qualifies when the "
                        "upper bound of its median latency at this confidence is under the target, and the chosen "
                        "one is confirmed by fresh rounds (default %(default)s)")
    p.add_argument("--no-second-round", dest="second_round", action="store_false",
                   help="where no finalist holds the target and the latency tables under-predicted them, return the "
                        "fastest finalist instead of timing a second round under the corrected tables")
    p.add_argument("--calib-batches", type=int, default=_DEFAULT["calib_batches"],
                   help="BN recalibration batches per subnet (default %(default)s)")
    p.add_argument("--eval-images", type=int, default=_DEFAULT["eval_images"],
                   help="search-validation images per subnet evaluation (default %(default)s)")
    p.add_argument("--accuracy-proxy", action="store_true",
                   help="no supernet: rank by a MACs proxy instead of accuracy (clearly labelled; for quick runs)")
    _storage_args(p)
    p.add_argument("--report", action="store_true",
                   help="write the outputs of the study in --storage as it stands (no trials run)")
    p.add_argument("--seed", type=int, default=_DEFAULT["seed"])
    p.add_argument("--out", default="runs/search", help="output folder (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_search, outputs={"out": "dir"})

    w = sub.add_parser("search-worker", help="one more worker on a study made by `nasdeploy search --storage URL`",
                       description="Works on the study (its settings are stored in it: supernet, tables, data, target) "
                                   "until its trial budget is complete; start as many as there are devices. A worker "
                                   "killed mid-trial loses nothing: another takes its trial up after two heartbeats.")
    _storage_args(w, required=True)
    w.add_argument("--device", default="cpu", help="where this worker evaluates subnets: cpu, cuda, cuda:N")
    w.add_argument("--no-progress", action="store_true")
    w.set_defaults(func=cmd_worker)


def _storage_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--storage", required=required,
                   help="Optuna storage URL shared by the workers, e.g. postgresql://user@host:5432/db "
                        "(default: OUT/search.db)")
    p.add_argument("--study-name", help="the study in --storage (default: derived from the settings; with "
                                        "search-worker and --report: the storage's only study)")
    p.add_argument("--heartbeat", type=int, default=30,
                   help="seconds between a worker's heartbeats; a trial silent for two is run again (default 30)")


def cmd_search(args: argparse.Namespace) -> int:
    if args.report:
        if not args.storage:
            from ..errors import UsageError

            raise UsageError("--report reads a study: give --storage URL (and --study-name if it holds several)")
        r = report(args.storage, args.study_name, args.out, "cuda" if args.device.startswith("cuda") else "cpu")
        return _print(r, args.out)
    if not args.latency_target:
        from ..errors import UsageError

        raise UsageError("give --latency-target with units (e.g. 1.2ms), or --report with --storage")
    cfg = SearchConfig(target_ms=parse_latency(args.latency_target),
                       objectives=tuple(o.strip() for o in args.objectives.split(",")), population=args.population,
                       evaluations=args.evaluations, finalists=args.finalists, race_images=args.race_images,
                       race_calib_images=args.race_calib_images, time_repeats=args.repeats, time_rounds=args.rounds,
                       seed=args.seed, calib_batches=args.calib_batches,
                       eval_images=args.eval_images, accuracy_proxy=args.accuracy_proxy,
                       device="cuda" if args.device.startswith("cuda") else "cpu", storage=args.storage,
                       study_name=args.study_name, criterion=args.criterion, heartbeat=args.heartbeat,
                       latency_confidence=args.latency_confidence, second_round=args.second_round)
    inp = SearchInputs(space=args.space, supernet=args.supernet, lut=args.lut, data=args.data, device=args.device,
                       batch=args.batch, dtype=args.dtype, backend=args.backend, input_size=args.input_size)
    return _print(search(inp, cfg, args.out, progress=not args.no_progress), args.out)


def cmd_worker(args: argparse.Namespace) -> int:
    s = search_worker(args.storage, args.study_name, args.device, args.heartbeat, progress=not args.no_progress)
    Console().print(f"worker done: {s['trials']} trials, {s['evaluated']} architectures evaluated, "
                    f"{s['reused']} reused from the study, in {s['seconds']:.0f} s")
    return 0


def _print(r, out: str) -> int:
    console = Console(width=200)
    t = Table(title=f"Pareto front of the study ({r.accuracy_label} on the search's evaluation images, latency "
                    f"predicted by the tables; {len(r.candidates)} trials, spread {r.spread:.0%} of \\[fastest "
                    "possible, target])")
    for col in ("", "architecture", "engine", "study top-1", "95% interval", "predicted ms", "params", "MACs (M)"):
        t.add_column(col)

    def ci(v) -> str:
        return f"[{v[0]:.1f}, {v[1]:.1f}]" if v else "-"

    for c in r.front:
        t.add_row("", c.arch, c.engine, f"{c.accuracy:.2f}", ci(c.ci95), f"{c.latency_ms:.3f}", f"{c.params:,}",
                  f"{c.macs / 1e6:.1f}")
    for name, ref in r.references.items():
        acc = f"{ref.accuracy:.2f}" if ref.accuracy is not None else "-"
        t.add_row("ref", name, ref.engine, acc, ci(ref.ci95), f"{ref.latency_ms:.3f}", "", "")
    console.print(t)
    if r.finalists:
        console.print(finalists_table(r))
        second = second_round_text(r.choice)
        if second:
            Console().print(second)
    sp = r.throughput
    if sp.get("evaluated_per_minute"):
        Console().print(f"this worker: {sp['trials']} trials, {sp['evaluated']} architectures evaluated in "
                        f"{sp['seconds']:.0f} s ({sp['evaluated_per_minute']:.1f} per minute)")
    if r.best is None:
        Console().print("[red]no trial met the target[/]: raise --evaluations or the target")
        return 1
    ch = r.chosen
    lat = (ch.latency if ch else None) or {}
    fresh = "its rounds among the finalists and fresh rounds after the choice" if ch and ch.retimed else \
        "its rounds among the finalists"
    bounds = (f" \\[{lat['lower']:.3f}, {lat['upper']:.3f}]" if lat.get("upper") is not None else "")
    target = ch.target_ms if ch else r.settings.get("target_ms")
    Console().print(f"chosen: {r.best.arch} on {r.best.engine}: race top-1 {r.best.accuracy:.2f}% "
                    f"(search-validation), measured {r.best.latency_ms:.3f} ms{bounds} ({fresh}, "
                    f"{_pct(ch.confidence if ch else None)} bounds) against the {target:g} ms target: "
                    f"{_verdict(ch.verdict if ch else None)}")
    Console().print(f"-> {out}/best.toml; fronts and finalists: {out}/pareto.json, {out}/pareto.png")
    for w in sorted({(x.get("fresh") or {}).get("stability", {}).get("warning") for x in
                     r.choice.get("not_confirmed", [])} - {None}):
        Console().print(f"[yellow]{w}[/]")
    return 0


def _pct(c) -> str:
    return f"{c:.0%}" if c is not None else "-"


def _verdict(v: str | None) -> str:
    return {"meets": "[green]meets[/]", "misses": "[red]misses[/]", "undecided": "[yellow]undecided[/]"}.get(
        v or "", "-")


def finalists_table(r) -> Table:
    """Every finalist with the figures the choice was made on, each labelled."""
    conf = _pct(r.chosen.confidence if r.chosen else r.choice.get("confidence"))
    t = Table(title=f"Finalists: timed end to end on this machine (median of round medians, {conf} upper bound) "
                    "and raced on the whole search-validation split; the choice: the best race top-1 whose upper "
                    "bound is under the target, confirmed by fresh rounds")
    for col in ("", "architecture", "engine", "predicted ms", "measured ms", "upper ms", "rounds", "verdict",
                "race top-1", "study top-1"):
        t.add_column(col, justify="left" if col in ("", "architecture", "engine", "verdict") else "right")
    chosen = r.best.arch if r.best else None
    for f in sorted(r.finalists, key=lambda f: f.latency_ms):
        t.add_row("*" if f.arch == chosen else "", f.arch, f.engine, _ms(f.predicted), _ms(f.measured),
                  _ms(f.upper_ms), str(f.rounds or "-"), _verdict(f.verdict), _num(f.race_top1), _num(f.study_top1))
    return t


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _num(v) -> str:
    return "-" if v is None else f"{v:.2f}"
