"""The search machinery against known truth (NAS-Bench-Macro: 6,561 fully trained architectures): every evaluation
meets the target, the first generation spreads over the feasible range, and at equal evaluations the search's
best beats random search's best over many search seeds."""
from __future__ import annotations

import os

import pytest

from benchmarks import search_macro as M

needs_bench = pytest.mark.skipif(not M.BENCH.exists(), reason="../shared/datasets is not beside the checkout")


@pytest.fixture(scope="module")
def bench():
    if not M.BENCH.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs {M.BENCH}")
        pytest.skip("../shared/datasets is not beside the checkout")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return M.load()


@pytest.mark.parametrize("quantile", [0.3, 0.5])
def test_every_evaluation_is_feasible_and_the_first_generation_spreads(bench, quantile):
    target = M.target_at(bench, quantile)
    lo = min(v["flops"] for v in bench.values())
    for seed in range(3):
        r = M.search_best(bench, target, 40, 10, seed)
        assert r["all_feasible"] and r["evaluated"] >= 38  # novel architectures, bar the odd repeat
        first = r["costs"][:10]
        assert (max(first) - min(first)) / (target - lo) >= 0.6, first  # not gathered near the median


@pytest.mark.parametrize("quantile", [0.3, 0.5])
def test_the_search_beats_random_search_at_equal_evaluations(bench, quantile):
    """20 search seeds, 100 evaluations each, one training seed's accuracy as the noisy estimate; judged on the mean
    over the three training seeds (measured: +0.17 points, 95% interval [+0.08, +0.26], at both targets)."""
    r = M.compare(bench, 20, 100, 10, quantile)
    assert all(x["search_all_feasible"] for x in r["rows"])
    assert r["difference"] > 0 and r["difference_ci95"][0] > 0, (r["difference"], r["difference_ci95"])
