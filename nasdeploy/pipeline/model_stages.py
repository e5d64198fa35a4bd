"""The stages that find the model: the supernet, a latency table per candidate engine, the search under the target
(after a check of the machine's speed), and the chosen architecture's fine-tune. Each reads the run (``Run``) and
returns its typed result."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..errors import UsageError
from ..finetune import FinetuneConfig
from ..io import write_json
from ..nas.train import TrainConfig
from .config import from_table
from .context import Run
from .results import FinetuneResult, LatencyResult, SearchStageResult, SpeedRecord, SupernetResult, TableRecord


def supernet(run: Run) -> SupernetResult:
    from ..data import split_record
    from ..nas.train import train_supernet

    cfg = run.cfg
    tc = TrainConfig(**{**asdict(cfg.supernet), "space": cfg.space, "data": cfg.data, "seed": cfg.seed,
                        "device": run.device})
    r = train_supernet(tc, run.out / "supernet", resume=True, progress=run.progress)
    first, last = r.loss_summary()
    return SupernetResult(supernet=str(r.path), steps=len(r.history), loss_first=first, loss_last=last,
                          space=cfg.space, sampler=tc.sampler, splits=split_record(cfg.data))


def latency(run: Run) -> LatencyResult:
    """One table per candidate engine (one given in latency.tables is taken as it is), each validated end to end."""
    from ..latency import LatencyTable, Settings, measure_table, validate_table
    from ..plots import latency_scatter

    lat, setting, space = run.cfg.latency, run.setting(), run.cfg.space
    given = {t.engine: t for t in (LatencyTable.load(p, space=space) for p in lat.tables)}
    tables = {}
    for e in run.candidates()[0]:
        engine = e.name
        st = Settings.for_input(space, run.engine_device(engine), e.backend, lat.batch, e.dtype, setting, lat.warmup,
                                lat.repeats, threads=e.threads)
        path = run.lut_path(engine)
        if engine in given and not path.exists():
            _check_given(given[engine], st)
            given[engine].save(path)
        table = measure_table(st, path, progress=run.progress)
        if table.calibration and engine in given:  # validated when it was measured
            tables[engine] = TableRecord(str(path), table.describe(), table.entries(),
                                         {"n": table.calibration.get("n"), "given": str(given[engine].path)})
            continue
        v = validate_table(LatencyTable.load(path), lat.validate_archs, run.cfg.seed, run.progress, lat.repeats)
        m = v.metrics()
        latency_scatter(path.with_suffix(".validation.png"), v.measured, v.raw, v.calibrated_loo,
                        f"{table.describe()}: {m['n']} random archs")
        tables[engine] = TableRecord(str(path), table.describe(), table.entries(), m)
    return LatencyResult(tables=tables, input=setting.as_dict())


def _check_given(table, st) -> None:
    """A table given in latency.tables must be for the run's own setting."""
    want = st.new_table().setting()
    diff = {k: (v, want[k]) for k, v in table.setting().items() if k != "device" and v != want[k]}
    if diff:
        raise UsageError(f"latency table {table.path} was measured for other settings than this run "
                         f"({', '.join(f'{k}: {a} vs {b}' for k, (a, b) in diff.items())}): remove it from "
                         "latency.tables")


def speed(run: Run) -> SpeedRecord:
    """The machine's speed when the search starts against the latency tables (nasdeploy.search.speed), and the
    rescaled tables the search uses; measured once per run and kept in search/speed.json, so that a search resumed
    after a kill finds the same tables, target and aim."""
    from ..latency import LatencyTable
    from ..search.speed import check_speed, headroom, rescaled

    path = run.out / "search" / "speed.json"
    kept = read_kept(path)
    if kept is not None:
        return kept
    s = run.cfg.search
    if s.speed_archs == 0:  # no check asked: the tables as measured, no measured headroom
        record = SpeedRecord(luts=run.luts(), headroom=0.0)
    else:
        checks = check_speed(run.tables(), s.clock, s.speed_archs, run.cfg.seed, run.progress)
        luts = [str(rescaled(LatencyTable.load(run.lut_path(e)), c.factor,
                             run.out / "search" / "tables" / run.lut_path(e).name).path)
                for e, c in checks.items()]
        record = SpeedRecord(luts=luts, headroom=round(headroom(checks), 4),
                             checks={e: c.as_dict() for e, c in checks.items()})
    write_json(path, asdict(record))
    return record


def read_kept(path: Path) -> SpeedRecord | None:
    """A speed check kept by an earlier run of the search stage, where it is whole and its tables are there."""
    try:
        kept = from_table(SpeedRecord, json.loads(path.read_text()), path.name)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, UsageError, TypeError):
        return None
    return kept if kept.luts and all(Path(p).is_file() for p in kept.luts) else None


def aim(tables, target: float, headroom: float) -> tuple[float, float]:
    """(what the search runs under: ``target / (1 + headroom)``, never below 5% over the fastest possible
    architecture nor above the target; the headroom that leaves)."""
    floor = 1.05 * tables.fastest()[1]
    at = max(target / (1 + headroom), min(floor, target))
    return round(at, 4), round(target / at - 1, 4)


def search(run: Run) -> SearchStageResult:
    """The search under the target (the configuration's, or automatic) less the headroom, on the rescaled tables."""
    from ..latency.table import EngineTables
    from ..search import SearchInputs, auto_target
    from ..search import search as run_search

    s, cfg = run.cfg.search, run.cfg
    checked = speed(run)
    tables = EngineTables.load(checked.luts)
    target = s.target if s.target is not None else auto_target(tables, cfg.space, cfg.seed)
    at, left = aim(tables, target, checked.headroom if s.latency_headroom == "auto" else float(s.latency_headroom))
    inp = SearchInputs(space=cfg.space, supernet=str(run.out / "supernet" / "supernet.pt"), lut=checked.luts,
                       data=cfg.data, device=run.device)
    r = run_search(inp, s.search_config(at, run.device, cfg.seed), run.out / "search", progress=run.progress)
    if r.best is None or r.chosen is None:
        raise UsageError(f"no architecture met {at} ms: raise search.evaluations or the target")
    out = run.out / "search"
    return SearchStageResult(**vars(r), target_ms=target, aim_ms=at, headroom=left, speed=checked,
                             card=str(out / "best.toml"), pareto_png=str(out / "pareto.png"))


def finetune(run: Run) -> FinetuneResult:
    """The chosen architecture alone, from its inherited weights."""
    from ..finetune import finetune as run_finetune

    f = FinetuneConfig(**{**asdict(run.cfg.finetune), "seed": run.cfg.seed, "device": run.device})
    card = run_finetune(str(run.out / "search" / "best.toml"), run.out / "finetune", f, run.cfg.data,
                        progress=run.progress)
    return FinetuneResult(card=str(card), steps=f.steps, batch_size=f.batch_size, lr=f.lr)
