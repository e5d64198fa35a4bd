"""What each stage of the pipeline hands on: one dataclass per stage, read by the next stages and the report by
attribute. On disk each is ``stage_<name>.json`` (its fields), read back with ``load`` on a rerun;
a marker that does not load (unreadable, another version's fields, a value of the wrong type) is redone.

The records inside stay typed from the module that makes them to the report: a search candidate where a front
places it (``pareto.FrontPoint``, made from ``search.candidate.Candidate``), a finalist's figures
(``search.FinalistRecord``), a zoo reference, the chosen architecture (``search.Chosen``), a bench row
(``bench.run.BenchRow``), a deploy
candidate (``DeployCandidate``, what ``deploy.choose_engine`` reads), the latency promise (``Promise``); on disk they
are the same JSON tables as ``pareto.json``, ``bench.json`` and ``manifest.json`` hold. What stays a plain table is
what no stage reads: a lower layer's report handed on to the report as it is (a table's validation metrics, a fold
report, the search's reasons).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from ..bench.run import BenchRow
from ..bench.side_by_side import SideBySide
from ..deploy import Choice, Contender
from ..errors import NasDeployError
from ..search.config import SearchResult
from .config import from_table

STAGES = ("supernet", "latency", "search", "finetune", "export", "accuracy", "bench", "deploy")
R = TypeVar("R", bound="StageResult")


@dataclass(kw_only=True)
class StageResult:
    seconds: float = 0.0  # how long the stage ran

    def as_dict(self) -> dict:
        """Its fields as JSON values (as the marker and report.json hold them)."""
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def load(cls: type[R], path: Path) -> R | None:
        """The result a stage marker holds, or None where it does not load as this stage's result."""
        try:
            return from_table(cls, json.loads(path.read_text()), path.name)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, NasDeployError, TypeError):
            return None


@dataclass(kw_only=True)
class SupernetResult(StageResult):
    supernet: str  # the final supernet.pt
    steps: int
    loss_first: float  # mean loss of the first and of the last steps
    loss_last: float
    space: str
    sampler: str  # the path sampler (fair, uniform)
    splits: dict  # data.split_record


@dataclass
class TableRecord:
    """One candidate engine's latency table."""

    lut: str  # its file
    setting: str  # what it was measured for, in words
    entries: int
    validation: dict  # latency.metrics: how it predicts whole networks timed end to end (or where it was)


@dataclass(kw_only=True)
class LatencyResult(StageResult):
    tables: dict[str, TableRecord]  # per engine
    input: dict  # the input setting the tables were measured for


@dataclass
class SpeedRecord:
    """The machine's speed when the search started, against the latency tables (nasdeploy.search.speed)."""

    luts: list[str]  # the tables the search used: rescaled to that speed (the latency stage's, without a check)
    headroom: float  # the largest change of speed the check saw, as a share
    checks: dict[str, dict] = field(default_factory=dict)  # per engine: search.speed.SpeedCheck.as_dict


@dataclass(kw_only=True)
class SearchStageResult(StageResult, SearchResult):
    """The search's own result (``search.SearchResult``: every trial, the fronts, the finalists, the choice) and
    what the pipeline decided around it: the target, the aim, the speed check, where the outputs are."""

    target_ms: float  # the target the shipped engine is judged against
    aim_ms: float  # what the search ran under: the target less the headroom for a change of speed
    headroom: float  # that headroom, as a share of the aim
    speed: SpeedRecord  # the machine's speed when the search started
    card: str  # best.toml
    pareto_png: str

    @property
    def trials(self) -> int:
        return len(self.candidates)


@dataclass(kw_only=True)
class FinetuneResult(StageResult):
    card: str  # the fine-tuned model's card
    steps: int
    batch_size: int
    lr: float


@dataclass(kw_only=True)
class ExportStageResult(StageResult):
    out: str  # the export folder
    artefacts: dict[str, str]
    engines: list[str]  # BACKEND:PRECISION of every engine in the manifest
    skipped: list[dict]  # candidate engines that cannot run here, with the reason
    fold: dict | None  # fold.FoldReport
    parity: list[dict]  # export.parity.Parity records
    quantization: dict


@dataclass(kw_only=True)
class AccuracyResult(StageResult):
    """Every exported engine through the accuracy gate, on the gate's images (the search-validation split: the gate
    chooses which engine ships, so it never reads the test split)."""

    images: int
    split: str
    reference: str  # what every engine was gated against
    torch_folded: dict  # the reference's top-1/top-5 on the gate's images (evaluate.Accuracy record)
    engines: dict[str, "EngineAccuracy"]  # per engine


@dataclass
class EngineAccuracy:
    """One exported engine on the gate's images: its accuracy (evaluate.Accuracy), its gate, the files scored."""

    top1: float
    top1_ci95: list[float]
    top5: float | None
    images: int
    gate: dict  # gate.Gate record: the drop against the reference, its interval, passed
    files: dict[str, str]  # file -> sha256


@dataclass(kw_only=True)
class BenchStageResult(StageResult):
    bench_json: str
    environment: dict
    rows: list[BenchRow]
    skipped: list[dict]  # engines that cannot run here
    failed: list[dict] = field(default_factory=list)  # rows that failed to build or while timed, with the reason


@dataclass(kw_only=True)
class DeployCandidate(Contender):
    """One exported engine as the deploy rule and the report read it: its bench row and its gate together."""

    top1: float
    top1_ci95: list[float]
    median_ms: float | None = None
    upper_ms: float | None = None
    vs_reference: float | None = None
    gated_files: dict[str, str] = field(default_factory=dict)


@dataclass
class Promise:
    """What the search promised for the shipped engine and what the bench timed, by the same statistic."""

    engine: str
    batch: int
    target_ms: float
    confidence: float
    predicted_ms: float | None  # the latency table's
    search_measured_ms: float | None  # the search's figure on ``search_engine`` (every round)
    search_latency: dict | None  # that figure with its bounds (bench.stats.RoundLatency record)
    disagreement: str | None  # where the two timings' bounds do not overlap, what that means
    bench_median_ms: float | None
    bench_latency: dict | None  # the bench's figure with its bounds
    bench_vs_search: float | None
    verdict: str | None  # meets, misses, undecided
    meets_target: bool | None
    statistic: str = "median of round medians"
    warning: str | None = None  # the bench rounds' stability warning
    # the shipped file and the search's network of the architecture, timed together after the bench: whether what
    # ships runs as what the search timed, with the machine's speed taken out (None: the engine had no table)
    side_by_side: SideBySide | None = None
    # the engine the search's figure is of: the shipped one where the search timed it, else the one it chose under
    search_engine: str | None = None


@dataclass
class LayerCost:
    """One entry of the chosen architecture (stem, a layer's choice, head) as each engine's latency table timed it:
    where a reduced precision does not pay at this size, which layers it loses on."""

    layer: str  # "stem", "3 mb6_k5", "head"
    ms: dict[str, float]  # engine -> the raw median its table holds


@dataclass(kw_only=True)
class DeployResult(StageResult, Choice):
    """The deploy rule's choice (``deploy.Choice``: what ships and why) and what it rests on."""

    batch: int
    budget: float
    vs_reference: float | None
    deployed: str
    shipped_files: dict[str, str]
    timed_files: dict | None
    gated_files: dict
    same_files: bool
    searched_engine: str | None
    search_targeted_it: bool
    latency_tables: dict[str, str]
    candidates: list[DeployCandidate]  # every engine with its speed, accuracy and gate
    test: dict  # the shipped engine on the test split, scored once (the figure the report quotes)
    latency: Promise
    # where the tables hold more than one precision: the chosen architecture layer by layer on every engine's table
    per_layer: list[LayerCost] | None = None
    # the engine's name in deployed/manifest.json: with the threads it was timed with (onnxruntime:fp32@2)
    shipped_engine: str | None = None


RESULT_TYPES: dict[str, type[StageResult]] = {
    "supernet": SupernetResult, "latency": LatencyResult, "search": SearchStageResult, "finetune": FinetuneResult,
    "export": ExportStageResult, "accuracy": AccuracyResult, "bench": BenchStageResult, "deploy": DeployResult}


@dataclass
class PipelineResults:
    """The stages' results so far, and whether each ran now or was done before (``status``: ran, cached)."""

    supernet: SupernetResult | None = None
    latency: LatencyResult | None = None
    search: SearchStageResult | None = None
    finetune: FinetuneResult | None = None
    export: ExportStageResult | None = None
    accuracy: AccuracyResult | None = None
    bench: BenchStageResult | None = None
    deploy: DeployResult | None = None
    status: dict[str, str] = field(default_factory=dict)

    def add(self, stage: str, result: StageResult, status: str) -> None:
        setattr(self, stage, result)
        self.status[stage] = status

    def as_dict(self) -> dict[str, dict]:
        """Stage -> its figures and status, in stage order (``report.json``'s ``stages``)."""
        return {s: {**getattr(self, s).as_dict(), "status": st} for s, st in self.status.items()}
