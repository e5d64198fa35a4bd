"""Latency-constrained multi-objective search over a supernet and the latency tables of the candidate engines.

Optuna supplies the study and its storage (SQLite by default, PostgreSQL for several workers: ``study``); nasdeploy
writes the problem (``problem``: feasibility, canonical forms), the sampler that proposes what to evaluate
(``sampler``: feasible steady-state evolution started near the target; not to be confused with the supernet's path
samplers, ``nasdeploy.nas.paths``), the standing baselines a search must beat (``baselines``), the estimates
compared paired on the same search-validation images (``estimate``), one record per evaluated architecture from its
trial to the choice (``candidate``), the finalists timed end to end and raced before the choice (``finalists``), the
machine's speed against the tables when a search starts (``speed``) and the job
with its outputs (``job``, ``outputs``). ``config``: what a search is given (``SearchConfig``, whose fields are the
study's settings) and what it returns (``SearchResult``: the fronts' points, ``FinalistRecord``, ``Reference``,
``Chosen``).
"""
from .estimate import CRITERIA, Estimate, paired
from .candidate import Candidate
from .config import (OBJECTIVES, Chosen, FinalistRecord, Reference, ResolvedFront, SearchConfig, SearchInputs,
                     SearchResult)
from .job import (ProxyEvaluator, SearchSetup, SupernetEvaluator, check_lut_matches, load_eval_data, report, search,
                  search_worker, setup_search, study_config)
from .problem import Problem, auto_target, check_target, parse_latency, space_problem

__all__ = ["CRITERIA", "Candidate", "Chosen", "Estimate", "FinalistRecord", "OBJECTIVES", "Problem", "ProxyEvaluator",
           "Reference", "ResolvedFront", "SearchConfig", "SearchInputs", "SearchResult", "SearchSetup",
           "SupernetEvaluator", "auto_target", "check_lut_matches", "check_target", "load_eval_data", "paired",
           "parse_latency", "report", "search", "search_worker", "setup_search", "space_problem", "study_config"]
