"""What a search is given and what it returns."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..bench.stats import check_confidence
from ..errors import UsageError
from ..pareto import Candidate
from .estimate import CRITERIA

OBJECTIVES = ("accuracy", "latency", "params")


@dataclass(kw_only=True)
class SearchConfig:
    """How a search runs; built by keyword. ``target_ms``: the latency target in milliseconds (``parse_latency``
    reads it from text with units)."""

    target_ms: float
    # what the sampler selects by; the latency target is a hard constraint either way, and the fronts are always
    # reported over accuracy and latency. Accuracy alone found better architectures than random search on
    # NAS-Bench-Macro where accuracy and latency together did not (benchmarks/README)
    objectives: tuple[str, ...] = ("accuracy",)
    evaluations: int = 64  # the budget: architectures evaluated (the search beat every baseline at 30, 64 and 100)
    population: int = 8  # kept by the steady-state evolution; the first ones are drawn near the target
    seed: int = 0
    calib_batches: int = 4
    calib_batch_size: int = 64
    eval_images: int = 1000  # of the search-validation split
    accuracy_proxy: bool = False
    device: str = "cpu"
    storage: str | None = None  # default: OUT/search.db (SQLite)
    study_name: str | None = None
    # what an estimate is compared by: top-1, or the cross-entropy loss (nasdeploy.search.estimate)
    criterion: str = "top1"
    heartbeat: int = 30  # seconds; a trial silent for two of them is failed and run again by another worker
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
class SearchResult:
    candidates: list[Candidate]
    front: list[Candidate]
    best: Candidate | None
    fastest_ms: float
    accuracy_label: str
    references: dict[str, dict] = field(default_factory=dict)
    throughput: dict = field(default_factory=dict)  # this worker's trials, evaluations and time
    fronts_by_engine: dict[str, list[dict]] = field(default_factory=dict)
    spread: float = 0.0  # the share of [fastest possible, target] the front spans
    resolved: dict = field(default_factory=dict)  # the front of what the paired estimates can tell apart
    choice: dict = field(default_factory=dict)  # why the best was chosen (paired comparisons)
    splits: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)
    finalists: list[dict] = field(default_factory=list)  # every architecture the search could return, measured
    chosen: dict = field(default_factory=dict)  # the chosen one's predicted, measured latency and the target
