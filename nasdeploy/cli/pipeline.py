"""`nasdeploy pipeline`: the whole toolkit in one command (default: the built-in CPU demo)."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape

from ..pipeline import Pipeline, PipelineConfig, run_pipeline


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="supernet -> latency table -> search -> fine-tune -> fold/export -> accuracy -> bench -> report",
                       description="Runs every stage in order; a stage whose result is already in --out is skipped, "
                                   "and a stage killed mid-way resumes, so rerunning the same command finishes the job. "
                                   "Without --config: the built-in demo (SCARLET space, built-in Fashion-MNIST, CPU "
                                   "latency table, ONNX export, bench with ONNX Runtime and PyTorch).")
    p.add_argument("--config", help="TOML file (see configs/); flags below override it")
    p.add_argument("--out", help="output folder (default runs/demo)")
    p.add_argument("--device", help="auto | cpu | cuda")
    p.add_argument("--stop-after", choices=Pipeline.STAGES, help="stop after this stage (the rest run on a rerun)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_pipeline, outputs={"out": "dir"})


def cmd_pipeline(args: argparse.Namespace) -> int:
    cfg = PipelineConfig.read(args.config) if args.config else PipelineConfig.demo()
    if args.out:
        cfg.out = args.out
    if args.device:
        cfg.device = args.device
    console = Console()
    results, report = run_pipeline(cfg, progress=not args.no_progress,
                                   echo=lambda s: console.rule(escape(s)), stop_after=args.stop_after)
    if report is None:
        console.print(f"stopped after {args.stop_after}; rerun without --stop-after to finish")
        return 0
    console.print(Markdown(report.read_text().split("## Pareto front")[0]))
    console.print(f"[bold]report:[/] {report} (and report.json, search/pareto.png, bench.png beside it)")
    return 0
