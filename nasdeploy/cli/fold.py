"""`nasdeploy fold IN OUT`: BN and SCARLET stabilizers folded into the equivalent plain network."""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..fold import DEFAULT_MAX_CONDITION, fold
from ..zoo import resolve, save_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fold", help="fold BN and SCARLET stabilizers into the plain network (checked numerically)")
    p.add_argument("input", help="nasdeploy checkpoint (e.g. an extracted subnet), zoo name or card")
    p.add_argument("output", help="where to write the folded nasdeploy checkpoint")
    p.add_argument("--weights", help="weights for a zoo name or card (official or nasdeploy checkpoint)")
    p.add_argument("--max-condition", type=float, default=DEFAULT_MAX_CONDITION,
                   help="refuse to invert a stabilizer whose condition number is above this (default %(default)g)")
    p.set_defaults(func=cmd_fold, outputs={"output": "file"})


def cmd_fold(args: argparse.Namespace) -> int:
    model = resolve(args.input, args.weights)
    plain, rep = fold(model.net, max_condition=args.max_condition)
    save_checkpoint(plain, args.output, extra={"fold_report": rep.as_dict()}, setting=model.setting)
    t = Table(title=f"fold {args.input} -> {args.output}", show_header=False)
    for k, v in rep.as_dict().items():
        t.add_row(k, f"{v:.3g}" if isinstance(v, float) else f"{v:,}")
    Console().print(t)
    return 0
