"""The search against known truth and standing baselines: NAS-Bench-Macro (6,561 architectures trained three times
each on CIFAR-10).

Every method runs through nasdeploy's own study machinery (``nasdeploy.search.study``: the budget, the study as the
cache, feasibility) with its own Optuna sampler over the same ``Problem`` (FLOPs as the cost under a target; each
network evaluated once: architectures that only move an identity layer inside a stage share one evaluation):

* ``search``: nasdeploy's sampler (``FeasibleEvolutionSampler``);
* ``random``: random search over the feasible set;
* ``random-near-target``: random search over the top 20% of the feasible FLOPs range;
* ``regularized-evolution``: regularized evolution with aging (Real et al. 2019).

The estimate an architecture is selected by is ONE training seed's accuracy (rotated over the three seeds by run);
each method returns its best estimate, which is scored on the mean of the OTHER two seeds, which no method saw.
Runs of different methods share no randomness, so their difference is compared unpaired (Welch's interval).
The search's design was tuned on search seeds 0-199 (``--first-seed 0``); the recorded results use seeds from
10,000 on, never used while tuning.

    python -m benchmarks.search_macro --runs 200 --json benchmarks/results/search_macro.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(os.environ.get("NASDEPLOY_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "datasets" / \
    "nas-bench-macro_cifar10.json"
METHODS = ("search", "random", "random-near-target", "regularized-evolution")
BASELINES = METHODS[1:]
# NAS-Bench-Macro's stages are [2, 3, 3] layers; the first layer of the second and third stage changes the width,
# so layers (3, 4) and (6, 7) have the same shapes: an identity moved between them builds the same network
# (the benchmark's FLOPs and parameters are equal for such pairs: tests/test_search_macro.py checks it)
IDENTITY_RUNS = ((3, 4), (6, 7))
SEEDS_FOR_TUNING = range(0, 200)
# two single-seed estimates of one architecture differ by about this much at 95% (1.96 * sqrt(2) * the benchmark's
# mean seed-to-seed standard deviation, 0.151 points): the old choice rule's "tied with the best"
TIE_MARGIN = 0.42
FIRST_REPORTED_SEED = 10_000


def load(path: Path = BENCH) -> dict[str, dict]:
    return json.loads(Path(path).read_text())


def canonical(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Identities last inside each run of same-shape layers."""
    t = list(tokens)
    for run in IDENTITY_RUNS:
        blocks = [t[i] for i in run if t[i] != "0"]
        for k, i in enumerate(run):
            t[i] = blocks[k] if k < len(blocks) else "0"
    return tuple(t)


def problem(bench: dict, target: float):
    """Layers of three choices ('0' identity, '1' MB k3 e3, '2' MB k5 e6), cost = FLOPs (exact, from the
    benchmark); a choice's own cost is the FLOPs it adds to the all-identity network."""
    from nasdeploy.search import Problem

    base = bench["0" * 8]["flops"]

    def layer_cost(i: int, token: str) -> float:
        return bench["0" * i + token + "0" * (7 - i)]["flops"] - base

    return Problem([("0", "1", "2")] * 8, lambda t: bench["".join(t)]["flops"], layer_cost, target, canonical)


def target_at(bench: dict, quantile: float) -> float:
    flops = sorted(v["flops"] for v in bench.values())
    return flops[int(quantile * (len(flops) - 1))]


def sampler_for(method: str, prob, seed: int, population: int | None = None, tournament: int | None = None):
    from nasdeploy.search.baselines import SAMPLERS

    cls = SAMPLERS["evolution" if method == "search" else method]
    kw = {k: v for k, v in (("population", population), ("tournament", tournament)) if v is not None}
    if method == "regularized-evolution":
        kw = {"population": 10, "tournament": 3, **kw}
    return cls(prob, seed=seed, **kw)


def run_method(bench: dict, method: str, target: float, budget: int, seed: int, estimate_seed: int,
               **kw) -> dict:
    """One run: ``budget`` evaluations through the study machinery; the best estimate, scored on held-out seeds."""
    from nasdeploy.search import study as S

    prob = problem(bench, target)
    study, _ = S.create_or_load(S.open_storage(None), f"macro-{method}-{seed}", ["maximize"], {}, prob, 8, seed,
                                sampler=sampler_for(method, prob, seed, **kw))

    def evaluate(tokens):
        return S.Evaluation(bench["".join(tokens)]["test_acc"][estimate_seed], {})

    S.work(study, S.make_objective(study, prob, evaluate, ("accuracy",), budget), budget)
    trials = S.completed(study)
    best = max(trials, key=lambda t: (t.user_attrs["score"], -t.user_attrs["cost"], -t.number))
    arch = best.user_attrs["arch"].replace("-", "")
    # the rule nasdeploy used to choose by (among the architectures the estimate cannot tell from the best, the
    # most multiply-adds), emulated on the same runs: "cannot tell" = within TIE_MARGIN of the best estimate
    tied = [t for t in trials if t.user_attrs["score"] >= best.user_attrs["score"] - TIE_MARGIN]
    most = max(tied, key=lambda t: (t.user_attrs["cost"], t.user_attrs["score"])).user_attrs["arch"].replace("-", "")
    archs = [t.user_attrs["arch"] for t in trials]
    return {"arch": arch, "held_out": held_out(bench, arch, estimate_seed),
            "most_flops_among_tied": held_out(bench, most, estimate_seed), "estimate": best.user_attrs["score"],
            "evaluated": len(set(archs)), "canonical": all(tuple(a.split("-")) == canonical(tuple(a.split("-")))
                                                           for a in archs),
            "all_feasible": all(t.user_attrs["cost"] <= target for t in trials),
            "costs": [t.user_attrs["cost"] for t in trials]}


def held_out(bench: dict, arch: str, estimate_seed: int) -> float:
    """The mean accuracy over the training seeds the estimate did not use."""
    return statistics.mean(a for s, a in enumerate(bench[arch]["test_acc"]) if s != estimate_seed)


def welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95% interval, for independent samples."""
    d = statistics.mean(a) - statistics.mean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return d, d - 1.959964 * se, d + 1.959964 * se


def compare(bench: dict, runs: int, budget: int, quantile: float, first_seed: int = FIRST_REPORTED_SEED,
            methods: tuple[str, ...] = METHODS, **kw) -> dict:
    """Every method ``runs`` times at one budget and target: mean held-out accuracy, and the search minus each
    baseline with its 95% interval."""
    target = target_at(bench, quantile)
    per: dict[str, list[dict]] = {m: [] for m in methods}
    for r in range(runs):
        seed = first_seed + r
        for i, m in enumerate(methods):
            # each method its own randomness: seeds of different methods never coincide
            per[m].append(run_method(bench, m, target, budget, seed * len(METHODS) + METHODS.index(m), r % 3,
                                     **(kw if m == "search" else {})))
    acc = {m: [x["held_out"] for x in v] for m, v in per.items()}
    feasible = [v["mean_acc"] for v in bench.values() if v["flops"] <= target]
    out = {"target_flops": target, "target_quantile": quantile, "budget": budget, "runs": runs,
           "seeds": [first_seed, first_seed + runs - 1], "feasible": len(feasible),
           "best_feasible_mean_acc": max(feasible),
           "mean": {m: statistics.mean(v) for m, v in acc.items()},
           "sd": {m: statistics.stdev(v) for m, v in acc.items()},
           "all_feasible": {m: all(x["all_feasible"] for x in v) for m, v in per.items()},
           "all_canonical": {m: all(x["canonical"] for x in v) for m, v in per.items()},
           "per_run": {m: [round(x, 4) for x in v] for m, v in acc.items()}}
    if "search" in methods:
        out["search_minus"] = {b: dict(zip(("difference", "ci95_low", "ci95_high"), welch(acc["search"], acc[b])))
                               for b in methods if b != "search"}
        # the same runs chosen by the old rule: paired (the runs are shared), best estimate minus most FLOPs
        old = [x["most_flops_among_tied"] for x in per["search"]]
        d = [a - b for a, b in zip(acc["search"], old)]
        half = 1.959964 * statistics.stdev(d) / math.sqrt(len(d))
        out["choice_rule"] = {"best_estimate": statistics.mean(acc["search"]),
                              "most_flops_among_tied": statistics.mean(old), "difference": statistics.mean(d),
                              "ci95_low": statistics.mean(d) - half, "ci95_high": statistics.mean(d) + half,
                              "tie_margin": TIE_MARGIN}
    return out


def pooled(results: list[dict], budget: int) -> dict:
    """The search minus each baseline over all targets of one budget (every run of every target pooled)."""
    rows = [r for r in results if r["budget"] == budget]
    acc = {m: [x for r in rows for x in r["per_run"][m]] for m in rows[0]["per_run"]}
    return {b: dict(zip(("difference", "ci95_low", "ci95_high"), welch(acc["search"], acc[b])))
            for b in acc if b != "search"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="runs per method, budget and target")
    ap.add_argument("--budgets", default="30,64,100", help="evaluations per run")
    ap.add_argument("--quantiles", default="0.15,0.3,0.5,0.7", help="FLOPs targets as quantiles of the space's FLOPs")
    ap.add_argument("--first-seed", type=int, default=FIRST_REPORTED_SEED,
                    help=f"first search seed (seeds {SEEDS_FOR_TUNING.start}-{SEEDS_FOR_TUNING.stop - 1} tuned the "
                         "search; report on others)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--population", type=int, default=None, help="the search's population (default: its own)")
    ap.add_argument("--tournament", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bench = load()
    methods = tuple(args.methods.split(","))
    t0 = time.perf_counter()
    out = {"command": "python -m benchmarks.search_macro " + " ".join(argv if argv is not None else sys.argv[1:]),
           "benchmark": BENCH.name, "methods": methods, "results": []}
    kw = {k: v for k, v in (("population", args.population), ("tournament", args.tournament)) if v is not None}
    for budget in (int(b) for b in args.budgets.split(",")):
        for q in (float(v) for v in args.quantiles.split(",")):
            r = compare(bench, args.runs, budget, q, args.first_seed, methods, **kw)
            out["results"].append(r)
            means = ", ".join(f"{m} {r['mean'][m]:.3f}" for m in methods)
            diffs = ", ".join(f"vs {b} {d['difference']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}]"
                              for b, d in r.get("search_minus", {}).items())
            print(f"{budget} evaluations, target {r['target_flops'] / 1e6:.1f}M FLOPs (q {q}): {means}; search {diffs}",
                  flush=True)
            if "choice_rule" in r:
                c = r["choice_rule"]
                print(f"   choice: best estimate minus most FLOPs among the tied {c['difference']:+.3f} "
                      f"[{c['ci95_low']:+.3f}, {c['ci95_high']:+.3f}]", flush=True)
        if "search" in methods:
            out.setdefault("pooled", {})[str(budget)] = p = pooled(out["results"], budget)
            print(f"{budget} evaluations, all targets: " + ", ".join(
                f"vs {b} {d['difference']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}]" for b, d in p.items()),
                flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        from nasdeploy.io import provenance, write_json

        write_json(args.json, {**out, "provenance": provenance()})


if __name__ == "__main__":
    main()
