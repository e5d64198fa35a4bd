"""The machine's speed when the search starts, against its latency tables; the headroom a choice keeps for it.

A latency table is measured once; the machine it describes does not keep one speed. A shared VM (or a laptop on
battery, or a server whose neighbours wake up) runs the same network 10-25% slower or faster from one quarter hour
to the next (benchmarks/README, "The latency promise"). Two consequences for a promise made at search time:

- the tables' absolute level may be stale: before the search, a few random architectures of the space (where the
  search and an automatic target move: near the median of the range) are timed end to end, in the same clean
  process and by the same clock as the finalists, and each table is rescaled by the median ratio (measured /
  predicted) of its engine (``SpeedCheck.factor``), so that the search's constraint and an automatic target speak
  of the machine as it runs now;
- the speed may change again before the engine is timed by the user: that change is what the bound of a timing
  cannot see. ``headroom`` is the largest change the check saw, in either direction: the factor (1.2 or 1/1.2 is
  20%), or the gap between two speed modes in its own rounds (``bench.stats.Stability``); a caller that wants the
  promise to survive such a change searches under ``target / (1 + headroom)``. On a quiet machine the factors are
  close to 1 and the headroom costs nothing.
"""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from ..bench.stats import RoundLatency
from ..bench.timing import Clock
from ..latency import EngineTables, LatencyTable


@dataclass
class SpeedCheck:
    """One engine's architectures, their table predictions and their end-to-end timing now."""

    engine: str
    archs: list[str]
    predicted_ms: list[float]
    timing: list[RoundLatency]

    @property
    def ratios(self) -> list[float]:
        return [t.median / p for t, p in zip(self.timing, self.predicted_ms)]

    @property
    def factor(self) -> float:
        """The median ratio of measured to predicted latency: over 1, the machine runs slower than its table."""
        return statistics.median(self.ratios)

    def as_dict(self) -> dict:
        return {"engine": self.engine, "factor": round(self.factor, 4),
                "largest_change": round(self.largest_change, 4), "archs": self.archs,
                "predicted_ms": [round(p, 4) for p in self.predicted_ms],
                "measured_ms": [round(t.median, 4) for t in self.timing],
                "timing": [t.as_dict() for t in self.timing]}


    @property
    def largest_change(self) -> float:
        """The larger of the factor's distance from 1 (either way) and the widest gap between two speed modes
        within one architecture's rounds, as a share."""
        gaps = [t.stability.modes[1] / t.stability.modes[0] - 1 for t in self.timing if t.stability.modes]
        return max([max(self.factor, 1 / self.factor) - 1, *gaps])


def check_speed(tables: EngineTables, clock: Clock, archs: int = 3, seed: int = 0,
                progress: bool = False) -> dict[str, SpeedCheck]:
    """``archs`` random architectures of the space (seeded), timed end to end by ``clock`` (its ``rounds``, no
    more) in the finalists' clean process; per engine, their predictions and timings."""
    from ..nas.space import get_space
    from .finalists import CleanTimer

    if archs < 1:
        raise ValueError(f"archs must be at least 1, got {archs}")
    rng = random.Random(seed)
    space = get_space(tables.space)
    picked = [str(space.sample(rng)) for _ in range(archs)]
    timer = CleanTimer(tables, replace(clock, agree=float("inf")), progress)
    out: dict[str, SpeedCheck] = {}
    try:
        for engine in timer.engines():
            table = tables.tables[engine]
            timing = timer.time(engine, picked, None, seed=seed, label="the machine's speed now:")
            out[engine] = SpeedCheck(engine, picked, [table.predict(a) for a in picked], timing)
    finally:
        timer.close()
    return out


def headroom(checks: dict[str, SpeedCheck]) -> float:
    """The largest change of speed the checks saw, either way, as a share (0.2: 20%); 0 without checks."""
    return max((c.largest_change for c in checks.values()), default=0.0)


def rescaled(table: LatencyTable, factor: float, path: str | Path) -> LatencyTable:
    """A copy of ``table`` whose predictions are ``factor`` times its own (every calibration term scaled), saved at
    ``path``; its provenance says by how much and why."""
    cal = dict(table.calibration or {"a": 1.0})
    for k in ("a", "b", "c", "d"):
        if k in cal:
            cal[k] = cal[k] * factor
    copy = LatencyTable(**table.setting(), stem=table.stem, head=table.head, layers=table.layers, calibration=cal,
                        device_name=table.device_name,
                        provenance={**table.provenance, "rescaled": {
                            "factor": round(factor, 4), "from": str(table.path),
                            "why": "the machine's speed when the search started, against this table "
                                   "(nasdeploy.search.speed)"}})
    copy.save(path)
    return copy
