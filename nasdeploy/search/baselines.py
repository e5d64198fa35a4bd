"""Standing baselines a search must beat, as Optuna samplers over the same ``Problem`` (feasible proposals in
canonical form, each network once), so that they run through the same study, budget and evaluation as the search:

* ``RandomFeasibleSampler``: random search over the feasible set (Li & Talwalkar 2019): uniform draws, those over
  the target drawn again;
* ``RandomNearTargetSampler``: random search over the top ``band`` of the feasible cost range;
* ``RegularizedEvolutionSampler``: regularized evolution with aging (Real et al., AAAI 2019): a random first
  population, then the best of ``tournament`` random members of the ``population`` most recent trials is mutated
  in one layer (a child over the target is drawn again) and the oldest member dies.
"""
from __future__ import annotations

import random
from typing import Callable

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from .sampler import NOVELTY_TRIES, FeasibleEvolutionSampler
from .problem import Problem, Tokens

UNIFORM_DRAWS = 20_000  # per proposal, before a random search gives up on meeting the target by chance


class _Baseline(FeasibleEvolutionSampler):
    """The search sampler's plumbing (one parameter per layer, seeded draws, canonical forms, novelty:
    ``FeasibleEvolutionSampler.propose``) with another draw."""

    def drawer(self, study: "optuna.Study", trials: list) -> Callable[[random.Random], Tokens]:
        return lambda rng: self.draw(study, trials, rng)

    def draw(self, study, trials: list, rng: random.Random) -> Tokens:  # pragma: no cover - abstract
        raise NotImplementedError


def uniform_feasible(problem: Problem, rng: random.Random, floor: float = float("-inf")) -> Tokens:
    """A uniform draw from the architectures meeting the target whose cost is at least ``floor``."""
    for _ in range(UNIFORM_DRAWS):
        t = problem.draw(rng, 0.0)
        if problem.feasible(t) and problem.cost(t) >= floor:
            return t
    return problem.near_target(rng, 1.0 if floor == float("-inf") else 0.2)


class RandomFeasibleSampler(_Baseline):
    def draw(self, study, trials, rng):
        return uniform_feasible(self.problem, rng)


class RandomNearTargetSampler(_Baseline):
    def draw(self, study, trials, rng):
        return uniform_feasible(self.problem, rng, self.problem.band_floor(self.band))


class RegularizedEvolutionSampler(_Baseline):
    def draw(self, study, trials, rng):
        done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.values is not None
                       and "arch" in t.user_attrs), key=lambda t: t.number)
        if len(done) < self.population:
            return uniform_feasible(self.problem, rng)
        alive = done[-self.population:]  # aging: the oldest die
        sign = 1.0 if study.directions[0] == StudyDirection.MAXIMIZE else -1.0
        parent = max(rng.sample(alive, min(self.tournament, len(alive))), key=lambda t: sign * t.values[0])
        tokens = tuple(parent.user_attrs["arch"].split("-"))
        for _ in range(NOVELTY_TRIES):
            child = self.problem.mutate(tokens, rng)
            if self.problem.feasible(child):
                return child
        return tokens


SAMPLERS = {"evolution": FeasibleEvolutionSampler, "random": RandomFeasibleSampler,
            "random-near-target": RandomNearTargetSampler, "regularized-evolution": RegularizedEvolutionSampler}
