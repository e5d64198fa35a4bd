"""What a search is given and what it returns."""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields

from ..bench.stats import check_confidence
from ..errors import UsageError
from ..pareto import FrontPoint
from .estimate import CRITERIA

OBJECTIVES = ("accuracy", "latency", "params")
# a field's metadata: RUN, set by each process that works on a study (not stored with it); DEFINES, a setting a
# study is made for (a process that gives another value for it is refused rather than joined to the study)
RUN, DEFINES = {"run": True}, {"defines": True}


@dataclass(kw_only=True)
class SearchConfig:
    """How a search runs; built by keyword. ``target_ms``: the latency target in milliseconds (``parse_latency``
    reads it from text with units).

    Every field but the per-run ones (``RUN``) is a setting of the study: stored with it (``settings``), read back
    by a worker or a report (``from_settings``) and written to pareto.json, with no list of names to keep."""

    target_ms: float = field(metadata=DEFINES)
    # what the sampler selects by; the latency target is a hard constraint either way, and the fronts are always
    # reported over accuracy and latency. Accuracy alone found better architectures than random search on
    # NAS-Bench-Macro where accuracy and latency together did not (benchmarks/README)
    objectives: tuple[str, ...] = field(default=("accuracy",), metadata=DEFINES)
    # the budget: architectures evaluated (on NAS-Bench-Macro the search beat every baseline at 30, 64 and 100
    # evaluations; benchmarks/README)
    evaluations: int = field(default=64, metadata=DEFINES)
    population: int = 8  # kept by the steady-state evolution; the first ones are drawn near the target
    seed: int = 0
    calib_batches: int = 4
    calib_batch_size: int = 64
    eval_images: int = 1000  # of the search-validation split
    accuracy_proxy: bool = False
    device: str = field(default="cpu", metadata=RUN)
    storage: str | None = field(default=None, metadata=RUN)  # default: OUT/search.db (SQLite)
    study_name: str | None = field(default=None, metadata=RUN)
    # what an estimate is compared by: top-1, or the cross-entropy loss (nasdeploy.search.estimate)
    criterion: str = field(default="top1", metadata=DEFINES)
    # seconds; a trial silent for two of them is failed and run again by another worker
    heartbeat: int = field(default=30, metadata=RUN)
    # the finalists (nasdeploy.search.finalists): at most this many, timed end to end on every candidate engine and
    # raced on race_images search-validation images (0: all of them) with BN recalibrated on race_calib_images
    # training images
    finalists: int = 12
    race_images: int = 0
    race_calib_images: int = 1024
    # the finalists' end-to-end timing (nasdeploy.bench.timing.Clock: the clock `bench` uses, with these repeats
    # per round and at least these rounds)
    time_repeats: int = 50
    time_rounds: int = 5
    # the confidence at which a finalist's measured latency must hold the target (its one-sided upper bound, from
    # the order statistics of its round medians, under the target: nasdeploy.bench.stats)
    latency_confidence: float = 0.9
    # where no finalist holds the target and the tables under-predicted them, a second round under the corrected
    # tables (nasdeploy.search.finalists.second_round); off: the fastest finalist is returned, as the first round
    # found it
    second_round: bool = True

    def settings(self) -> dict:
        """The study's settings: every field but the per-run ones, as JSON values."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in fields(self) if not f.metadata.get("run")}

    @classmethod
    def from_settings(cls, stored: dict, **run) -> "SearchConfig":
        """The configuration a study was made with (``settings``), with this process's per-run fields; a setting
        the study does not hold (made by an older version) takes its default."""
        hints = typing.get_type_hints(cls)
        kw = {}
        for f in fields(cls):
            if f.metadata.get("run") or f.name not in stored:
                continue
            v = stored[f.name]
            kw[f.name] = tuple(v) if typing.get_origin(hints[f.name]) is tuple and isinstance(v, list) else v
        return cls(**kw, **run)

    @classmethod
    def defining(cls) -> tuple[str, ...]:
        """The settings a study is made for: another value for one of them is another study."""
        return tuple(f.name for f in fields(cls) if f.metadata.get("defines"))

    @property
    def clock(self):
        from ..bench.timing import Clock

        return Clock(repeats=self.time_repeats, rounds=self.time_rounds, confidence=self.latency_confidence)

    @property
    def trials(self) -> int:
        return self.evaluations

    def check(self) -> "SearchConfig":
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise UsageError(f"unknown objective '{o}': choose from {', '.join(OBJECTIVES)}")
        if "accuracy" not in self.objectives:
            raise UsageError("--objectives must include accuracy")
        if self.population < 2 or self.evaluations < 1:
            raise UsageError("--population must be at least 2 and --evaluations at least 1")
        if self.criterion not in CRITERIA:
            raise UsageError(f"--criterion must be one of {', '.join(CRITERIA)}, not '{self.criterion}'")
        if self.eval_images < 1 or self.calib_batches < 1:
            raise UsageError("--eval-images and --calib-batches must be at least 1")
        if self.heartbeat < 1:
            raise UsageError(f"--heartbeat must be at least 1 second, got {self.heartbeat}")
        if self.finalists < 1 or self.race_images < 0 or self.race_calib_images < 1:
            raise UsageError("--finalists and the race's calibration images must be at least 1, --race-images at "
                             "least 0 (0: every search-validation image)")
        if self.time_repeats < 1 or self.time_rounds < 1:
            raise UsageError("--repeats and --rounds must be at least 1")
        check_confidence(self.latency_confidence)
        return self


@dataclass(kw_only=True)
class SearchInputs:
    """What a search reads (built by keyword): a supernet (or the MACs proxy), latency tables, data."""

    space: str | None = None
    supernet: str | None = None
    lut: str | list[str] | None = None  # one table, or one per candidate engine
    data: str | None = None
    device: str = "cpu"
    batch: int = 1
    dtype: str = "fp32"
    backend: str | None = None
    input_size: int | None = None


@dataclass
class Chosen:
    """What the user is promised for the chosen architecture: the latency the choice was made under (measured end
    to end on its engine, every round it was timed in), with its bounds, beside the table's prediction and the
    target; the verdict is its fresh rounds' where it was timed again (what confirmed the choice)."""

    arch: str
    engine: str
    measured_ms: float
    predicted_ms: float | None
    target_ms: float
    confidence: float
    latency: dict | None  # bench.stats.RoundLatency record: every round
    fresh: dict | None  # the fresh rounds after the choice
    verdict: str | None  # meets, misses, undecided
    meets_target: bool | None
    retimed: bool
    measured_by_engine: dict[str, float]
    latency_by_engine: dict[str, dict]
    predicted_by_engine: dict[str, float]
    race_top1: float | None
    race_images: int | None


@dataclass
class FinalistRecord:
    """A finalist's figures as the search reports them (pareto.json, the report, the console), each labelled:
    predicted by its latency table, measured end to end on this machine (per engine: the median of round medians,
    every round, the ``bench.stats.RoundLatency`` records), its verdict against the target on its fastest engine,
    and its estimates (the study's on the search's evaluation images, the race's on every search-validation
    image)."""

    arch: str
    trial: int  # the study's trial; -1: made and evaluated by the second round (finalists.second_round)
    engine: str  # measured fastest
    latency_ms: float  # on ``engine``: every round, fresh ones included
    upper_ms: float | None  # the qualifying rounds' upper bound on ``engine``
    lower_ms: float | None
    verdict: str | None  # meets, misses, undecided (qualifying rounds)
    predicted_ms: dict[str, float]
    measured_ms: dict[str, float]
    round_medians: dict[str, list[float]]
    timing: dict[str, dict]  # per engine, the qualifying rounds
    retimed: dict[str, dict]  # per engine, the fresh rounds after the choice
    macs: int
    params: int
    study_top1: float | None
    race_top1: float | None
    race_loss: float | None
    race_images: int | None
    score: float  # what ranked it

    @property
    def rounds(self) -> int | None:
        """Qualifying rounds on its engine."""
        t = self.timing.get(self.engine)
        return t["rounds"] if t else None

    @property
    def predicted(self) -> float | None:
        return self.predicted_ms.get(self.engine)

    @property
    def measured(self) -> float | None:
        return self.measured_ms.get(self.engine)


@dataclass
class Reference:
    """A zoo model of the searched space placed in the same latency tables (and, with a supernet, scored as its
    subnet on the same images, paired against the study's best)."""

    arch: str
    latency_ms: float  # predicted, on ``engine`` (its fastest)
    engine: str
    accuracy: float | None = None
    ci95: tuple[float, float] | None = None
    loss: float | None = None
    paired_vs_best: list[float] | None = None  # zoo minus searched: mean, 95% interval


@dataclass
class ResolvedFront:
    """The front of what the paired estimates can tell apart: the feasible architectures no other at most as slow
    beats with a paired 95% interval above 0, by predicted latency."""

    archs: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    spread: float | None = None  # the share of [fastest possible, target] it spans


@dataclass
class SearchResult:
    candidates: list[FrontPoint]
    front: list[FrontPoint]
    best: FrontPoint | None
    fastest_ms: float
    accuracy_label: str
    references: dict[str, Reference] = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)  # this worker's trials, evaluations and time
    fronts_by_engine: dict[str, list[FrontPoint]] = field(default_factory=dict)
    spread: float = 0.0  # the share of [fastest possible, target] the front spans
    resolved: ResolvedFront = field(default_factory=ResolvedFront)
    choice: dict = field(default_factory=dict)  # why the best was chosen (paired comparisons)
    splits: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    finalists: list[FinalistRecord] = field(default_factory=list)  # every architecture it could return, measured
    chosen: Chosen | None = None  # the chosen one's predicted, measured latency and the target
    settings: dict = field(default_factory=dict)  # the study's settings (SearchConfig.settings)
