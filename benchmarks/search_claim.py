"""The user's claim, end to end: at the pipeline's latency target, is the searched architecture better than
architectures a user could pick without the search?

From a finished pipeline run (its supernet, latency tables, target and chosen architecture): the searched
architecture, 10 random architectures that meet the same target (uniform over the feasible set) and the zoo
architectures of the space, each extracted from the same supernet, BN recalibrated on search-validation images and
fine-tuned with the pipeline's own recipe and budget, with two seeds; every one scored image by image on the test
split, which neither the search nor the fine-tune saw. Comparisons are paired over the same test images (each
image's correctness averaged over the two seeds).

    python -m benchmarks.search_claim runs/demo --json benchmarks/results/search_claim.json
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np



def _finetune(job: tuple) -> tuple[str, int, list[bool]]:
    run, arch, seed, steps, batch, lr, state = job
    import torch

    torch.set_num_threads(1)
    from torch.utils.data import DataLoader

    from nasdeploy.data import BUILTIN, dataset
    from nasdeploy.evaluate import recalibrated_subnet
    from nasdeploy.finetune import FinetuneConfig, train_model
    from nasdeploy.nas.supernet_checkpoint import load_supernet
    from nasdeploy.nas.space import Arch
    from nasdeploy.search import load_eval_data
    from nasdeploy.search.estimate import estimate

    sn = load_supernet(Path(run) / "supernet" / "supernet.pt")
    calib, _ = load_eval_data(BUILTIN, 4, 64, 1000, sn.input_setting)
    net = recalibrated_subnet(sn, Arch.parse(arch), calib)  # what the pipeline's fine-tune starts from
    cfg = FinetuneConfig(steps=steps, batch_size=batch, lr=lr, seed=seed, device="cpu", ckpt_every=max(1, steps // 5))
    train_model(net, dataset(BUILTIN, "train", sn.input_setting, augment=True), cfg, Path(state), progress=False)
    e = estimate(net, DataLoader(dataset(BUILTIN, "test", sn.input_setting), batch_size=500))
    return arch, seed, e.correct.tolist()


def _paired(a: np.ndarray, b: np.ndarray) -> list[float]:
    d = a - b
    half = 1.959964 * d.std(ddof=1) / math.sqrt(len(d))
    return [float(d.mean()), float(d.mean() - half), float(d.mean() + half)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a finished pipeline run folder (e.g. runs/demo)")
    ap.add_argument("--random", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    run = Path(args.run).resolve()
    from nasdeploy import zoo
    from nasdeploy.io import provenance, write_json
    from nasdeploy.latency import EngineTables
    from nasdeploy.nas.space import get_space
    from nasdeploy.nas.supernet import SPACE_FLAVOUR

    cfg = json.loads((run / "config.json").read_text())
    search = json.loads((run / "stage_search.json").read_text())
    lat = json.loads((run / "stage_latency.json").read_text())
    tables = EngineTables.load([t["lut"] for t in lat["tables"].values()])
    target, space = search["target_ms"], get_space(cfg["space"])
    rng = random.Random(12345)
    randoms: list[str] = []
    while len(randoms) < args.random:  # uniform over the feasible set: rejection from uniform draws
        a = space.sample(rng)
        if tables.predict(a) <= target and str(a) not in randoms and str(a) != search["best"]["arch"]:
            randoms.append(str(a))
    zoo_archs = {n: str(space.validate(c.arch)) for n, c in zoo.cards().items()
                 if c.flavour == SPACE_FLAVOUR[cfg["space"]] and c.num_classes == 1000}
    archs = {"searched": search["best"]["arch"], **{f"random_{i}": a for i, a in enumerate(randoms)}, **zoo_archs}
    ft = cfg["finetune"]
    cache_path = run / "claim" / "results.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    jobs = [(str(run), a, s, ft["steps"], ft["batch_size"], ft["lr"], str(run / "claim" / f"{k}_{s}.pt"))
            for k, a in archs.items() for s in range(args.seeds) if f"{a}@{s}" not in cache]
    (run / "claim").mkdir(exist_ok=True)
    t0 = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        for arch, seed, correct in pool.map(_finetune, jobs):
            cache[f"{arch}@{seed}"] = correct
            write_json(cache_path, cache)
            print(f"{arch} seed {seed}: {100 * np.mean(correct):.2f}%", flush=True)
    per = {k: np.mean([np.array(cache[f"{a}@{s}"], float) for s in range(args.seeds)], axis=0) * 100
           for k, a in archs.items()}
    top1 = {k: float(v.mean()) for k, v in per.items()}
    rand = sorted((k for k in archs if k.startswith("random")), key=lambda k: top1[k])
    median = rand[len(rand) // 2]
    res = {"run": str(run), "target_ms": target, "finetune": ft, "seeds": args.seeds, "archs": archs,
           "latency_ms": {k: tables.predict(a) for k, a in archs.items()}, "test_top1": top1,
           "median_random": median, "searched_minus_median_random": _paired(per["searched"], per[median]),
           "searched_minus_each": {k: _paired(per["searched"], per[k]) for k in archs if k != "searched"},
           "searched_rank_among_random": 1 + sum(top1[k] > top1["searched"] for k in rand),
           "random_top1_range": [top1[rand[0]], top1[rand[-1]]], "hours": round((time.time() - t0) / 3600, 2),
           "command": " ".join(sys.argv), "provenance": provenance()}
    if args.json:
        write_json(args.json, res)
    print(json.dumps({k: res[k] for k in ("test_top1", "median_random", "searched_minus_median_random",
                                          "searched_rank_among_random")}, indent=1))


if __name__ == "__main__":
    main()
