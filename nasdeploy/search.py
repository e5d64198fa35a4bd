"""Latency-constrained multi-objective search (NSGA-II from Optuna) over a supernet and a latency table.

Optuna supplies the evolutionary machinery and the storage (SQLite by default, so a search is
resumable and several workers can share one study). Written here: the encoding (one categorical
parameter per layer), the supernet evaluator (BN recalibration + top-1 on held-out data, cached
per architecture) and the outputs (Pareto front, plot, card of the chosen architecture).
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .errors import ArtifactError, UsageError
from .latency.table import LatencyTable
from .net import Network, count_macs, count_params
from .pareto import Candidate, pareto_front
from .progress import progress_bar
from .space import Arch, SearchSpace, get_space
from .supernet import SPACE_FLAVOUR

log = logging.getLogger(__name__)
OBJECTIVES = ("accuracy", "latency", "params")
_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}


def parse_latency(text: str) -> float:
    """'1.2ms', '850us', '0.002s' -> milliseconds; a bare or negative number is refused."""
    m = re.fullmatch(r"\s*([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)\s*(ms|us|µs|s)\s*", str(text), re.IGNORECASE)
    if not m:
        raise UsageError(f"latency target '{text}' needs a unit: write e.g. 1.2ms or 850us")
    value = float(m[1]) * _UNITS[m[2].lower()]
    if not value > 0:
        raise UsageError(f"latency target '{text}' must be positive")
    return value


@dataclass
class SearchConfig:
    target_ms: float
    objectives: tuple[str, ...] = ("accuracy", "latency")
    population: int = 16
    generations: int = 4
    seed: int = 0
    calib_batches: int = 4
    calib_batch_size: int = 64
    eval_images: int = 1000
    accuracy_proxy: bool = False
    device: str = "cpu"
    storage: str | None = None
    study_name: str | None = None

    @property
    def trials(self) -> int:
        return self.population * self.generations


# ------------------------------------------------------------------ evaluators

class SupernetEvaluator:
    """Top-1 (percent) of an architecture's subnet, BN recalibrated, on a fixed held-out subset; cached."""

    label = "supernet top-1 (%)"

    def __init__(self, supernet, calib: list, val: list, device: str = "cpu") -> None:
        self.supernet, self.calib, self.val, self.device = supernet, calib, val, device
        self.cache: dict[str, float] = {}
        self.images = sum(len(b[1]) for b in val)

    def interval(self, top1: float) -> tuple[float, float]:
        """95% (Wilson) interval of a top-1 measured on this evaluator's held-out images."""
        from .evaluate import wilson

        lo, hi = wilson(round(top1 * self.images / 100.0), self.images)
        return round(lo, 3), round(hi, 3)

    def __call__(self, arch: Arch) -> float:
        key = str(arch)
        if key not in self.cache:
            from .evaluate import evaluate_subnet

            self.cache[key] = evaluate_subnet(self.supernet, arch, self.calib, self.val, self.device).top1
        return self.cache[key]

    def subnet(self, arch: Arch) -> Network:
        from .evaluate import recalibrated_subnet

        return recalibrated_subnet(self.supernet, arch, self.calib, self.device)


class ProxyEvaluator:
    """Predictor-only mode: NOT accuracy. Scores an architecture by log10 of its MACs (bigger ~ better)."""

    label = "PROXY: log10(MACs), not accuracy"

    def __init__(self, space: SearchSpace, num_classes: int, stride_plan, input_size: int) -> None:
        self.space, self.num_classes, self.stride_plan, self.input_size = space, num_classes, stride_plan, input_size
        self.cache: dict[str, float] = {}

    def __call__(self, arch: Arch) -> float:
        key = str(arch)
        if key not in self.cache:
            net = Network(arch, SPACE_FLAVOUR[self.space.name], self.num_classes, self.stride_plan)
            self.cache[key] = math.log10(count_macs(net, self.input_size))
        return self.cache[key]


# ----------------------------------------------------------------- consistency

def check_lut_matches(table: LatencyTable, space: str, stride_plan, num_classes: int, input_size: int) -> None:
    if table.space != space:
        raise ArtifactError(f"latency table {table.path} is for the {table.space} space, the supernet is {space}: "
                            f"measure one with --space {space}")
    if (table.stride_plan or None) != (list(stride_plan) if stride_plan else None) or table.input_size != input_size:
        raise ArtifactError(f"latency table {table.path} was measured for {table.input_size}px inputs "
                            f"(strides {table.stride_plan}), the supernet is for {input_size}px "
                            f"(strides {list(stride_plan) if stride_plan else None}): measure a matching table")
    if table.num_classes != num_classes:
        raise ArtifactError(f"latency table {table.path} has a {table.num_classes}-class head, the supernet "
                            f"{num_classes}: measure it with --num-classes {num_classes}")
    if not table.complete:
        raise ArtifactError(f"latency table {table.path} is incomplete: rerun `nasdeploy latency-table` to finish it")


def check_target(table: LatencyTable, target_ms: float) -> tuple[Arch, float]:
    arch, fastest = table.fastest()
    if target_ms < fastest:
        raise UsageError(f"no architecture can meet {target_ms:g} ms on {table.describe()}: the fastest possible "
                         f"is predicted at {fastest:.3f} ms ({arch})")
    return arch, fastest


# ---------------------------------------------------------------------- search

@dataclass
class SearchResult:
    candidates: list[Candidate]
    front: list[Candidate]
    best: Candidate | None
    fastest_ms: float
    accuracy_label: str
    references: dict[str, dict] = field(default_factory=dict)
    # this invocation's trials, new supernet evaluations (cached architectures are not re-evaluated), wall time
    throughput: dict = field(default_factory=dict)


def run_search(space: SearchSpace, table: LatencyTable, evaluator: Callable[[Arch], float], cfg: SearchConfig,
               out: Path, make_network: Callable[[Arch], Network], input_size: int,
               progress: bool = True) -> SearchResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for o in cfg.objectives:
        if o not in OBJECTIVES:
            raise UsageError(f"unknown objective '{o}': choose from {', '.join(OBJECTIVES)}")
    if "accuracy" not in cfg.objectives or "latency" not in cfg.objectives:
        raise UsageError("--objectives must include accuracy and latency")
    if cfg.population < 2 or cfg.generations < 1:
        raise UsageError("--population must be at least 2 and --generations at least 1")
    fastest_arch, fastest = check_target(table, cfg.target_ms)
    out.mkdir(parents=True, exist_ok=True)
    storage = cfg.storage or f"sqlite:///{(out / 'search.db').resolve()}"
    name = cfg.study_name or f"nasdeploy-{space.name}-{cfg.target_ms:g}ms-{'-'.join(cfg.objectives)}"
    directions = ["maximize" if o == "accuracy" else "minimize" for o in cfg.objectives]
    sampler = optuna.samplers.NSGAIISampler(population_size=cfg.population, seed=cfg.seed)
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler,
                                load_if_exists=True)
    if not study.trials:  # seed with the fastest architecture: the constraint can always be met
        study.enqueue_trial({f"L{i:02d}": c.token for i, c in enumerate(fastest_arch)})
    def completed() -> list:
        return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))

    cache = getattr(evaluator, "cache", {})
    for t in completed():
        cache.setdefault(t.user_attrs["arch"], t.user_attrs["accuracy"])

    def objective(trial: "optuna.Trial") -> tuple[float, ...]:
        tokens = [trial.suggest_categorical(f"L{i:02d}", [c.token for c in space.choices_at(i)])
                  for i in range(space.num_layers)]
        arch = space.validate("-".join(tokens))
        lat = table.predict(arch)
        trial.set_user_attr("arch", str(arch))
        trial.set_user_attr("latency_ms", lat)
        trial.set_constraint("latency", lat - cfg.target_ms)  # feasible when <= 0
        acc = evaluator(arch)
        net = make_network(arch)
        params = count_params(net)
        trial.set_user_attr("accuracy", acc)
        trial.set_user_attr("params", params)
        trial.set_user_attr("macs", count_macs(net, input_size))
        return tuple({"accuracy": acc, "latency": lat, "params": float(params)}[o] for o in cfg.objectives)

    done = len(completed())
    remaining = max(cfg.trials - done, 0)
    cached_before, t0 = len(cache), time.perf_counter()
    if done:
        log.info("continuing study %s: %d of %d trials already done", name, done, cfg.trials)
    if remaining:
        bar = progress_bar(progress)
        task = bar.add_task(f"search {space.name} <= {cfg.target_ms:g} ms", total=cfg.trials, completed=done) \
            if bar else None
        cb = [lambda s, t: bar.update(task, advance=1)] if bar else []
        try:
            if bar:
                bar.start()
            study.optimize(objective, n_trials=remaining, callbacks=cb, gc_after_trial=False)
        finally:
            if bar:
                bar.stop()
    cands = [Candidate(t.user_attrs["arch"], t.user_attrs["accuracy"], t.user_attrs["latency_ms"],
                       t.user_attrs["params"], t.user_attrs["macs"], t.user_attrs["latency_ms"] <= cfg.target_ms,
                       t.number, interval_of(evaluator, t.user_attrs["accuracy"]))
             for t in completed()]
    feasible = [c for c in cands if c.feasible]
    best = max(feasible, key=lambda c: (c.accuracy, -c.latency_ms)) if feasible else None
    seconds = time.perf_counter() - t0
    evaluated = len(cache) - cached_before
    speed = {"trials": remaining, "evaluated": evaluated, "seconds": round(seconds, 2),
             "evaluated_per_minute": round(60 * evaluated / seconds, 2) if remaining and seconds > 0 else None}
    return SearchResult(cands, pareto_front(cands, cfg.objectives), best, fastest,
                        getattr(evaluator, "label", "accuracy"), throughput=speed)


def reference_points(space: str, table: LatencyTable, evaluator: Callable[[Arch], float] | None) -> dict[str, dict]:
    """Zoo models of this space family placed in the same table (and, with a supernet, scored as its subnets)."""
    from . import zoo

    out: dict[str, dict] = {}
    for name, card in zoo.cards().items():
        if card.flavour != SPACE_FLAVOUR[space] or card.num_classes != 1000:
            continue
        try:
            arch = get_space(space).validate(card.arch)
        except Exception:
            continue
        acc = evaluator(arch) if evaluator is not None else None
        out[name] = {"arch": str(arch), "latency_ms": table.predict(arch), "accuracy": acc,
                     "ci95": interval_of(evaluator, acc) if acc is not None else None}
    return out


def interval_of(evaluator, accuracy: float) -> tuple[float, float] | None:
    return evaluator.interval(accuracy) if hasattr(evaluator, "interval") else None


def load_eval_data(data: str, calib_batches: int, calib_batch_size: int, eval_images: int,
                   input_size: int = 224) -> tuple[list, list]:
    """Fixed calibration batches (train split) and held-out evaluation batches, materialised once."""
    from torch.utils.data import DataLoader, Subset

    from . import data as D

    if data == D.BUILTIN:
        train, val = D.fashion_mnist("train"), D.fashion_mnist("val")
    else:
        tf = D.official_eval_transform(input_size)
        train = D.image_folder(D.resolve_split(data, "train"), tf)
        val = D.image_folder(D.resolve_split(data, "val"), tf)
    g = torch.Generator().manual_seed(1234)
    idx = torch.randperm(len(train), generator=g)[: calib_batches * calib_batch_size].tolist()
    calib = list(DataLoader(Subset(train, idx), batch_size=calib_batch_size))
    vidx = list(range(min(eval_images, len(val))))
    val_batches = list(DataLoader(Subset(val, vidx), batch_size=250))
    return calib, val_batches
