"""One architecture the search evaluated, as one typed record from its trial to the choice: what the study stored
(its predicted latencies, counts, score and accuracy estimate), and, for a finalist, its end-to-end timing and its
race estimate. The fronts, the finalists, the choice and pareto.json all read this record; a point drawn on a front
(``pareto.FrontPoint``) is made from it."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..bench.stats import RoundLatency
from ..pareto import FrontPoint
from .config import FinalistRecord
from .estimate import Estimate


@dataclass
class Candidate:
    arch: str
    predicted_ms: dict[str, float]  # per engine, from its latency table (calibrated)
    trial: int = -1  # -1: not a study trial (evaluated by the second round of finalists)
    cost: float | None = None  # the latency the study judged feasibility by (its fastest engine's prediction)
    feasible: bool = True  # ``cost`` meets the target
    params: int = 0
    macs: int = 0
    study_score: float | None = None  # what the study maximised (its estimate's score, or a proxy's)
    study_estimate: Estimate | None = None  # on the search's evaluation images
    # a finalist's figures
    timing: dict[str, RoundLatency] = field(default_factory=dict)  # per engine, end to end (qualifying rounds)
    retimed: dict[str, RoundLatency] = field(default_factory=dict)  # per engine, fresh rounds after the choice
    estimate: Estimate | None = None  # the race: every search-validation image

    @classmethod
    def from_trial(cls, trial, meets) -> "Candidate":
        """The record of a completed study trial (``meets``: whether a predicted latency meets the target). The one
        place that reads the attributes the study's objective stores."""
        a = trial.user_attrs
        cost = a["cost"]
        by_engine = dict(a.get("latency_by_engine") or {})
        return cls.evaluated(a["arch"], by_engine or {a.get("engine", ""): cost}, a["score"], a, trial=trial.number,
                             cost=cost, feasible=meets(cost))

    @classmethod
    def evaluated(cls, arch: str, predicted_ms: dict[str, float], score: float, attrs: dict, **kw) -> "Candidate":
        """From an evaluation: its score and the attributes it stores with a trial (counts, the estimate's
        per-image record where the search has a supernet)."""
        return cls(arch=arch, predicted_ms=predicted_ms, params=attrs.get("params", 0), macs=attrs.get("macs", 0),
                   study_score=score, study_estimate=Estimate.from_attrs(attrs) if "correct_b64" in attrs else None,
                   **kw)

    @property
    def predicted(self) -> float:
        """The study's latency: ``cost``, else its fastest engine's prediction."""
        return self.cost if self.cost is not None else min(self.predicted_ms.values())

    @property
    def measured_ms(self) -> dict[str, float]:
        """Per engine, the median of its round medians."""
        return {e: t.median for e, t in self.timing.items()}

    @property
    def engine(self) -> str:
        """The engine measured fastest (the lowest median; predicted fastest where nothing was measured)."""
        src = self.measured_ms or self.predicted_ms
        return min(src, key=src.get)

    @property
    def latency_ms(self) -> float:
        """On its engine: the median of all its round medians (qualifying and fresh rounds); predicted where it was
        not timed."""
        t = self.latency
        return t.median if t is not None else self.predicted_ms[self.engine]

    @property
    def latency(self) -> RoundLatency | None:
        return self.latency_on(self.engine)

    def latency_on(self, engine: str) -> RoundLatency | None:
        """Every round it was timed in on ``engine``, as one figure: the qualifying rounds, joined by the fresh ones
        where it was timed again. The fresh rounds alone decide whether the choice is confirmed (they carry no
        selection bias); the figure the search reports takes all of them, so that a spell of the machine during
        either timing moves it less."""
        t, fresh = self.timing.get(engine), self.retimed.get(engine)
        if t is None or fresh is None:
            return fresh or t
        return t.joined(fresh)

    def verdict(self, target: float) -> str:
        """The qualifying rounds on its engine against ``target``: meets, misses or undecided."""
        t = self.timing.get(self.engine)
        return t.verdict(target) if t is not None else "undecided"

    def score(self, criterion: str) -> float:
        """What ranks it: the race estimate, else the study's estimate, else the study's score."""
        e = self.estimate or self.study_estimate
        if e is not None:
            return e.score(criterion)
        return self.study_score if self.study_score is not None else float("-inf")

    def study_point(self, latency: float | None = None, engine: str | None = None) -> FrontPoint:
        """Where the study placed it: its study estimate (its score for a proxy) against its predicted latency (on
        ``engine`` with ``latency``, else its fastest engine's)."""
        e = self.study_estimate
        return FrontPoint(self.arch, e.top1 if e is not None else self.study_score,
                          self.predicted if latency is None else latency, self.params, self.macs, self.feasible,
                          self.trial, wilson95(e) if e is not None else None, self.study_score,
                          engine or self.engine_predicted, e.loss if e is not None else None)

    def measured_point(self, criterion: str) -> FrontPoint:
        """Where its finalist figures place it: its race estimate and its measured latency on its fastest engine."""
        e = self.estimate or self.study_estimate
        return FrontPoint(self.arch, e.top1 if e is not None else self.score(criterion), self.latency_ms,
                          self.params, self.macs, True, self.trial, wilson95(e) if e else None,
                          self.score(criterion), self.engine, e.loss if e else None)

    @property
    def engine_predicted(self) -> str:
        return min(self.predicted_ms, key=self.predicted_ms.get)

    def finalist_record(self, criterion: str, target: float | None = None) -> FinalistRecord:
        """Its finalist figures as pareto.json, the report and the console list them, each labelled."""
        e = self.estimate
        t = self.timing.get(self.engine) if self.timing else None
        return FinalistRecord(
            arch=self.arch, trial=self.trial, engine=self.engine, latency_ms=self.latency_ms,
            upper_ms=t.upper if t is not None and t.upper != float("inf") else None,
            lower_ms=t.lower if t is not None and t.lower != float("-inf") else None,
            verdict=self.verdict(target) if target is not None and t is not None else None,
            predicted_ms=dict(self.predicted_ms), measured_ms=self.measured_ms,
            round_medians={k: list(v.round_medians) for k, v in self.timing.items()},
            timing={k: v.as_dict() for k, v in self.timing.items()},
            retimed={k: v.as_dict() for k, v in self.retimed.items()}, macs=self.macs, params=self.params,
            study_top1=self.study_estimate.top1 if self.study_estimate else None,
            race_top1=e.top1 if e else None, race_loss=e.loss if e else None, race_images=e.images if e else None,
            score=self.score(criterion))


def wilson95(e: Estimate) -> tuple[float, float]:
    from ..evaluate import wilson

    lo, hi = wilson(int(e.correct.sum()), e.images)
    return round(lo, 3), round(hi, 3)
