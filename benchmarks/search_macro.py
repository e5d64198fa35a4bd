"""The search machinery against known truth: NAS-Bench-Macro (6,561 fully trained architectures, CIFAR-10).

nasdeploy's constrained search (Optuna NSGA-II kept to the feasible region, the worker loop and the study as the
cache: ``nasdeploy.search``) runs with one training seed's accuracy as the noisy estimate and FLOPs as the cost
under a target; random search draws the same number of architectures uniformly from the feasible set. Each
returns the architecture with the best estimate; both are judged by the mean accuracy over the three training
seeds (the truth neither saw whole). Repeated over search seeds, with the paired difference's 95% interval.

    python -m benchmarks.search_macro --seeds 20 --budgets 40,100 --json benchmarks/results/search_macro.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
from pathlib import Path


BENCH = Path(os.environ.get("NASDEPLOY_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "datasets" / \
    "nas-bench-macro_cifar10.json"


def load(path: Path = BENCH) -> dict[str, dict]:
    return json.loads(Path(path).read_text())


def problem(bench: dict, target: float):
    """Layers of three choices ('0' identity, '1' MB k3 e3, '2' MB k5 e6), cost = FLOPs (exact, from the
    benchmark); a choice's own cost is the FLOPs it adds to the all-identity network."""
    from nasdeploy.search import Problem

    base = bench["0" * 8]["flops"]

    def layer_cost(i: int, token: str) -> float:
        key = "0" * i + token + "0" * (7 - i)
        return bench[key]["flops"] - base

    return Problem([("0", "1", "2")] * 8, lambda t: bench["".join(t)]["flops"], layer_cost, target)


def target_at(bench: dict, quantile: float) -> float:
    flops = sorted(v["flops"] for v in bench.values())
    return flops[int(quantile * (len(flops) - 1))]


def search_best(bench: dict, target: float, budget: int, population: int, seed: int, estimate_seed: int = 0) -> dict:
    """nasdeploy's search with ``budget`` evaluations; the architecture with the best estimate."""
    from nasdeploy.search import study as S

    prob = problem(bench, target)
    study, _ = S.create_or_load(S.open_storage(None), f"macro-{seed}", ["maximize"], {}, prob, population, seed)

    def evaluate(tokens):
        return S.Evaluation(bench["".join(tokens)]["test_acc"][estimate_seed], {})

    S.work(study, S.make_objective(study, prob, evaluate, ("accuracy",), budget), budget)
    trials = S.completed(study)
    best = max(trials, key=lambda t: (t.user_attrs["score"], -t.user_attrs["cost"]))
    return {"arch": best.user_attrs["arch"].replace("-", ""), "evaluated": len({t.user_attrs["arch"] for t in trials}),
            "all_feasible": all(t.user_attrs["cost"] <= target for t in trials),
            "costs": [t.user_attrs["cost"] for t in trials]}


def random_best(bench: dict, target: float, budget: int, seed: int, estimate_seed: int = 0) -> dict:
    """Random search: ``budget`` distinct architectures drawn uniformly from the feasible set."""
    feasible = sorted(k for k, v in bench.items() if v["flops"] <= target)
    pick = random.Random(seed).sample(feasible, min(budget, len(feasible)))
    best = max(pick, key=lambda k: (bench[k]["test_acc"][estimate_seed], -bench[k]["flops"]))
    return {"arch": best, "evaluated": len(pick)}


def compare(bench: dict, seeds: int, budget: int, population: int, quantile: float) -> dict:
    target = target_at(bench, quantile)
    rows = []
    for s in range(seeds):
        a, b = search_best(bench, target, budget, population, s), random_best(bench, target, budget, 10_000 + s)
        rows.append({"seed": s, "search_arch": a["arch"], "search_mean_acc": bench[a["arch"]]["mean_acc"],
                     "search_evaluated": a["evaluated"], "search_all_feasible": a["all_feasible"],
                     "random_arch": b["arch"], "random_mean_acc": bench[b["arch"]]["mean_acc"]})
    d = [r["search_mean_acc"] - r["random_mean_acc"] for r in rows]
    half = 1.959964 * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
    feasible = [v["mean_acc"] for v in bench.values() if v["flops"] <= target]
    return {"target_flops": target, "target_quantile": quantile, "budget": budget, "population": population,
            "seeds": seeds, "feasible": len(feasible), "best_feasible_mean_acc": max(feasible),
            "search_mean": statistics.mean(r["search_mean_acc"] for r in rows),
            "random_mean": statistics.mean(r["random_mean_acc"] for r in rows),
            "difference": statistics.mean(d), "difference_ci95": [statistics.mean(d) - half, statistics.mean(d) + half],
            "search_wins": sum(x > 0 for x in d), "ties": sum(x == 0 for x in d), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budgets", default="40,100", help="evaluations per search (and per random search)")
    ap.add_argument("--population", type=int, default=10)
    ap.add_argument("--quantiles", default="0.3,0.5", help="FLOPs targets as quantiles of the space's FLOPs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bench = load()
    out = {"command": " ".join(sys.argv), "benchmark": str(BENCH.name), "results": []}
    for q, budget in ((float(v), int(b)) for v in args.quantiles.split(",") for b in args.budgets.split(",")):
        r = compare(bench, args.seeds, budget, args.population, q)
        out["results"].append(r)
        print(f"target {r['target_flops'] / 1e6:.1f}M FLOPs (quantile {q}, {r['feasible']} feasible), {budget} "
              f"evaluations: search "
              f"{r['search_mean']:.3f} vs random {r['random_mean']:.3f} mean accuracy; difference "
              f"{r['difference']:+.3f} [{r['difference_ci95'][0]:+.3f}, {r['difference_ci95'][1]:+.3f}], search "
              f"better in {r['search_wins']}/{args.seeds} seeds ({r['ties']} ties); best feasible "
              f"{r['best_feasible_mean_acc']:.3f}")
    if args.json:
        from nasdeploy.io import provenance, write_json

        write_json(args.json, {**out, "provenance": provenance()})


if __name__ == "__main__":
    main()
