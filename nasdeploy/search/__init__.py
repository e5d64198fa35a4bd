"""Latency-constrained multi-objective search over a supernet and the latency tables of the candidate engines.

Optuna supplies NSGA-II (kept to the feasible region: ``sampler``, which proposes architectures to evaluate; not to
be confused with the supernet's path samplers, ``nasdeploy.nas.paths``) and the storage (SQLite by default, PostgreSQL
for several workers: ``study``); nasdeploy writes the problem (``problem``), the estimates compared paired on the
same search-validation images (``estimate``) and the job with its outputs (``job``).
"""
from .estimate import CRITERIA, Estimate, choose, paired
from .config import OBJECTIVES, SearchConfig, SearchInputs, SearchResult
from .job import (ProxyEvaluator, SearchSetup, SupernetEvaluator, check_lut_matches, load_eval_data, report, search,
                  search_worker, setup_search)
from .problem import Problem, auto_target, check_target, parse_latency, space_problem

__all__ = ["CRITERIA", "OBJECTIVES", "Estimate", "Problem", "ProxyEvaluator", "SearchConfig", "SearchInputs",
           "SearchResult", "SearchSetup", "SupernetEvaluator", "auto_target", "check_lut_matches", "check_target",
           "choose", "load_eval_data", "paired", "parse_latency", "report", "search", "search_worker", "setup_search",
           "space_problem"]
