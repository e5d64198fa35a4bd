#!/usr/bin/env python3
"""Supernet recipe benchmark: do the FairNAS/SCARLET A/B/C subnets learn at the demo's budget?

For each space, trains a supernet with ``train-supernet``'s defaults (strict fairness + the recipe in
``nasdeploy.nas.recipe``) for ``--steps`` steps of ``--batch`` images, then for the A/B/C architectures of the
space: the subnet extracted, BN recalibrated on 8 x 64 training images, top-1 on ``--eval-images``
held-out images (95% Wilson interval), against the same architecture trained alone from scratch for the
same number of optimizer steps and batch (``nasdeploy.finetune.train_model``, lr ``--standalone-lr``).

``--ablation`` also trains the variants that switch one part of the recipe off (or restore the old
defaults) and reports them in one table. Everything is cached in ``--out``; a killed run continues.
Writes ``recipe_SPACES[_ablation].json`` there and, with ``--record``, copies it to ``benchmarks/results/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import torch

from nasdeploy.data import SMALL_INPUT_STRIDES, fashion_mnist
from nasdeploy.evaluate import evaluate, evaluate_subnet
from nasdeploy.finetune import FinetuneConfig, train_model
from nasdeploy.io import provenance, write_json
from nasdeploy.nas.supernet_checkpoint import load_supernet
from nasdeploy.nas.net import Network
from nasdeploy.nas.supernet import SPACE_FLAVOUR
from nasdeploy.nas.train import TrainConfig, train_supernet
from nasdeploy.search import load_eval_data
from nasdeploy.zoo import get_card

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {  # name -> TrainConfig changes from the defaults
    "recipe (defaults)": {},
    "no warm start": {"warm_start": 0},
    "gradients summed (FairNAS)": {"grad_mode": "sum"},
    "gradients averaged by visits": {"grad_mode": "visits"},
    "no zero-init residual": {"zero_init_residual": False},
    "lr 0.05": {"lr": 0.05},
    "warm start 1/6": {"warm_start": "sixth"},
    "warm start 1/2": {"warm_start": "half"},
    "old defaults (no warm start, random residual init, lr 0.05)":
        {"warm_start": 0, "zero_init_residual": False, "lr": 0.05},
}


def _cfg(space: str, steps: int, batch: int, seed: int, change: dict) -> TrainConfig:
    change = dict(change)
    if change.get("warm_start") == "sixth":
        change["warm_start"] = steps // 6
    if change.get("warm_start") == "half":
        change["warm_start"] = steps // 2
    return replace(TrainConfig(space=space, steps=steps, batch_size=batch, seed=seed, device="cpu",
                               ckpt_every=max(1, steps // 10)), **change)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/recipe")
    ap.add_argument("--spaces", default="fairnas,scarlet")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-images", type=int, default=4000)
    ap.add_argument("--standalone-lr", type=float, default=0.05)
    ap.add_argument("--ablation", action="store_true", help="also the variants of VARIANTS")
    ap.add_argument("--variants", default=None,
                    help="with --ablation: comma list of variant numbers (0 = the recipe) to run, default all")
    ap.add_argument("--record", action="store_true", help="copy recipe.json to benchmarks/results/")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = out / "cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    calib, val = load_eval_data("fashion-mnist", 8, 64, args.eval_images)
    variants = VARIANTS if args.ablation else {"recipe (defaults)": {}}
    if args.ablation and args.variants:
        keep = {int(v) for v in args.variants.split(",")} | {0}
        variants = {k: v for i, (k, v) in enumerate(VARIANTS.items()) if i in keep}
    for space in args.spaces.split(","):
        archs = {v: get_card(f"{space}_{v}").arch for v in "abc"}
        for name, change in variants.items():
            key = f"{space}|{name}|{args.steps}|{args.batch}|{args.seed}"
            if key in cache:
                continue
            cfg = _cfg(space, args.steps, args.batch, args.seed, change)
            d = out / f"{space}_{zlib.crc32(name.encode()):08x}_{args.steps}_{args.batch}_{args.seed}"
            t0 = time.time()
            r = train_supernet(cfg, d, resume=(d / "checkpoint.pt").exists())
            sn = load_supernet(r.path)
            first, last = r.loss_summary()
            accs = {v: evaluate_subnet(sn, a, calib, val) for v, a in archs.items()}
            cache[key] = {"space": space, "variant": name, "config": asdict(cfg), "loss_first": first,
                          "loss_last": last, "train_s": round(time.time() - t0, 1),
                          "subnets": {v: a.as_dict() for v, a in accs.items()}}
            write_json(cache_path, cache)
            print(json.dumps({k: cache[key][k] for k in ("space", "variant", "loss_first", "loss_last")}
                             | {v: round(a.top1, 2) for v, a in accs.items()}), flush=True)
        for v, arch in archs.items():
            key = f"{space}|alone|{v}|{args.steps}|{args.batch}|{args.seed}|{args.standalone_lr}"
            if key in cache:
                continue
            torch.manual_seed(args.seed)
            net = Network(arch, SPACE_FLAVOUR[space], 10, SMALL_INPUT_STRIDES)
            fc = FinetuneConfig(steps=args.steps, batch_size=args.batch, lr=args.standalone_lr, seed=args.seed,
                                device="cpu")
            train_model(net, fashion_mnist("train"), fc, out / f"alone_{space}_{v}_{args.steps}_{args.seed}.pt",
                        label=f"alone {space}_{v}")
            cache[key] = evaluate(net, val).as_dict()
            write_json(cache_path, cache)
            print(f"alone {space}_{v}: {cache[key]['top1']:.2f}", flush=True)
    rows = []
    for space in args.spaces.split(","):
        if not all(f"{space}|{name}|{args.steps}|{args.batch}|{args.seed}" in cache for name in variants):
            continue
        alone = {v: cache[f"{space}|alone|{v}|{args.steps}|{args.batch}|{args.seed}|{args.standalone_lr}"]
                 for v in "abc"}
        for name in variants:
            c = cache[f"{space}|{name}|{args.steps}|{args.batch}|{args.seed}"]
            rows.append({"space": space, "variant": name, "loss_first": c["loss_first"], "loss_last": c["loss_last"],
                         "train_s": c["train_s"],
                         "subnets": {v: c["subnets"][v] | {"standalone_top1": alone[v]["top1"],
                                                            "fraction_of_standalone":
                                                                round(c["subnets"][v]["top1"] / alone[v]["top1"], 4)}
                                     for v in "abc"}})
    result = {"what": "recalibrated supernet subnets vs the same architectures trained alone, same steps and batch",
              "command": "python -m benchmarks.supernet_recipe " + " ".join(sys.argv[1:]),
              "steps": args.steps, "batch": args.batch, "seed": args.seed, "eval_images": args.eval_images,
              "standalone_lr": args.standalone_lr, "rows": rows,
              "provenance": {k: str(v) for k, v in provenance().items()}}
    name = f"recipe_{args.spaces.replace(',', '_')}{'_ablation' if args.ablation else ''}.json"
    write_json(out / name, result)
    print(markdown(result))
    if args.record:
        shutil.copy(out / name, ROOT / "benchmarks" / "results" / name)


def markdown(result: dict) -> str:
    lines = ["| space | supernet training | loss first -> last | A top-1 [95% CI] | B | C | "
             "fraction of stand-alone (A/B/C) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        s = r["subnets"]
        cells = [f"{s[v]['top1']:.1f} [{s[v]['top1_ci95'][0]:.1f}, {s[v]['top1_ci95'][1]:.1f}]" for v in "abc"]
        frac = "/".join(f"{s[v]['fraction_of_standalone']:.2f}" for v in "abc")
        lines.append(f"| {r['space']} | {r['variant']} | {r['loss_first']:.2f} -> {r['loss_last']:.2f} | "
                     + " | ".join(cells) + f" | {frac} |")
    alone = {r["space"]: r["subnets"] for r in result["rows"]}
    for sp, s in alone.items():
        lines.append(f"| {sp} | stand-alone, same steps | | "
                     + " | ".join(f"{s[v]['standalone_top1']:.1f}" for v in "abc") + " | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
