"""`nasdeploy zoo` and `nasdeploy info`."""
from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from .. import zoo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the model zoo with its counts and published accuracy")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_zoo)
    p = sub.add_parser("info", help="one model's architecture, counts and reference numbers")
    p.add_argument("name", help="zoo name or card file")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)


def cmd_zoo(args: argparse.Namespace) -> int:
    infos = [zoo.model_info(n) for n in zoo.list_models()]
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    t = Table(title="nasdeploy model zoo (params and MACs computed from the definitions; top-1 as published)")
    for col, just in (("model", "left"), ("params", "right"), ("MACs (M)", "right"), ("data", "left"),
                      ("top-1", "right"), ("top-5", "right"), ("source / note", "left")):
        t.add_column(col, justify=just, no_wrap=col != "source / note")  # type: ignore[arg-type]
    for i in infos:
        ref = i["reference"]
        note = ref.get("source", "")
        paper = ref.get("madds_m_paper")
        if paper is not None and round(i["macs"] / 1e6) != paper:
            note += f" [yellow](paper says {paper}M multiply-adds; the official definition counts {i['macs'] / 1e6:.2f}M)[/]"
        t.add_row(i["name"], f"{i['params']:,}", f"{i['macs'] / 1e6:.2f}", ref.get("dataset", ""),
                  f"{ref.get('top1', '')}", f"{ref.get('top5', '')}", note)
    Console(width=max(Console().width, 160)).print(t)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info = zoo.model_info(args.name)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    t = Table(title=f"{info['name']}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for k in ("space", "flavour", "arch", "num_classes", "input_size"):
        t.add_row(k, str(info[k]))
    t.add_row("params", f"{info['params']:,}")
    t.add_row("MACs @224", f"{info['macs']:,}")
    for k, v in info["reference"].items():
        t.add_row(f"reference.{k}", str(v))
    for k, v in info["checkpoint"].items():
        t.add_row(f"checkpoint.{k}", str(v))
    Console().print(t)
    return 0
