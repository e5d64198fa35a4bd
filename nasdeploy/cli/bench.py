"""`nasdeploy bench` (speed per backend) and `nasdeploy verify` (accuracy against the reference numbers)."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..io import write_json
from .quant_args import add_gate_args, add_quant_args, quant_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput and latency per backend, batch and dtype against PyTorch eager fp32",
                       description="Every backend runs the same folded model; the baseline is the unfolded model in "
                                   "PyTorch eager fp32 (what the official verify.py runs), measured in the same run. "
                                   "TensorRT is not exercised by nasdeploy's CI, which has no GPU.")
    p.add_argument("models", nargs="*", help="zoo names, cards or checkpoints (default: every zoo model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backends", default=None, help="comma list of torch,compile,onnxruntime,openvino,aoti,tensorrt "
                                                    "(default: all; unavailable ones are listed as skipped)")
    p.add_argument("--batch", default=None, help="comma list (default: 1 and 256 on CUDA, 1 and 16 on the CPU)")
    p.add_argument("--dtype", default=None,
                   help="comma list of fp32,fp16,bf16,int8 (default fp32,fp16 on CUDA, fp32 on CPU); each backend runs "
                        "the ones it can, the rest are listed as skipped")
    p.add_argument("--tf32", action="store_true",
                   help="let fp32 rows use TF32 on GPUs that have it (off by default: fp32 means float32)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per round (default 50 CPU, 100 CUDA)")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds over all backends of a model and batch; the fastest round counts")
    p.add_argument("--compile-reference", choices=("auto", "on", "off"), default="auto",
                   help="also time the unfolded model under plain torch.compile (default mode, channels_last) and "
                        "give every row its ratio to it (auto: on with CUDA)")
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--plot", help="write throughput vs batch per backend as PNG")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--accuracy", action="store_true",
                   help="also score every row on held-out images (the accuracy gate) and name the fastest that passes")
    p.add_argument("--data", default=None, help="ImageNet-layout folder for --accuracy (default: the built-in images)")
    add_quant_args(p)
    add_gate_args(p, force=False)
    p.set_defaults(func=cmd_bench)

    v = sub.add_parser("verify", help="top-1/top-5 on an ImageNet-layout folder, checked against the published numbers")
    v.add_argument("model")
    v.add_argument("--weights", help="official or nasdeploy checkpoint")
    v.add_argument("--data", required=True, help="ImageNet-layout folder (DIR/val/CLASS/*.JPEG or DIR/CLASS/...)")
    v.add_argument("--device", default="cpu")
    v.add_argument("--backend", default="torch", help="torch | compile | onnxruntime | openvino | aoti | tensorrt")
    v.add_argument("--dtype", default="fp32", help="precision the backend runs: fp32 | fp16 | bf16 | int8")
    v.add_argument("--tolerance", type=float, default=0.1, help="allowed top-1 difference in points (default 0.1)")
    v.add_argument("--batch-size", type=int, default=50)
    v.add_argument("--limit", type=int, default=None, help="only the first N images")
    v.add_argument("--json", help="write the result as JSON")
    v.add_argument("--no-progress", action="store_true")
    add_quant_args(v)
    v.set_defaults(func=cmd_verify)


def _csv(s: str | None, cast=str):
    return [cast(v.strip()) for v in s.split(",") if v.strip()] if s else None


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench.run import GateSpec, bench
    from ..gate import parse_budget
    from ..zoo import list_models

    try:
        batches = _csv(args.batch, int)
    except ValueError:
        from ..errors import UsageError

        raise UsageError(f"--batch takes a comma list of integers, got '{args.batch}'") from None
    res = bench(args.models or list_models(), args.device, _csv(args.backends), batches, _csv(args.dtype),
                args.repeats, progress=not args.no_progress,
                compile_reference={"auto": None, "on": True, "off": False}[args.compile_reference],
                rounds=args.rounds, tf32=args.tf32, calib_data=args.calib_data or args.data, quant=quant_options(args),
                gate=GateSpec(args.data, args.gate_images, parse_budget(args.budget)) if args.accuracy else None)
    t = Table(title=f"nasdeploy bench on {res.environment['device_name']} (speed-up over PyTorch eager fp32, same run)")
    vs_compile = any(r.vs_compile is not None for r in res.rows)
    vs_ort = any(r.vs_onnxruntime is not None for r in res.rows)
    gated = any(r.accuracy for r in res.rows)
    for col in ("model", "backend", "dtype", "batch", "images/s", "median ms", "p90", "p95", "p99", "with copies ms",
                "speed-up") + (("vs torch.compile",) if vs_compile else ()) + (("vs ORT fp32",) if vs_ort else ()) \
            + ("max rel. error",) + (("top-1 / agreement", "gate") if gated else ()):
        t.add_column(col, justify="left" if col in ("model", "backend", "dtype") else "right")
    for r in res.rows:
        lat = r.latency
        cp = f"{r.latency_with_copies['median']:.3f}" if r.latency_with_copies else "-"
        t.add_row(r.model, r.backend, r.dtype, str(r.batch), f"{r.throughput:,.1f}", f"{lat['median']:.3f}",
                  f"{lat['p90']:.3f}", f"{lat['p95']:.3f}", f"{lat['p99']:.3f}", cp, f"{r.speedup:.2f}x",
                  *(["-" if r.vs_compile is None else f"{r.vs_compile:.2f}x"] if vs_compile else []),
                  *(["-" if r.vs_onnxruntime is None else f"{r.vs_onnxruntime:.2f}x"] if vs_ort else []),
                  f"{r.parity['max_rel']:.1e}" if r.parity else "-", *(_gate_cells(r.accuracy) if gated else []))
    Console(width=max(Console().width, 150)).print(t)
    for s in res.skipped:
        Console().print(f"[yellow]skipped[/] {s.get('backend')} {s.get('dtype', '')}: {s['reason']}")
    for d in res.deployable():
        ratio = f", {d['vs_onnxruntime']:.2f}x ONNX Runtime fp32" if d["vs_onnxruntime"] else ""
        Console().print(f"[bold]fastest engine within the accuracy budget[/] for {d['model']} at batch {d['batch']}: "
                        f"{d['engine']} ({d['throughput']:,.1f} images/s{ratio})")
    if args.json:
        write_json(args.json, res.as_dict())
    if args.plot:
        from ..plots import throughput_plot

        series: dict[str, list] = {}
        for r in res.rows:
            series.setdefault(f"{r.model} {r.backend} {r.dtype}", []).append((r.batch, r.throughput))
        throughput_plot(args.plot, series, f"throughput vs batch on {res.environment['device_name']}")
    return 0


def _gate_cells(acc: dict | None) -> list[str]:
    if not acc:
        return ["-", "-"]
    what = f"{acc['top1']:.2f}%" if acc["basis"] == "labels" else f"{acc['agreement']:.2f}% agree"
    return [what, "[green]pass[/]" if acc["passed"] else "[red]fail[/]"]


def cmd_verify(args: argparse.Namespace) -> int:
    from ..verify import verify

    r = verify(args.model, args.data, args.weights, args.device, args.backend, args.tolerance, args.batch_size,
               limit=args.limit, progress=not args.no_progress, dtype=args.dtype, calib_data=args.calib_data,
               quant=quant_options(args))
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
