"""The search's sampler: steady-state evolution kept to the feasible region, started near the latency target
(the supernet's path samplers, which choose the subnets a training step trains, are ``nasdeploy.nas.paths``).

Every architecture it proposes meets the target and builds a network not evaluated before, so no evaluation is
spent on one that cannot ship or on a network already scored:

* **Start near the target.** Until ``population`` trials are complete, each trial draws a feasible architecture whose
  cost lies in the top ``band`` of [cheapest, target]: under a latency cap the accurate networks are the large ones
  the cap still admits, and a population spread over the whole feasible range spends most of a small budget far
  below it (measured on NAS-Bench-Macro: benchmarks/README, "The search against NAS-Bench-Macro").
* **Then evolve.** The population is the ``population`` best complete trials (steady state: a child replaces the
  worst); a parent is the best of ``tournament`` of them drawn at random; its child changes one layer to another
  choice, and a child over the target is repaired one choice cheaper at a time in random layers, so it stays as
  close to its parent, and to the target, as the target allows.
* **Each network once.** Children are put in canonical form (``Problem.canonical``: in a space with identity
  layers, architectures that only move an identity inside a stage build the same network) and a child already in
  the study is drawn again.

With several objectives, selection ranks by Pareto level first (non-dominated sorting over the trials' values in
the study's directions), then by the first objective.

The draws of a trial are seeded by (seed, trial number); the population is what the study holds when the trial
starts, so several workers sharing one study each evolve from everything evaluated so far.
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import TrialState

from ..pareto import dominates
from .problem import Problem, Tokens

NOVELTY_TRIES = 50
# Optuna's private API, kept to one call (tested with Optuna 5.0 and 5.1: pyproject bounds it to <5.2):
# ``FrozenTrial._trial_id``, the storage's id of a trial, which ``record_heartbeat`` takes and no public attribute
# gives (Optuna's own heartbeat thread reads it the same way).
POPULATION = 8
TOURNAMENT = 4
BAND = 0.2


def param_name(i: int) -> str:
    return f"L{i:02d}"


def pareto_levels(values: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """Non-dominated sorting: level 0 is the front, level 1 the front of the rest, ..."""
    signed = [tuple(-v if m else v for v, m in zip(vals, maximize)) for vals in values]  # all minimised
    level = [-1] * len(signed)
    rest, k = set(range(len(signed))), 0
    while rest:
        front = {i for i in rest if not any(dominates(signed[j], signed[i]) for j in rest if j != i)}
        for i in front:
            level[i] = k
        rest -= front
        k += 1
    return level


class FeasibleEvolutionSampler(BaseSampler):
    """Optuna sampler: feasible, near-target, steady-state evolution over one categorical parameter per layer."""

    def __init__(self, problem: Problem, population: int = POPULATION, tournament: int = TOURNAMENT,
                 band: float = BAND, seed: int = 0, storage: BaseStorage | None = None) -> None:
        """``storage``: the storage the study lives in (a heartbeat is recorded there as soon as a trial exists,
        where the storage beats one)."""
        self.problem, self.population, self.tournament, self.band, self.seed = (problem, max(population, 1),
                                                                                  max(tournament, 1), band, seed)
        self.distributions = {param_name(i): CategoricalDistribution(list(c)) for i, c in enumerate(problem.layers)}
        beats = isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None
        self.heartbeat_storage = storage if beats else None

    # -------------------------------------------------------------- optuna's sampler interface
    def before_trial(self, study: "optuna.Study", trial) -> None:
        """A heartbeat as soon as the trial exists: Optuna's heartbeat thread starts only once the trial's
        parameters are drawn, so a worker killed while drawing them would leave a trial running forever."""
        if self.heartbeat_storage is not None:
            self.heartbeat_storage.record_heartbeat(trial._trial_id)  # private: see the note at the top

    def infer_relative_search_space(self, study: "optuna.Study", trial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)  # every layer from the first trial on: all values come from sample_relative

    def sample_relative(self, study: "optuna.Study", trial, search_space: dict[str, BaseDistribution]) -> dict:
        tokens = self.propose(study, trial.number)
        return {param_name(i): t for i, t in enumerate(tokens)}

    def sample_independent(self, study, trial, param_name_, param_distribution):  # pragma: no cover - not reached
        raise RuntimeError(f"{param_name_} was not proposed by the search's sampler")

    # -------------------------------------------------------------- the proposal
    def propose(self, study: "optuna.Study", number: int) -> Tokens:
        """Draws (seeded by the trial's number) until one is a network the study has not seen, in canonical form;
        after ``NOVELTY_TRIES``, as many draws from anywhere in the feasible region (a uniform draw, repaired), so
        that a repeat, which spends a trial of the budget on nothing new, comes only when the feasible networks
        are nearly all seen; then the last one."""
        rng = random.Random(f"{self.seed}:{number}")
        trials = study.get_trials(deepcopy=False)
        seen = {t.user_attrs.get("arch") for t in trials}
        draw = self.drawer(study, trials)
        anywhere = lambda r: self.problem.repair(self.problem.draw(r, 0.0), r)  # noqa: E731
        tokens = self.problem.cheapest
        for k in range(2 * NOVELTY_TRIES):
            tokens = self.problem.canonical((draw if k < NOVELTY_TRIES else anywhere)(rng))
            if "-".join(tokens) not in seen:
                return tokens
        return tokens

    def drawer(self, study: "optuna.Study", trials: list) -> Callable[[random.Random], Tokens]:
        """One draw of a proposal, given the study as it stands (read once per proposal): near the target until the
        population is complete, then a mutated, repaired tournament winner."""
        parents = self.parents(study, trials)
        if len(parents) < self.population:
            return lambda rng: self.problem.near_target(rng, self.band)
        return lambda rng: self.problem.repair(self.problem.mutate(self.select(parents, rng), rng), rng)

    def parents(self, study: "optuna.Study", trials: list) -> list[tuple[Tokens, tuple[float, ...], int]]:
        """The population: the ``population`` best complete, feasible trials (best first)."""
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
                and "arch" in t.user_attrs and "refused" not in t.user_attrs]
        if not done:
            return []
        maximize = [d == StudyDirection.MAXIMIZE for d in study.directions]
        levels = pareto_levels([t.values for t in done], maximize) if len(maximize) > 1 else [0] * len(done)
        first = [(t.values[0] if maximize[0] else -t.values[0]) for t in done]
        order = sorted(range(len(done)), key=lambda i: (levels[i], -first[i], done[i].number))
        return [(tuple(done[i].user_attrs["arch"].split("-")), (levels[i], -first[i]), done[i].number)
                for i in order[: self.population]]

    def select(self, parents: list[tuple[Tokens, tuple[float, ...], int]], rng: random.Random) -> Tokens:
        """Tournament: the best of ``tournament`` members drawn at random."""
        pool = rng.sample(parents, min(self.tournament, len(parents)))
        return min(pool, key=lambda p: (p[1], p[2]))[0]
