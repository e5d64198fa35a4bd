"""What each stage of the pipeline hands on: one dataclass per stage, read by the next stages and the report by
attribute. On disk each is ``stage_<name>.json`` (its fields, ``seconds`` first), read back with ``load`` on a rerun;
a marker that does not load (unreadable, another version's fields, a value of the wrong type) is redone.

The nested values are the JSON records the lower layers write (a search candidate, a bench row, an accuracy gate),
as in ``pareto.json``, ``bench.json`` and ``manifest.json``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from ..errors import NasDeployError
from .config import from_table

STAGES = ("supernet", "latency", "search", "finetune", "export", "accuracy", "bench", "deploy")
R = TypeVar("R", bound="StageResult")


@dataclass(kw_only=True)
class StageResult:
    seconds: float = 0.0  # how long the stage ran

    def as_dict(self) -> dict:
        return asdict(self)

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


@dataclass(kw_only=True)
class LatencyResult(StageResult):
    tables: dict[str, dict]  # engine -> {lut, setting, entries, validation}
    input: dict  # the input setting the tables were measured for


@dataclass(kw_only=True)
class SearchStageResult(StageResult):
    target_ms: float
    fastest_ms: float  # the fastest architecture's predicted latency
    trials: int
    front: list[dict]  # pareto.Candidate records, by latency
    best: dict  # the chosen architecture's Candidate record
    references: dict[str, dict]  # zoo architectures in the same tables
    fronts_by_engine: dict[str, list]
    spread: float  # the share of [fastest possible, target] the front spans
    resolved_front: dict
    choice: dict  # why the best was chosen
    splits: dict
    evaluation: dict
    card: str  # best.toml
    pareto_png: str
    finalists: list[dict]  # every architecture the search could return, timed end to end and raced
    chosen: dict  # the chosen one's latency as measured end to end, beside the table's prediction and the target
    aim_ms: float | None = None  # what the search ran under: the target less the headroom for a change of speed
    headroom: float = 0.0  # that headroom, as a share of the aim
    speed: dict = field(default_factory=dict)  # the machine's speed when the search started (search.speed)


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
    engines: dict[str, dict]  # engine -> its gate, its top-1 on the gate's images and the files scored


@dataclass(kw_only=True)
class BenchStageResult(StageResult):
    bench_json: str
    environment: dict
    rows: list[dict]  # bench.run.BenchRow records
    skipped: list[dict]  # engines that cannot run here
    failed: list[dict] = field(default_factory=list)  # rows that failed to build or while timed, with the reason


@dataclass(kw_only=True)
class DeployResult(StageResult):
    # the deploy rule's verdict (deploy.choose_engine)
    engine: str
    fastest: str
    reference: str
    faster_in_every_round: bool | None
    faster_in_every_round_by_engine: dict
    throughput: float
    files: dict | None
    holding_target: list[str]  # the passing engines whose bench verdict against the target is "meets"
    why: str  # the deploy rule's reason, in words
    # what was shipped, and what it rests on
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
    candidates: list[dict]  # every engine with its speed, accuracy and gate
    test: dict  # the shipped engine on the test split, scored once (the figure the report quotes)
    # the promise: target, confidence, the table's prediction, the search's measurement (every round the chosen
    # architecture was timed in), the shipped engine's bench latency with its bounds and its verdict (meets, misses, undecided)
    latency: dict


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
