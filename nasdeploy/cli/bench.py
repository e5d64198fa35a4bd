"""`nasdeploy bench` (speed per backend) and `nasdeploy verify` (accuracy against the reference numbers)."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..backends import engine_help
from ..io import write_json
from .quant_args import add_gate_args, add_quant_args, quant_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput and latency per engine and batch against PyTorch eager fp32",
                       description="A model (zoo name, card, checkpoint): every backend runs the same folded model, "
                                   "built for this run. An export folder: its own engines, exactly its files (hashes "
                                   "checked), which is what ships. The baseline is the model in PyTorch eager fp32, "
                                   "measured in the same run. TensorRT is not exercised by nasdeploy's CI, which has "
                                   "no GPU.")
    p.add_argument("models", nargs="*",
                   help="zoo names, cards, checkpoints or export folders (default: every zoo model on the CPU; "
                        "fairnas_a, scarlet_a and fairnas_a_se on CUDA, --all for every model)")
    p.add_argument("--all", action="store_true", help="without models: every zoo model (hours on CUDA)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backends", default=None,
                   help=f"comma list (default: all; unavailable ones are listed as skipped): {engine_help()}")
    p.add_argument("--batch", default=None, help="comma list (default: 1 and 256 on CUDA, 1 and 16 on the CPU)")
    p.add_argument("--dtype", default=None,
                   help="comma list of fp32,fp16,bf16,int8 (default fp32,fp16 on CUDA, fp32 on CPU; an export folder: "
                        "its own engines); each backend runs the ones it can, the rest are listed as skipped")
    p.add_argument("--threads", default=None,
                   help="CPU: also time every engine that names no threads at each of these thread counts, as "
                        "ENGINE@THREADS rows (comma list, e.g. 1,2): which pays is measured on this CPU; an export's "
                        "engine that names its threads (onnxruntime:fp32@1) always runs with them")
    p.add_argument("--tf32", action="store_true",
                   help="let fp32 rows use TF32 on GPUs that have it (off by default: fp32 means float32)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per round (default 50 CPU, 100 CUDA)")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved rounds over all backends of a model and batch (default 5, as for latency-table "
                        "validation and the search's finalists); the figure is the median of the round medians, with "
                        "its bounds; a row whose bounds are wide (or straddle --latency-target) gets more rounds, up "
                        "to three times as many")
    p.add_argument("--latency-target", default=None,
                   help="judge the rows at --target-batch against this latency (with units, e.g. 0.8ms): meets, "
                        "misses or undecided at --latency-confidence (default: the target a deployed folder records)")
    p.add_argument("--target-batch", type=int, default=1, help="the batch --latency-target applies to (default 1)")
    p.add_argument("--latency-confidence", type=float, default=0.9,
                   help="confidence of the bounds shown and of the verdict against a target (default 0.9)")
    p.add_argument("--compile-reference", choices=("auto", "on", "off"), default="auto",
                   help="also time the unfolded model under plain torch.compile (default mode, channels_last) and "
                        "give every row its ratio to it (auto: on with CUDA)")
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--plot", help="write throughput vs batch per backend as PNG")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--accuracy", action="store_true",
                   help="also score every row on held-out images (the accuracy gate) and name the fastest that passes")
    p.add_argument("--data", default=None,
                   help="ImageNet-layout folder whose val/ (the test split) --accuracy scores (default: the built-in "
                        "images)")
    add_quant_args(p)
    add_gate_args(p, force=False)
    p.set_defaults(func=cmd_bench, outputs={"json": "file", "plot": "file"})

    v = sub.add_parser("verify", help="top-1/top-5 on an ImageNet-layout folder, checked against the published numbers",
                       description="Scores the test split (DIR/val) with the preprocessing the model records (its "
                                   "card, checkpoint or export). An export folder: exactly the files of --engine; an "
                                   "INT8 engine gated on a CPU of another instruction-set class is gated again here.")
    v.add_argument("model", help="zoo name, card, checkpoint or export folder")
    v.add_argument("--weights", help="official or nasdeploy checkpoint")
    v.add_argument("--data", required=True,
                   help="ImageNet-layout folder (DIR/val/CLASS/*.JPEG or DIR/CLASS/...), or 'fashion-mnist' for the "
                        "built-in images' 4,000 test images")
    v.add_argument("--device", default="cpu")
    v.add_argument("--backend", default="torch", help=f"for a model: the backend to run it with ({engine_help()})")
    v.add_argument("--dtype", default="fp32", help="for a model: the precision the backend runs")
    v.add_argument("--engine", default=None, help="for an export folder: BACKEND:PRECISION (default: its first)")
    v.add_argument("--budget", default="1.0", help="the accuracy gate run again for an INT8 engine gated on another "
                                                   "instruction set: top-1 points (default 1.0)")
    v.add_argument("--tolerance", type=float, default=0.1, help="allowed top-1 difference in points (default 0.1)")
    v.add_argument("--batch-size", type=int, default=50)
    v.add_argument("--limit", type=int, default=None, help="only the first N images")
    v.add_argument("--json", help="write the result as JSON")
    v.add_argument("--no-progress", action="store_true")
    add_quant_args(v)
    v.set_defaults(func=cmd_verify, outputs={"json": "file"})


def _csv(s: str | None, cast=str):
    return [cast(v.strip()) for v in s.split(",") if v.strip()] if s else None


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.run import BenchOptions, GateSpec, bench, default_models
    from ..gate import parse_budget
    from ..zoo import list_models

    try:
        batches = _csv(args.batch, int)
    except ValueError:
        from ..errors import UsageError

        raise UsageError(f"--batch takes a comma list of integers, got '{args.batch}'") from None
    models = args.models or (list_models() if args.all else default_models(args.device))
    opt = BenchOptions(args.device, _csv(args.backends), batches, _csv(args.dtype), args.repeats, args.rounds,
                       {"auto": None, "on": True, "off": False}[args.compile_reference], args.tf32,
                       args.calib_data or args.data, quant_options(args),
                       GateSpec(args.data, args.gate_images, parse_budget(args.budget)) if args.accuracy else None,
                       not args.no_progress, target_ms=_target(args.latency_target), target_batch=args.target_batch,
                       confidence=args.latency_confidence, threads=_thread_counts(args.threads),
                       on_update=(lambda res: write_json(args.json, res.as_dict())) if args.json else None)
    res = bench(models, opt)
    t = Table(title=f"nasdeploy bench on {res.environment['device_name']} (speed-up over PyTorch eager fp32, same run)")
    vs_compile = any(r.vs_compile is not None for r in res.rows)
    vs_ref = any(r.vs_reference is not None for r in res.rows)
    ref = res.as_dict()["reference_engine"]
    gated = any(r.accuracy for r in res.rows)
    targeted = any(r.target for r in res.rows)
    conf = f"{opt.confidence:.0%}"
    per_core = any(r.per_core is not None for r in res.rows)
    for col in ("model", "backend", "dtype", "batch", "images/s") + (("img/s per thread",) if per_core else ()) \
            + ("median ms", f"{conf} bounds", "p90", "p95", "p99", "with copies ms", "speed-up") \
            + (("vs torch.compile",) if vs_compile else ()) \
            + ((f"vs {ref}",) if vs_ref else ()) + ("max rel. error",) + (("vs target",) if targeted else ()) \
            + (("top-1 / agreement", "gate") if gated else ()):
        t.add_column(col, justify="left" if col in ("model", "backend", "dtype", "vs target") else "right")
    for r in res.rows:
        lat = r.latency
        cp = f"{r.latency_with_copies['median']:.3f}" if r.latency_with_copies else "-"
        bounds = "-" if lat.get("upper") is None else f"[{lat['lower']:.3f}, {lat['upper']:.3f}]"
        t.add_row(r.model, r.backend, r.dtype + (f"@{r.engine_threads}" if r.engine_threads else ""), str(r.batch), f"{r.throughput:,.1f}",
                  *([f"{r.per_core:,.1f}" if r.per_core is not None else "-"] if per_core else []),
                  f"{lat['median']:.3f}", bounds,
                  f"{lat['p90']:.3f}", f"{lat['p95']:.3f}", f"{lat['p99']:.3f}", cp, f"{r.speedup:.2f}x",
                  *(["-" if r.vs_compile is None else f"{r.vs_compile:.2f}x"] if vs_compile else []),
                  *(["-" if r.vs_reference is None else f"{r.vs_reference:.2f}x"] if vs_ref else []),
                  f"{r.parity['max_rel']:.1e}" if r.parity else "-",
                  *([_target_cell(r.target)] if targeted else []), *(_gate_cells(r.accuracy) if gated else []))
    Console(width=max(Console().width, 150)).print(t)
    Console().print(f"median ms: the median of the round medians (at least {opt.rounds} interleaved rounds per row); "
                    f"bounds: each a one-sided {conf} bound on it")
    for r in res.rows:
        w = (r.latency.get("stability") or {}).get("warning")
        if w:
            Console().print(f"[yellow]{r.backend} {r.dtype} batch {r.batch}: {w}[/]: the machine was busy or changed "
                            "speed while timing; close other work or time again (more --rounds)")
    for s in res.skipped:
        Console().print(f"[yellow]skipped[/] {s.get('backend')} {s.get('dtype', '')}: {escape(s['reason'])}",
                        soft_wrap=True)
    for f in res.failed:
        Console().print(f"[red]failed[/] {f['backend']} {f['dtype']} batch {f['batch']}: {escape(f['reason'])}",
                        soft_wrap=True)
    for note in res.isa_notes:
        Console().print(f"[yellow]{escape(note)}[/]", soft_wrap=True)
    for d in res.deployable():
        ratio = f", {d['vs_reference']:.2f}x {ref}" if d["vs_reference"] else ""
        why = {True: "faster than the reference in every round", False: "no engine was faster than the reference "
               "in every round", None: "nothing to compare it with"}[d["faster_in_every_round"]]
        Console().print(f"[bold]engine to ship[/] (within the accuracy budget; {why}) for {d['model']} at batch "
                        f"{d['batch']}: {d['engine']} ({d['throughput']:,.1f} images/s{ratio})")
    best = {}
    for lay in res.serving():
        best.setdefault(lay.model, lay)
    for lay in best.values():
        Console().print(f"[bold]most images/s at batch 1[/] for {lay.model} on all {res.environment['cores']} "
                        f"cores: {lay.instances} x {lay.engine} at {lay.threads} thread(s), "
                        f"{lay.images_per_s:,.0f} images/s (estimated: instances x one instance's images/s)")
    if args.json:
        write_json(args.json, res.as_dict())
    if args.plot:
        from ..plots import throughput_plot

        series: dict[str, list] = {}
        for r in res.rows:
            series.setdefault(f"{r.model} {r.backend} {r.dtype}", []).append((r.batch, r.throughput))
        throughput_plot(args.plot, series, f"throughput vs batch on {res.environment['device_name']}")
    return 1 if res.failed else 0


def _thread_counts(text: str | None) -> list[int] | None:
    try:
        return _csv(text, int)
    except ValueError:
        from ..errors import UsageError

        raise UsageError(f"--threads takes a comma list of whole numbers (e.g. 1,2), got '{text}'") from None


def _target(text: str | None) -> float | None:
    from ..search.problem import parse_latency

    return None if text is None else parse_latency(text)


def _target_cell(t: dict | None) -> str:
    if not t:
        return "-"
    colour = {"meets": "green", "misses": "red"}.get(t["verdict"], "yellow")
    return f"[{colour}]{t['verdict']}[/] {t['target_ms']:g} ms"


def _gate_cells(acc: dict | None) -> list[str]:
    if not acc:
        return ["-", "-"]
    what = f"{acc['top1']:.2f}%" if acc["basis"] == "labels" else f"{acc['agreement']:.2f}% agree"
    return [what, "[green]pass[/]" if acc["passed"] else "[red]fail[/]"]


def cmd_verify(args: argparse.Namespace) -> int:
    from ..gate import parse_budget
    from ..verify import VerifyOptions, verify

    r = verify(args.model, args.data, VerifyOptions(args.weights, args.device, args.backend, args.dtype, args.engine,
                                                    args.tolerance, args.batch_size, limit=args.limit,
                                                    calib_data=args.calib_data, quant=quant_options(args),
                                                    budget=parse_budget(args.budget), progress=not args.no_progress))
    if r.isa_note:
        g = r.gate
        if g.get("not_run"):
            Console().print(f"[yellow]{r.isa_note.replace('was run again here', 'could not run here')}[/]: "
                            f"{g['not_run']}", soft_wrap=True)
        else:
            Console().print(f"[yellow]{r.isa_note}[/]: {'pass' if g['passed'] else 'FAIL'}, drop {g['drop']:.2f} "
                            f"points [{g['drop_ci95'][0]:.2f}, {g['drop_ci95'][1]:.2f}] on {g['images']} "
                            f"{g['split'].replace('_', '-')} images (budget {g['budget']:g})", soft_wrap=True)
    t = Table(title=f"verify {r.model} ({r.backend} {r.dtype}, {r.images} images)")
    for col in ("", "measured", "reference", "difference"):
        t.add_column(col, justify="right")
    for k, ref in (("top-1", r.reference_top1), ("top-5", r.reference_top5)):
        m = r.top1 if k == "top-1" else r.top5
        t.add_row(k, f"{m:.3f}", "-" if ref is None else f"{ref:.3f}", "-" if ref is None else f"{m - ref:+.3f}")
    Console().print(t)
    if args.json:
        write_json(args.json, r.as_dict())
    if r.passed is None:
        Console().print("no published top-1 to compare with")
        return 0
    verdict = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
    Console().print(f"{verdict}: top-1 {r.top1:.3f} vs published {r.reference_top1} "
                    f"(tolerance {r.tolerance} points; source: {r.reference_source})")
    return 0 if r.passed else 1
