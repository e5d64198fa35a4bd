"""The one rule that chooses the engine to ship, used by `bench --accuracy` and by the pipeline's deploy stage.

Among the engines that passed the accuracy gate and were timed, the fastest whose lead over the reference engine
(plain ONNX Runtime fp32 on the CPU, torch.compile on CUDA: ``backends.reference_engine``) is established ships:
established means faster in every interleaved bench round, compared round by round, so that a slow spell of the
machine, which touches both rows of a round, cannot make the difference. Where no engine's lead is established, the
reference ships.

With a latency target, the promise comes first: where some passing engines hold the target (their bench verdict
is "meets": the upper bound of the median at the confidence asked is under the target), only they compete; if the
reference is not among them, the fastest of them ships.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


@dataclass(kw_only=True)
class Contender:
    """An engine as the deploy rule reads it: its bench figures and its accuracy gate."""

    engine: str  # BACKEND:PRECISION
    throughput: float | None  # images/s at the batch compared (None: not timed)
    round_medians: list[float] | None  # ms per interleaved bench round
    gate: dict | None  # the accuracy gate's record (``passed``); None: not scored
    files: dict | None = None  # the files it ran, with their sha256
    verdict: str | None = None  # against a latency target: meets, misses, undecided

    @property
    def passed(self) -> bool:
        return bool((self.gate or {}).get("passed"))


@dataclass(kw_only=True)
class Choice:
    """What ships and why."""

    engine: str
    fastest: str  # the engine with the highest throughput in the pool
    reference: str
    faster_in_every_round: bool | None  # the shipped engine's lead over the reference (None: it is the reference)
    faster_in_every_round_by_engine: dict[str, bool | None]
    throughput: float
    files: dict | None
    holding_target: list[str] = field(default_factory=list)  # the passing engines whose verdict is meets
    why: str = ""


def faster_every_round(rounds: Sequence[float] | None, ref_rounds: Sequence[float] | None) -> bool | None:
    """Whether an engine was faster than the reference in every round both ran (None: nothing to compare). Both
    run the clock's first rounds together; after them only rows whose figure is not decided are timed
    again, each in the same interleaved round as the others still running, so round k pairs with round k."""
    if not rounds or not ref_rounds:
        return None
    return all(a < b for a, b in zip(rounds, ref_rounds))


def choose_engine(candidates: Sequence[Contender], reference: str) -> Choice | None:
    """What ships among ``candidates`` and why, or None when no engine passed the gate and was timed."""
    passing = [c for c in candidates if c.passed and c.throughput]
    if not passing:
        return None
    holding = [c for c in passing if c.verdict == "meets"]
    pool = holding or passing
    ranked = sorted(pool, key=lambda c: -c.throughput)
    ref_all = next((c for c in candidates if c.engine == reference and c.round_medians), None)
    ref = ref_all if ref_all in pool else None
    verdicts = {c.engine: (None if c is ref_all else faster_every_round(c.round_medians,
                                                                       ref_all.round_medians if ref_all else None))
                for c in ranked}
    best = next((c for c in ranked if c is ref or verdicts[c.engine] is not False), ref or ranked[0])
    fastest = ranked[0]
    if best is ref:
        established = False if fastest is not ref else None
    else:
        established = verdicts[best.engine]
    target_rule = bool(holding) and ref_all is not None and ref is None
    return Choice(engine=best.engine, fastest=fastest.engine, reference=reference,
                  faster_in_every_round=established, faster_in_every_round_by_engine=verdicts,
                  throughput=best.throughput, files=best.files, holding_target=[c.engine for c in holding],
                  why=("the reference does not hold the latency target and this engine does" if target_rule else
                       "faster than the reference in every bench round" if best is not ref_all else
                       "the reference: no engine was faster in every bench round" if established is False else
                       "the reference, the fastest engine"))
