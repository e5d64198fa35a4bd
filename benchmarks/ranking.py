#!/usr/bin/env python3
"""Ranking benchmark (issue 3): does the supernet rank architectures like stand-alone training does?

FairNAS's central claim: strict fairness lifts the Kendall tau between supernet-estimated and
stand-alone accuracy above that of uniform single-path sampling (SPOS). This script checks it on the
built-in Fashion-MNIST, SCARLET space by default:

1. N architectures spanning the cost range: from a seeded pool of 400 (skip counts spread evenly over
   0..max), the ones at evenly spaced quantiles of multiply-adds;
2. each trained alone from scratch (``--standalone-steps`` of ``--batch``), top-1 on the 4,000
   held-out images; ``--repeats`` of them trained again with another seed to show the noise floor;
3. supernets: strict fairness, ``--fair-steps`` steps of m paths on a shared batch; uniform sampling
   (SPOS) for as many steps (equal optimizer updates: FairNAS compares the two at equal epochs, where
   strict fairness does m times the work), and with ``--equal-compute`` also for m x ``--fair-steps``
   single-path steps (equal path-images, so 13 times the updates);
4. each architecture's supernet estimate (extracted, BN recalibrated on 512 training images, top-1 on
   the same 4,000 held-out images), and Kendall's tau of the estimates against the stand-alone top-1.

Everything is cached in ``--out`` (a killed run continues where it stopped: stand-alone results after
each architecture, supernets through their own checkpoints). Writes ``ranking.json`` and ``ranking.png``
there, and copies them to ``benchmarks/results/`` with ``--record``.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import torch

from nasdeploy.data import SMALL_INPUT_STRIDES, fashion_mnist
from nasdeploy.evaluate import evaluate, evaluate_subnet
from nasdeploy.finetune import FinetuneConfig, train_model
from nasdeploy.io import provenance, write_json
from nasdeploy.latency.metrics import kendall_tau
from nasdeploy.nas.supernet_checkpoint import load_checkpoint, supernet_from
from nasdeploy.nas.net import Network, count_macs
from nasdeploy.nas.space import SKIP, Arch, get_space
from nasdeploy.nas.supernet import SPACE_FLAVOUR
from nasdeploy.nas.train import TrainConfig, train_supernet
from nasdeploy.search import load_eval_data

ROOT = Path(__file__).resolve().parents[1]


def sample_archs(space_name: str, n: int, seed: int, pool: int = 400) -> list[Arch]:
    """``n`` distinct architectures spanning the cost range: from a seeded pool (skip counts spread evenly over
    0..max), the ones at evenly spaced quantiles of multiply-adds, the cheapest and the dearest included."""
    space = get_space(space_name).with_strides(SMALL_INPUT_STRIDES)
    skippable = [i for i in range(space.num_layers) if SKIP in space.choices_at(i)]
    rng = random.Random(seed)
    cands: dict[str, Arch] = {}
    while len(cands) < pool:
        k = len(cands) % (len(skippable) + 1)
        skips = set(rng.sample(skippable, k))
        arch = Arch(tuple(SKIP if i in skips else rng.choice([c for c in space.choices_at(i) if not c.skip])
                          for i in range(space.num_layers)))
        cands[str(arch)] = arch
    flavour = SPACE_FLAVOUR[space_name]
    by_cost = sorted(cands.values(), key=lambda a: count_macs(Network(a, flavour, 10, SMALL_INPUT_STRIDES), 28))
    picks = sorted({round(i * (len(by_cost) - 1) / max(1, n - 1)) for i in range(n)})
    return [by_cost[i] for i in picks]


def standalone_top1(arch: Arch, space: str, steps: int, batch: int, seed: int, val: list, state: Path) -> float:
    torch.manual_seed(seed)
    net = Network(arch, SPACE_FLAVOUR[space], 10, SMALL_INPUT_STRIDES)
    cfg = FinetuneConfig(steps=steps, batch_size=batch, lr=0.05, seed=seed, device="cpu")
    train_model(net, fashion_mnist("train"), cfg, state, label=f"alone {state.stem}")
    return evaluate(net, val).top1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ranking")
    ap.add_argument("--space", default="scarlet", choices=("fairnas", "scarlet"))
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--standalone-steps", type=int, default=150)
    ap.add_argument("--fair-steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=-1,
                    help="architectures trained alone a second time, another seed (default: all; the noise floor)")
    ap.add_argument("--equal-compute", action="store_true",
                    help="also a uniform supernet with m x --fair-steps steps (as many path-images as strict fairness)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record", action="store_true", help="copy the results to benchmarks/results/")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    calib, val = load_eval_data("fashion-mnist", 8, 64, 4000)
    archs = sample_archs(args.space, args.archs, args.seed)
    if args.repeats < 0:
        args.repeats = len(archs)

    cache_path = out / "standalone.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    jobs = [(str(a), args.seed + i, i) for i, a in enumerate(archs)]
    jobs += [(str(archs[i]), args.seed + 1000 + i, i) for i in range(min(args.repeats, len(archs)))]
    for text, seed, i in jobs:
        key = f"{text}@{seed}"
        if key not in cache:
            state = out / "standalone" / f"a{i:02d}_s{seed}.pt"
            state.parent.mkdir(exist_ok=True)
            cache[key] = standalone_top1(Arch.parse(text), args.space, args.standalone_steps, args.batch, seed,
                                         val, state)
            write_json(cache_path, cache)
            print(f"stand-alone {i}: {cache[key]:.2f}% ({text})", flush=True)

    m = max(len(get_space(args.space).choices_at(i)) for i in range(get_space(args.space).num_layers))
    estimates: dict[str, list[float]] = {}
    histories: dict[str, list] = {}
    runs = [("fair", args.fair_steps), ("uniform", args.fair_steps)]
    if args.equal_compute:
        runs.append(("uniform", args.fair_steps * m))
    for sampler, steps in runs:
        key = f"{sampler}_{steps}"
        cfg = TrainConfig(space=args.space, steps=steps, batch_size=args.batch, sampler=sampler, seed=args.seed,
                          device="cpu", ckpt_every=max(1, steps // 20))
        d = out / key
        done = d / "supernet.pt"
        res_path = d / "estimates.json"
        if res_path.exists():
            saved = json.loads(res_path.read_text())
            estimates[key], histories[key] = saved["top1"], saved["history"]
            continue
        if not done.exists():
            train_supernet(cfg, d, resume=(d / "checkpoint.pt").exists())
        ck = load_checkpoint(done)  # read once: history and weights
        history, sn = ck["history"], supernet_from(ck, done)
        est = [evaluate_subnet(sn, a, calib, val).top1 for a in archs]
        write_json(res_path, {"top1": est, "history": history})
        estimates[key], histories[key] = est, history
        print(f"{key}: estimates {[round(e, 1) for e in est]}", flush=True)

    seed_a = [cache[f"{a}@{args.seed + i}"] for i, a in enumerate(archs)]
    reps = [{"arch": str(archs[i]), "seed_a": cache[f"{archs[i]}@{args.seed + i}"],
             "seed_b": cache[f"{archs[i]}@{args.seed + 1000 + i}"]} for i in range(min(args.repeats, len(archs)))]
    both = len(reps) == len(archs)
    # the reference: the mean of the two seeds where every architecture was trained twice
    alone = [(r["seed_a"] + r["seed_b"]) / 2 for r in reps] if both else seed_a
    diffs = [abs(r["seed_a"] - r["seed_b"]) for r in reps]
    seed_spread = {"n": len(reps), "mean_abs_diff": round(sum(diffs) / len(diffs), 3) if diffs else None,
                   "max_abs_diff": round(max(diffs), 3) if diffs else None,
                   "kendall_tau_seed_a_vs_b": _finite(kendall_tau([r["seed_a"] for r in reps],
                                                                  [r["seed_b"] for r in reps])) if both else None,
                   "standalone_range": [round(min(alone), 2), round(max(alone), 2)]}
    result = {
        "what": "Kendall tau of supernet-estimated vs stand-alone top-1 on the built-in Fashion-MNIST",
        "command": "python -m benchmarks.ranking " + " ".join(sys.argv[1:]),
        "space": args.space, "stride_plan": list(SMALL_INPUT_STRIDES), "input_size": 28,
        "standalone": {"steps": args.standalone_steps, "batch": args.batch, "lr": 0.05, "eval_images": 4000},
        "supernets": {k: {"sampler": k.split("_")[0], "steps": int(k.split("_")[1]),
                          "paths_per_step": m if k.startswith("fair") else 1,
                          "path_images": int(k.split("_")[1]) * (m if k.startswith("fair") else 1) * args.batch,
                          "final_loss": histories[k][-1][1]} for k in estimates}
                     | {"batch": args.batch,
                      "estimate": "extract, BN recalibrated on 8 x 64 training images, top-1 on 4,000 held-out"},
        "standalone_reference": "mean of two seeds" if both else "one seed",
        "standalone_seed_spread": seed_spread,
        "archs": [{"arch": str(a), "skips": sum(c.skip for c in a),
                   "macs": count_macs(Network(a, SPACE_FLAVOUR[args.space], 10, SMALL_INPUT_STRIDES), 28),
                   "standalone_top1": alone[i]}
                  | {f"{k}_top1": v[i] for k, v in estimates.items()} for i, a in enumerate(archs)],
        "kendall_tau": {k: _finite(kendall_tau(v, alone)) for k, v in estimates.items()},
        "standalone_repeats": reps,
        "wall_s_this_invocation": round(time.time() - t0, 1),
        "provenance": {k: str(v) for k, v in provenance().items()},
    }
    write_json(out / "ranking.json", result)
    plot(out / "ranking.png", alone, estimates, result["kendall_tau"])
    if args.record:
        dest = ROOT / "benchmarks" / "results"
        shutil.copy(out / "ranking.json", dest / f"ranking_{args.space}.json")
        shutil.copy(out / "ranking.png", dest / f"ranking_{args.space}.png")
    print(json.dumps({"kendall_tau": result["kendall_tau"], "standalone_seed_spread": seed_spread}, indent=1))


def _finite(x: float) -> float | None:
    return x if x == x else None  # tau is undefined (NaN) when every estimate ties


def plot(path: Path, alone: list[float], estimates: dict[str, list[float]], taus: dict[str, float]) -> None:
    from nasdeploy.plots import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for k, v in estimates.items():
        ax.scatter(alone, v, s=18, label=f"{k} supernet (tau {taus[k] if taus[k] is None else round(taus[k], 2)})")
    ax.set_xlabel("stand-alone top-1 (%)")
    ax.set_ylabel("supernet estimate, top-1 (%)")
    ax.set_title("supernet ranking vs stand-alone training (Fashion-MNIST)", fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, path)


if __name__ == "__main__":
    main()
