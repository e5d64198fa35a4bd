"""`nasdeploy export MODEL|CARD --onnx --trt --aoti --engines ... --out DIR`: folded artefacts with a parity report
and, for reduced precisions, the accuracy gate."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..backends import engine_help
from ..errors import ExportError
from ..export.api import ExportOptions, export_model, legacy_engines, parse_batch
from .quant_args import add_gate_args, add_quant_args, quant_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a zoo model, card or subnet (folded) to ONNX / TensorRT / AOTInductor, with parity",
        description="Folds BN and SCARLET stabilizers, exports, and checks every artefact against PyTorch float32 "
                    "(random inputs and real images). TensorRT (--trt) is written against the TensorRT 10/11 Python "
                    "API and is not exercised by nasdeploy's CI, which has no GPU.")
    p.add_argument("model", help="zoo name, card file (e.g. a search's best.toml) or nasdeploy checkpoint")
    p.add_argument("--weights", help="official or nasdeploy checkpoint for a zoo name or card")
    p.add_argument("--engines", default=None,
                   help="engines as a comma list of BACKEND[:PRECISION][@THREADS], e.g. "
                        "onnxruntime:int8,openvino:bf16@1 (default onnxruntime:fp32; @THREADS: the CPU threads the "
                        "engine runs with, recorded in the manifest and used by bench and verify; without it the "
                        f"runtime uses every usable core or NASDEPLOY_THREADS). Backends and precisions: {engine_help()}")
    p.add_argument("--onnx", action="store_true", help="= --engines onnxruntime:fp32")
    p.add_argument("--trt", action="store_true", help="= --engines tensorrt:fp32 (tensorrt:fp16 with --fp16)")
    p.add_argument("--aoti", action="store_true", help="= --engines aoti:fp32 (aoti:fp16 with --fp16), for --device")
    p.add_argument("--device", default="auto",
                   help="where the AOTInductor package runs: auto (cuda if visible, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--fp16", action="store_true", help="with --trt / --aoti: fp16 (GPU)")
    p.add_argument("--batch", type=int, default=None, help="static batch (default 1)")
    p.add_argument("--dynamic-batch", help="MIN:OPT:MAX batch range (TensorRT profile, AOTI dynamic dim)")
    p.add_argument("--no-fold", action="store_true", help="export without folding (for comparison)")
    p.add_argument("--data", help="ImageNet-layout folder for the real-image parity (default: built-in images)")
    p.add_argument("--parity-images", type=int, default=256, help="real images for the parity check (default 256)")
    add_quant_args(p)
    add_gate_args(p, force=True)
    p.add_argument("--out", default=None, help="output folder (default: exports/MODEL)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export, outputs={"out": "dir"})


def cmd_export(args: argparse.Namespace) -> int:
    from ..backends import Engine, parse_engines
    from ..gate import parse_budget

    batch, dynamic = parse_batch(args.batch, args.dynamic_batch)
    engines = legacy_engines(args.onnx, args.trt, args.aoti, args.fp16)
    engines += parse_engines(args.engines) if args.engines else []
    opt = ExportOptions(engines=engines or [Engine("onnxruntime", "fp32")], batch=batch,
                        dynamic=dynamic, fold=not args.no_fold, force=args.force, data=args.data,
                        parity_images=args.parity_images, device=args.device, quant=quant_options(args),
                        calib_data=args.calib_data, budget=parse_budget(args.budget), gate_images=args.gate_images,
                        force_accuracy=args.force_accuracy)
    r = export_model(args.model, args.out, args.weights, opt)
    print_parity(r.parity, f"parity of {args.model} against PyTorch float32")
    if r.gates:
        print_gates(r.gates, r.refused)
    if r.fold_report:
        f = r.fold_report
        Console().print(f"folded: {f['bn_folded']} BN, {f['stabilizers_folded']} stabilizers "
                        f"(max rel. error {f['max_rel_error_fp64']:.1e} fp64, {f['max_rel_error_fp32']:.1e} fp32)")
    Console().print(f"artefacts in {r.out}: {', '.join(dict.fromkeys(r.artefacts.values()))}, parity.json, "
                    "manifest.json (every engine's files and hashes: `nasdeploy bench` and `verify` take the folder)")
    if r.refused:  # the rest is written; the refusal is still an error (one line, exit 2)
        raise ExportError(r.refusal())
    return 0


def print_parity(parity, title: str) -> None:
    t = Table(title=title)
    for col in ("backend", "dtype", "random max abs", "random max rel", "real max abs", "real mean abs",
                "real median abs", "real max rel", "top-1 agreement", "images"):
        t.add_column(col, justify="right" if col not in ("backend", "dtype") else "left")
    for p in parity:
        t.add_row(p.backend, p.dtype, f"{p.random.max_abs:.2e}", f"{p.random.max_rel:.2e}", f"{p.real.max_abs:.2e}",
                  f"{p.real.mean_abs:.2e}", f"{p.real.median_abs:.2e}", f"{p.real.max_rel:.2e}",
                  f"{p.top1_agreement:.2f}%", str(p.images))
    Console(width=max(Console().width, 150)).print(t)


def print_gates(gates: dict[str, dict], refused: dict[str, dict] | None = None) -> None:
    t = Table(title="accuracy gate on held-out images (against the folded float32 model)")
    for col in ("engine", "images", "basis", "float32 top-1", "top-1", "agreement", "counted drop", "budget", "verdict"):
        t.add_column(col, justify="left" if col in ("engine", "basis", "verdict") else "right")
    for name, g in gates.items():
        t.add_row(name, str(g["images"]), g["basis"], f"{g['top1_reference']:.2f}%", f"{g['top1']:.2f}%",
                  f"{g['agreement']:.2f}%", f"{g['drop']:.2f}", f"{g['budget']:g}",
                  "[green]pass[/]" if g["passed"] else "[red]fail (refused: not written)[/]"
                  if name in (refused or {}) else "[red]fail (kept: --force-accuracy)[/]")
    Console(width=max(Console().width, 150)).print(t)
