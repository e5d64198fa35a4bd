"""The stages that ship the model: every candidate engine exported into one folder, gated on held-out images,
timed in one bench run, and the one deploy rule (nasdeploy.deploy) choosing what ships, byte for byte what was
timed and gated, with the latency promise it keeps. Each reads the run (``Run``) and returns its typed result."""
from __future__ import annotations

import shutil

from ..bench.run import BenchRow
from ..bench.side_by_side import SideBySide
from ..bench.stats import RoundLatency
from ..errors import UsageError
from ..io import write_json
from .context import Run
from .results import (AccuracyResult, BenchStageResult, DeployCandidate, DeployResult, EngineAccuracy,
                      ExportStageResult, LayerCost, Promise)


def export(run: Run) -> ExportStageResult:
    """Every candidate engine that can run here, from the fine-tuned card, into one folder."""
    from ..export.api import ExportOptions, export_model
    from ..quantize import QuantOptions

    cfg = run.cfg
    live, skipped = run.candidates()
    opt = ExportOptions(engines=live, force=True, parity_images=cfg.export.parity_images, data=run.data,
                        budget=cfg.deploy.budget, quant=QuantOptions(images=cfg.deploy.calib_images),
                        force_accuracy=True, gate_images=min(1000, cfg.accuracy_images))
    r = export_model(str(run.deployed_card()), run.out / "export", opt=opt)
    return ExportStageResult(out=str(r.out), artefacts=r.artefacts, engines=r.engines, skipped=skipped,
                             fold=r.fold_report, parity=[p.as_dict() for p in r.parity], quantization=r.quantization)


def accuracy(run: Run) -> AccuracyResult:
    """Every exported engine through the accuracy gate, on the gate's images (search-validation, never test)."""
    from ..evaluate import Accuracy
    from ..export.manifest import ExportFolder
    from ..gate import GATE_SPLIT, gate_of, held_out

    folder = ExportFolder.open(run.out / "export")
    held = held_out(folder.plain(), folder.setting, run.data, run.cfg.accuracy_images, batch=200, split=GATE_SPLIT)
    engines = {}
    for engine in folder.engines:
        runner = folder.runner(engine, run.engine_device(engine), (1, 200))
        lo, hi = runner.batch_range
        gate = gate_of(runner, held, (lo, hi or 200), run.cfg.deploy.budget)
        engines[engine] = EngineAccuracy(**Accuracy.of(gate.outputs, held.labels).as_dict(), gate=gate.as_dict(),
                                         files=runner.files)
    return AccuracyResult(images=len(held.labels), split=held.split,
                          reference="torch:fp32 (the folded model in PyTorch)",
                          torch_folded=Accuracy.of(held.reference, held.labels).as_dict(), engines=engines)


def bench(run: Run) -> BenchStageResult:
    """Exactly the exported files, in a clean process, judged against the target at the latency batch."""
    from ..bench.run import BenchOptions, bench_in_clean_process
    from ..plots import throughput_plot

    b = run.cfg.bench
    batches = b.batches if run.device == "cpu" else sorted(set(b.batches) | {256})
    opt = BenchOptions(run.device, batches=batches, repeats=b.repeats, rounds=b.rounds, progress=run.progress,
                       target_ms=run.results.search.target_ms, target_batch=run.cfg.latency.batch,
                       confidence=run.cfg.search.latency_confidence, threads=b.threads)
    res = bench_in_clean_process([run.out / "export"], opt)
    write_json(run.out / "bench.json", res.as_dict())
    series: dict[str, list] = {}
    for r in res.rows:
        series.setdefault(f"{r.backend} {r.dtype}", []).append((r.batch, r.throughput))
    throughput_plot(run.out / "bench.png", series, f"searched model on {res.environment['device_name']}")
    return BenchStageResult(bench_json=str(run.out / "bench.json"), environment=res.environment, rows=res.rows,
                            skipped=res.skipped, failed=res.failed)


def contenders(run: Run, batch: int) -> list[DeployCandidate]:
    """Every gated engine with its bench row at ``batch`` (where it was timed on the export's files), and every
    other thread count the bench timed it at (ENGINE@THREADS: the same files, so the same gate)."""
    from ..export.manifest import ExportFolder

    folder = ExportFolder.open(run.out / "export")
    acc = run.results.accuracy.engines
    rows = [r for r in run.results.bench.rows if r.batch == batch and r.files]
    out, timed = [], set()
    for r in rows:
        listed, _ = folder.listed(r.engine)
        a = acc.get(listed)
        if a is not None:
            out.append(_candidate(r.engine, a, r))
            timed.add(r.engine)
    return out + [_candidate(engine, a, None) for engine, a in acc.items() if engine not in timed]


def _candidate(engine: str, a: EngineAccuracy, r: BenchRow | None) -> DeployCandidate:
    return DeployCandidate(engine=engine, top1=a.top1, top1_ci95=a.top1_ci95, gate=a.gate, gated_files=a.files,
                           **(_timed(r) if r else {"throughput": None, "round_medians": None}))


def _timed(r: BenchRow) -> dict:
    return {"median_ms": r.median_ms, "upper_ms": r.upper_ms, "round_medians": r.round_medians,
            "verdict": r.verdict, "throughput": r.throughput, "vs_reference": r.vs_reference, "files": r.files}


def deploy(run: Run) -> DeployResult:
    """The one rule (nasdeploy.deploy), then the chosen engine's files, byte for byte, with the promise."""
    from ..backends import Engine, pinned, reference_engine
    from ..deploy import choose_engine
    from ..export.manifest import ExportFolder

    rows = run.results.bench.rows
    batch = run.cfg.latency.batch if run.cfg.latency.batch in {r.batch for r in rows} else rows[0].batch
    table = contenders(run, batch)
    chosen = choose_engine(table, reference_engine(run.device).name)
    if chosen is None:
        raise UsageError("no exported engine passed the accuracy gate and was timed: see the accuracy stage; "
                         "raise deploy.budget or add the reference engine to deploy.engines")
    best = next(c for c in table if c.engine == chosen.engine)
    row = next((r for r in rows if r.batch == batch and r.engine == chosen.engine and r.files), None)
    folder = ExportFolder.open(run.out / "export")
    kept = promise(run, chosen.engine, row, batch)
    as_shipped = pinned(Engine.parse(chosen.engine), row.threads if row else None).name
    shipped = ship(run, folder, chosen.engine, kept, as_shipped)
    searched = run.results.search.best.engine
    return DeployResult(**vars(chosen), batch=batch, budget=run.cfg.deploy.budget, vs_reference=best.vs_reference,
                        deployed=str(run.out / "deployed"), shipped_files=shipped, timed_files=best.files,
                        gated_files=best.gated_files, same_files=shipped == best.files == best.gated_files,
                        searched_engine=searched, search_targeted_it=searched == chosen.engine,
                        latency_tables={e: t.lut for e, t in run.results.latency.tables.items()},
                        candidates=table, test=test_split(run, folder, chosen.engine), latency=kept,
                        shipped_engine=as_shipped,
                        per_layer=layer_costs(run))


def layer_costs(run: Run) -> list[LayerCost] | None:
    """Where the latency tables hold more than one precision: the chosen architecture entry by entry on every
    table, so the report can say where a reduced precision gains and loses at this size (None otherwise)."""
    from ..latency.table import LatencyTable

    tables = {e: LatencyTable.load(t.lut) for e, t in run.results.latency.tables.items()}
    if len({t.dtype for t in tables.values()}) < 2:
        return None
    arch = run.results.search.chosen.arch
    rows = {e: t.breakdown(arch) for e, t in tables.items()}
    first = next(iter(rows.values()))
    return [LayerCost(layer=name, ms={e: round(r[i][1], 6) for e, r in rows.items()})
            for i, (name, _) in enumerate(first)]


def test_split(run: Run, folder, engine: str) -> dict:
    """The shipped engine on the test split, once: the accuracy figure the report quotes."""
    import torch

    from ..data import labelled_batches
    from ..evaluate import Accuracy
    from ..gate import chunked

    batches, _ = labelled_batches(run.data, "test", folder.setting, run.cfg.accuracy_images, batch=200)
    labels = torch.cat([y for _, y in batches])
    runner = folder.runner(engine, run.engine_device(engine), (1, 200))
    lo, hi = runner.batch_range
    logits = chunked(runner, [x for x, _ in batches], lo, hi or 200)
    return {"engine": engine, "split": "test", **Accuracy.of(logits, labels).as_dict()}


def promise(run: Run, engine: str, row: BenchRow | None, batch: int) -> Promise:
    """What the search promised for the shipped engine and what the bench timed, by the same statistic (the median
    of round medians): the target and its confidence, the table's prediction, the search's measurement of the
    chosen architecture (every round it was timed in) on the shipped engine, or, where the search did not time that
    engine (another thread count the bench found faster), on the engine the search chose under, the bench latency
    with its bounds, and the verdict (meets: the upper bound under the target; misses: the lower bound over it;
    undecided)."""
    se = run.results.search
    ch = se.chosen
    target, confidence = se.target_ms, run.cfg.search.latency_confidence
    search_engine = engine if engine in ch.measured_by_engine else ch.engine
    measured = ch.measured_by_engine.get(search_engine)
    lat = RoundLatency.of(row.round_medians or [], confidence) if row else None
    bench_ms = lat.median if lat else None
    verdict = lat.verdict(target) if lat else None
    searched = ch.latency_by_engine.get(search_engine)
    same = search_engine == engine
    pair = side_by_side(run, engine, measured if same else None) if row else None
    return Promise(engine=engine, batch=batch, target_ms=target, confidence=confidence,
                   predicted_ms=ch.predicted_by_engine.get(search_engine), search_measured_ms=measured,
                   search_latency=searched, disagreement=disagreement(searched, lat, target) if same else None,
                   bench_median_ms=bench_ms, bench_latency=lat.as_dict() if lat else None,
                   bench_vs_search=bench_ms / measured if bench_ms and measured else None, verdict=verdict,
                   meets_target=None if verdict is None else verdict == "meets",
                   warning=lat.stability.warning if lat else None, side_by_side=pair, search_engine=search_engine)


def side_by_side(run: Run, engine: str, search_ms: float | None) -> SideBySide | None:
    """The shipped engine's file against the search's network of the chosen architecture on that engine (built
    from its latency table, as the search's finalists were, with the shipped engine's threads), timed together by
    the search's clock in the bench's clean process; None where its runtime and precision had no latency table.
    ``search_ms``: the search's figure on exactly that engine (None where it did not time it)."""
    from ..backends import Engine
    from ..bench.side_by_side import side_by_side as pair

    tables = run.results.latency.tables
    e = Engine.parse(engine)
    table = tables.get(engine) or tables.get(e.plain.name)  # ENGINE@T: its runtime's table
    if table is None:
        return None
    return pair(run.out / "export", engine, table.lut, run.results.search.chosen.arch, run.engine_device(engine),
                run.cfg.search.clock, search_ms, seed=run.cfg.seed, threads=e.threads)


def ship(run: Run, folder, engine: str, kept: Promise, as_shipped: str) -> dict[str, str]:
    """Copy the chosen engine's files (and a manifest of it alone, named ``as_shipped``: with the threads it was
    timed with, and the latency target it was chosen under) into OUT/deployed; their hashes."""
    from ..backends import Engine
    from ..export.manifest import MANIFEST, sha256

    dst = run.out / "deployed"
    tmp = run.out / ".deployed.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    listed, _ = folder.listed(engine)
    files = folder.check_files(listed)
    for name in set(files) | {folder.pytorch_file}:
        shutil.copy2(folder.path / name, tmp / name)
    threads = Engine.parse(as_shipped).threads
    entry = dict(folder.entry(listed), **({"threads": threads} if threads else {}))
    m = dict(folder.manifest, engines={as_shipped: entry},
             latency_target={"target_ms": kept.target_ms, "batch": kept.batch, "engine": as_shipped,
                             "confidence": kept.confidence})
    write_json(tmp / MANIFEST, m)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return {name: sha256(dst / name) for name in files}


def disagreement(searched: dict | None, bench: RoundLatency | None, target: float) -> str | None:
    """Where the search's rounds and the bench's rounds of one engine disagree beyond both bounds (the machine's
    speed changed between the two timings by more than either saw), what that means for the verdict; else None."""
    if not searched or bench is None:
        return None
    s = RoundLatency.of(searched["round_medians"], bench.confidence)
    if s.overlaps(bench):
        return None
    return (f"the search timed it at {s.median:.3f} ms [{s.lower:.3f}, {s.upper:.3f}] ({s.verdict(target)}) and the "
            f"bench at {bench.median:.3f} ms [{bench.lower:.3f}, {bench.upper:.3f}]: the machine's speed changed "
            "between the two timings by more than either's bounds, so neither verdict speaks for the other; time the "
            "deployed folder again (nasdeploy bench DIR/deployed) when the machine is quiet")
