"""Pareto fronts of search candidates, and when two estimates can be told apart. A ``FrontPoint`` is where a
candidate architecture lies on a front (an accuracy against a latency on one engine, with its counts), as
pareto.json, the plots and the report keep it; the search makes them from its ``search.candidate.Candidate``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass
class FrontPoint:
    arch: str
    accuracy: float
    latency_ms: float
    params: int
    macs: int
    feasible: bool
    trial: int
    ci95: tuple[float, float] | None = None  # 95% interval of the accuracy estimate (None for the proxy)
    score: float | None = None  # what the search maximised (top-1, or minus the loss); None: accuracy
    engine: str = ""  # the engine predicted fastest for it
    loss: float | None = None

    def objectives(self, names: tuple[str, ...]) -> tuple[float, ...]:
        acc = self.accuracy if self.score is None else self.score
        return tuple({"accuracy": -acc, "latency": self.latency_ms, "params": float(self.params)}[n] for n in names)


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """a dominates b (all objectives minimised)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(cands: list[FrontPoint], objectives: tuple[str, ...]) -> list[FrontPoint]:
    """Non-dominated feasible candidates (one per architecture)."""
    uniq = {c.arch: c for c in cands if c.feasible}
    pts = list(uniq.values())
    return sorted([c for c in pts if not any(dominates(o.objectives(objectives), c.objectives(objectives))
                                             for o in pts if o is not c)], key=lambda c: c.latency_ms)


def overlaps(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    """Two estimates whose 95% intervals overlap: their difference is not established."""
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]
