"""Path samplers: which subnets (paths through the supernet) a training step trains. FairNAS strict fairness and
SPOS uniform single-path sampling. (Not the search's sampler, which proposes architectures to evaluate:
``nasdeploy.search.sampler``.)

Strict fairness: each step draws, per layer, an independent random permutation of its
choices; path k takes the k-th entry of every layer, so every choice of every layer is
trained exactly once per step (m = number of choices paths, gradients accumulated, one update).

Layers with fewer choices (SCARLET: 12 where no skip is allowed, 13 elsewhere): m is the
largest count; a layer with n < m choices takes a permutation of all n and then m - n more
choices drawn uniformly *without* replacement from a fresh permutation. Every choice is
still trained at least once per step, none more than twice, and over steps each choice of a
layer gets the same expected number of updates (m / n per step).
"""
from __future__ import annotations

import random
from typing import Any, Protocol

from .space import SearchSpace


class PathSampler(Protocol):
    name: str

    def paths(self) -> list[list[int]]:
        """The choice indices of each path to train this step."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _Seeded:
    def __init__(self, space: SearchSpace, seed: int) -> None:
        self.rng = random.Random(seed)
        self.counts = [len(space.choices_at(i)) for i in range(space.num_layers)]

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {"name": self.name, "version": version, "internal": list(internal), "gauss": gauss}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate((state["version"], tuple(state["internal"]), state["gauss"]))


class FairPathSampler(_Seeded):
    """FairNAS strict fairness: m paths per step, every choice of every layer trained at least once per step."""

    name = "fair"

    @property
    def num_paths(self) -> int:
        return max(self.counts)

    def paths(self) -> list[list[int]]:
        m = self.num_paths
        columns = []
        for n in self.counts:
            order = list(range(n))
            self.rng.shuffle(order)
            if n < m:
                extra = list(range(n))
                self.rng.shuffle(extra)
                order += extra[: m - n]
            columns.append(order)
        return [[col[k] for col in columns] for k in range(m)]


class UniformPathSampler(_Seeded):
    """SPOS: one path per step, each layer's choice uniform at random."""

    name = "uniform"
    num_paths = 1

    def paths(self) -> list[list[int]]:
        return [[self.rng.randrange(n) for n in self.counts]]


PATH_SAMPLERS = {"fair": FairPathSampler, "uniform": UniformPathSampler}


def make_path_sampler(name: str, space: SearchSpace, seed: int) -> FairPathSampler | UniformPathSampler:
    """The path sampler ``name`` (``train-supernet --sampler``: fair or uniform)."""
    from ..errors import UsageError

    try:
        return PATH_SAMPLERS[name](space, seed)
    except KeyError:
        raise UsageError(f"unknown sampler '{name}': choose one of {', '.join(PATH_SAMPLERS)}") from None
