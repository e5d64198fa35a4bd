"""The search's sampler: Optuna's NSGA-II, kept to the feasible region, proposing the architectures a search
evaluates (the supernet's path samplers, which choose the subnets a training step trains, are
``nasdeploy.nas.paths``).

Every architecture the sampler proposes meets the target, so no evaluation is spent on one that cannot ship
(Optuna's own constraint handling ranks infeasible trials below feasible ones but still evaluates them):

* the first generation is spread over the whole feasible cost range: trial k of a generation draws from the k-th
  of ``population`` equal bins of [cheapest, target] (random choices gather near the median cost, which a target
  below it leaves almost empty);
* later generations take NSGA-II's own parent selection, uniform crossover and mutation (resampling a layer
  uniformly, as its default does), and a child over the target is repaired by cheaper choices in random layers;
* a child that repeats an architecture already in the study is drawn again (up to ``NOVELTY_TRIES`` times).

The draws of a trial are seeded by (seed, trial number), so several workers sharing one study propose the same
architectures for the same trials.
"""
from __future__ import annotations

import random
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import NSGAIISampler
from optuna.storages import BaseStorage, RDBStorage

from .problem import Problem

NOVELTY_TRIES = 30
# Optuna's private API, kept to two calls (tested with Optuna 5.0 and 5.1: pyproject bounds it to <5.2):
# * ``FrozenTrial._trial_id``: the storage's id of a trial, which ``record_heartbeat`` takes and no public attribute
#   gives (Optuna's own heartbeat thread reads it the same way);
# * ``NSGAIISampler._child_generation_strategy``: NSGA-II's crossover and mutation, which the sampler exposes only
#   as a whole ``sample_relative``; building our own strategy would import it from a private module instead.


def param_name(i: int) -> str:
    return f"L{i:02d}"


class FeasibleNSGAIISampler(NSGAIISampler):
    """``storage``: the storage the study lives in (a heartbeat is recorded there as soon as a trial exists, where
    the storage beats one)."""

    def __init__(self, problem: Problem, population: int, seed: int = 0, storage: BaseStorage | None = None) -> None:
        super().__init__(population_size=population, seed=seed)
        self.problem, self.population, self.seed = problem, population, seed
        self.distributions = {param_name(i): CategoricalDistribution(list(c)) for i, c in enumerate(problem.layers)}
        beats = isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None
        self.heartbeat_storage = storage if beats else None

    def before_trial(self, study: "optuna.Study", trial) -> None:
        """A heartbeat as soon as the trial exists: Optuna's heartbeat thread starts only once the trial's
        parameters are drawn, so a worker killed while drawing them would leave a trial running forever."""
        super().before_trial(study, trial)
        if self.heartbeat_storage is not None:
            self.heartbeat_storage.record_heartbeat(trial._trial_id)  # private: see the note at the top

    def infer_relative_search_space(self, study: "optuna.Study", trial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)  # every layer, from the first trial on: all values come from sample_relative

    def sample_relative(self, study: "optuna.Study", trial, search_space: dict[str, BaseDistribution]) -> dict:
        rng = random.Random(f"{self.seed}:{trial.number}")
        generation = self.get_trial_generation(study, trial)
        parents = self.get_parent_population(study, generation)
        seen = {t.user_attrs.get("arch") for t in study.get_trials(deepcopy=False)}
        tokens = None
        for attempt in range(NOVELTY_TRIES):
            if not parents:
                tokens = self.problem.stratified(rng, (trial.number + attempt) % self.population, self.population)
            else:
                tokens = self.problem.repair(self._child(study, search_space, parents, rng), rng)
            if "-".join(tokens) not in seen:
                break
        return {param_name(i): t for i, t in enumerate(tokens)}

    def _child(self, study, search_space: dict, parents: list, rng: random.Random) -> tuple[str, ...]:
        """NSGA-II's crossover and mutation; the layers it leaves to be resampled (mutated) drawn uniformly."""
        # private: see the note at the top
        params: dict[str, Any] = self._child_generation_strategy(study, search_space, parents)
        return tuple(params[n] if n in params else rng.choice(d.choices) for n, d in self.distributions.items())
