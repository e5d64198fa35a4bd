"""What every stage of the pipeline reads: the configuration, the run folder, the device, the results of the stages
before it, and the few facts several stages derive from them (which engines compete, where the tables are)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..backends import Engine
from .config import PipelineConfig
from .results import PipelineResults


@dataclass
class Run:
    cfg: PipelineConfig
    out: Path
    device: str  # resolved: a device that is not here was refused before any stage
    progress: bool = True
    echo: Callable[[str], None] = print
    results: PipelineResults = field(default_factory=PipelineResults)

    @property
    def data(self) -> str | None:
        """The dataset folder, or None for the built-in one (as the export and gate APIs take it)."""
        from ..data import BUILTIN

        return None if self.cfg.data == BUILTIN else self.cfg.data

    def candidates(self) -> tuple[list[Engine], list[dict]]:
        """The deployment candidates that can run here (runtime, precision, threads), and the others with the
        reason (unknown names refused)."""
        from ..backends import default_engines, engine_reason, get_backend, parse_engines

        e = self.cfg.deploy.engines
        engines = default_engines(self.device) if e == "auto" else parse_engines(e)
        live, skipped = [], []
        for engine in engines:
            why = engine_reason(engine, get_backend(engine.backend).export_device(self.device))
            if why:
                skipped.append({"engine": engine.name, "reason": why})
            else:
                live.append(engine)
        return live, skipped

    def engine_device(self, engine: str) -> str:
        from ..backends import get_backend

        return get_backend(Engine.parse(engine).backend).export_device(self.device)

    def lut_path(self, engine: str) -> Path:
        return self.out / f"lut_{engine.replace(':', '_')}.json"

    def luts(self) -> list[str]:
        """The latency stage's tables, one per candidate engine."""
        return [t.lut for t in self.results.latency.tables.values()]

    def tables(self):
        from ..latency.table import EngineTables

        return EngineTables.load(self.luts())

    def setting(self):
        """The input setting the supernet was trained for."""
        from ..nas.supernet_checkpoint import load_checkpoint, supernet_setting

        return supernet_setting(load_checkpoint(self.out / "supernet" / "supernet.pt"))

    def deployed_card(self) -> Path:
        """The card that is exported: the fine-tuned model's, else the search's."""
        src = self.out / "finetune" / "model.toml"
        return src if src.exists() else self.out / "search" / "best.toml"
