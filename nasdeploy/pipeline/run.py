"""The end-to-end pipeline: supernet -> latency tables -> search -> fine-tune -> export -> accuracy -> bench -> deploy.

Each stage writes ``stage_<name>.json`` (atomically) when it completes; a rerun skips stages whose marker is there,
and the long stages (supernet training, latency tables, search, fine-tuning) resume from their own state when
killed mid-way. The whole configuration (types, engines, data) is checked before the first stage runs. Each stage
returns a typed result (``results``) that the next stages and the report read by attribute.

What ships is what was measured: the search predicts latency from a table per candidate engine, the export folder
lists every engine's files with their hashes, the accuracy and bench stages score and time exactly those files,
and the deploy stage copies the chosen engine's files (the same hashes) into ``deployed/``.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ..device import resolve_device
from ..errors import UsageError
from ..io import folder_lock, provenance, write_json
from . import model_stages, ship_stages
from .config import PipelineConfig
from .context import Run
from .results import RESULT_TYPES, STAGES, PipelineResults, StageResult

log = logging.getLogger(__name__)

# the stages in the order they run: name -> what runs it (model_stages: supernet to fine-tune; ship_stages: export
# to deploy); each reads the run and the results before it, and returns its typed result
STAGE_TABLE: dict[str, Callable[[Run], StageResult]] = {
    "supernet": model_stages.supernet,
    "latency": model_stages.latency,
    "search": model_stages.search,
    "finetune": model_stages.finetune,
    "export": ship_stages.export,
    "accuracy": ship_stages.accuracy,
    "bench": ship_stages.bench,
    "deploy": ship_stages.deploy,
}


class Pipeline:
    """Runs the stage table in order: a stage whose marker loads is skipped (its result handed on as it was), the
    others run and write theirs."""

    STAGES = STAGES

    def __init__(self, cfg: PipelineConfig, progress: bool = True, echo: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.echo = echo or (lambda s: log.info(s))
        # the device is checked here: one that is not here is refused before any stage
        self.run_state = Run(cfg, self.out, resolve_device(cfg.device), progress, self.echo)

    @property
    def results(self) -> PipelineResults:
        return self.run_state.results

    def stage(self, name: str) -> StageResult:
        """Run one stage on the results so far (they must hold the stages before it)."""
        return STAGE_TABLE[name](self.run_state)

    def marker(self, stage: str) -> Path:
        return self.out / f"stage_{stage}.json"

    def validate(self) -> None:
        """Everything that can be refused is refused before the first stage (the configuration's types and target
        when it is read, the device when the pipeline is made): data, space, engines."""
        from ..data import BUILTIN, check_image_folder, resolve_split
        from ..nas.space import get_space

        get_space(self.cfg.space)
        if self.cfg.data != BUILTIN:
            for split in ("train", "test"):
                check_image_folder(resolve_split(self.cfg.data, split))
        if not self.run_state.candidates()[0]:
            raise UsageError("none of deploy.engines can run here: see the reasons with `nasdeploy bench`")
        for name, value in (("accuracy_images", self.cfg.accuracy_images), ("search.eval_images",
                                                                             self.cfg.search.eval_images)):
            if value < 1:
                raise UsageError(f"{name} must be at least 1, got {value}")

    def run(self, stop_after: str | None = None) -> PipelineResults:
        self.validate()
        self._check_recorded()  # refused before anything is written, the lock file included
        with folder_lock(self.out, "a pipeline run"):
            self._check_recorded()  # and again under the lock: another run may have started meanwhile
            write_json(self.out / "config.json", asdict(self.cfg))
            for name in STAGE_TABLE:
                m = self.marker(name)
                done = RESULT_TYPES[name].load(m) if m.exists() else None
                if done is not None:
                    self.results.add(name, done, "cached")
                    self.echo(f"[{name}] done before: skipped")
                else:
                    if m.exists():  # written atomically, so from another version or edited: redone
                        log.debug("%s does not load as this stage's result: the stage runs again", m)
                    self.echo(f"[{name}] running")
                    t0 = time.perf_counter()
                    result = self.stage(name)
                    result.seconds = round(time.perf_counter() - t0, 1)
                    write_json(m, result.as_dict())
                    self.results.add(name, result, "ran")
                if name == stop_after:
                    break
        return self.results

    def _check_recorded(self) -> None:
        """A run folder made with other settings is refused before anything is written: its stages would be reused
        for settings they were not made with (only ``out``, where the folder is, may differ)."""
        path = self.out / "config.json"
        if not path.exists():
            return
        try:
            recorded = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return  # unreadable: written atomically, so from elsewhere; the stages' own checks stand
        mine = json.loads(json.dumps(asdict(self.cfg)))  # as recorded: tuples are lists in JSON
        diff = _differences(recorded, mine, ignore={"out"})
        if diff:
            shown = "; ".join(f"{k}: {a!r} here before, {b!r} now" for k, a, b in diff[:3])
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise UsageError(f"{self.out} holds a pipeline run made with other settings ({shown}{more}): choose "
                             f"another --out, or run it with its own settings ({path})")


def _differences(a, b, ignore: set[str] = frozenset(), where: str = "") -> list[tuple[str, object, object]]:
    """(key path, a's value, b's value) wherever two configurations differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k in ignore and not where:
                continue
            out += _differences(a.get(k), b.get(k), ignore, f"{where}{k}.")
        return out
    return [] if a == b else [(where.rstrip("."), a, b)]


def run_pipeline(cfg: PipelineConfig, progress: bool = True, echo: Callable[[str], None] | None = None,
                 stop_after: str | None = None) -> tuple[PipelineResults, Path | None]:
    """Run (or finish) the pipeline; its results, and the report once every stage is done (None before)."""
    from .report import write_report

    p = Pipeline(cfg, progress, echo)
    results = p.run(stop_after)
    if stop_after and stop_after != STAGES[-1]:
        return results, None
    return results, write_report(p.out, cfg, results, provenance())
