"""`bench`: throughput and latency per engine and batch, against PyTorch eager fp32 in the same run.

A model is either resolved (zoo name, card, checkpoint: every engine is built for this run from its folded form)
or an export folder (every engine is the folder's own files, hashes checked: what ships is what is timed)."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..backends import (Engine, Runner, device_context, parse_dtype, reference_engine, same_engine, tf32_mode,
                        unavailable_reason)
from ..deploy import Contender
from ..device import check_device
from ..errors import DeviceError, NasDeployError, UsageError
from ..export.manifest import ExportFolder, is_export
from ..progress import advance, progress_bar
from ..quantize import QuantOptions
from ..zoo import Resolved
from . import isolated
from .env import environment
from .source import BASELINE, COMPILE_REFERENCE, PlannedRow, Source
from .stats import DEFAULT_CONFIDENCE, RoundLatency, check_confidence, check_latency
from .timing import Clock, Stats, latency_record, time_cpu, time_runner

log = logging.getLogger(__name__)


@dataclass
class GateSpec:
    """Score every bench row with the accuracy gate: ``images`` of the gate's split (search-validation: the gate
    names the engine to ship, so it never reads the test split) of ``data`` (an ImageNet-layout folder, or None
    for the built-in images), ``budget`` top-1 points."""

    data: str | None = None
    images: int = 1000
    budget: float = 1.0


@dataclass
class BenchOptions:
    device: str = "cpu"
    backends: list[str] | None = None  # None: every registered backend (or, for an export, its engines)
    batches: list[int] | None = None  # None: 1 and 16 on the CPU, 1 and 256 on CUDA
    dtypes: list[str] | None = None  # None: fp32 on the CPU, fp32 and fp16 on CUDA (an export: its own)
    repeats: int | None = None
    rounds: int = 5  # interleaved rounds over all rows of a model and batch (more, up to 3x, for rows not
    # decided: nasdeploy.bench.timing.Clock); the median of round medians counts, with its bounds at confidence
    compile_reference: bool | None = None  # plain torch.compile rows (default: on CUDA)
    tf32: bool = False
    calib_data: str | None = None  # INT8 rows built for this run: calibration images (train split)
    quant: QuantOptions | None = None
    gate: GateSpec | None = None  # score every row on held-out images and name the engine to ship
    progress: bool = True
    # a latency target (ms) the rows at ``target_batch`` are judged against (meets, misses, undecided at
    # ``confidence``; undecided rows get more rounds); None: no target
    target_ms: float | None = None
    target_batch: int = 1
    confidence: float = DEFAULT_CONFIDENCE
    # CPU: each engine that names no threads is also timed at each of these thread counts (rows ENGINE@THREADS,
    # the same files), so which thread count pays on this CPU is measured, not assumed
    threads: list[int] | None = None
    # called with the result after each model and batch (and before their timing, once built): the CLI writes its
    # JSON there, so a run killed or crashed later keeps what it measured
    on_update: Callable[["BenchResult"], None] | None = None

    @property
    def clock(self) -> Clock:
        """The clock these options time with (warm-up and pause as everywhere; these repeats, rounds, confidence)."""
        return Clock(repeats=self.repeats or Clock.repeats, rounds=self.rounds, confidence=self.confidence)

    def target_for(self, batch: int) -> float | None:
        return self.target_ms if batch == self.target_batch else None

    def check(self, exports: bool) -> "BenchOptions":
        check_device(self.device)
        for b in self.backends or []:
            unavailable_reason(b, self.device)  # raises on an unknown backend
        if any(b < 1 for b in self.batches or []):
            raise UsageError(f"--batch values must be at least 1, got {self.batches}")
        if self.rounds < 1:
            raise UsageError(f"--rounds must be at least 1, got {self.rounds}")
        check_latency(self.target_ms)
        check_confidence(self.confidence)
        if self.repeats is not None and self.repeats < 1:
            raise UsageError(f"--repeats must be at least 1, got {self.repeats}")
        for d in self.dtypes or []:
            parse_dtype(d)
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in self.threads or []):
            raise UsageError(f"--threads values must be whole numbers of at least 1, got {self.threads}")
        if "int8" in (self.dtypes or []) and not exports:
            self.quant = (self.quant or QuantOptions()).check()
        return self


@dataclass
class BenchRow:
    model: str
    backend: str
    dtype: str
    batch: int
    throughput: float  # images/s from the median latency
    # one call (ms; GPU compute time on CUDA, events; wall time on the CPU): each statistic's median over the
    # rounds ("median": the median of round medians), its bounds at "confidence", every round median, stability
    latency: dict
    latency_with_copies: dict | None = None  # CUDA: host->device input, run, device->host output (wall)
    speedup: float | None = None  # over the baseline at the same batch
    note: str = ""
    vs_compile: float | None = None  # over plain torch.compile at the same batch (vs_compile_dtype)
    parity: dict | None = None  # this row's output on the timed input against the baseline's (max abs/rel error)
    vs_reference: float | None = None  # over the reference engine (ONNX Runtime fp32 on the CPU) at the same batch
    threads: int | None = None  # CPU threads the runtime ran with
    accuracy: dict | None = None  # the accuracy gate on held-out images (when asked): see nasdeploy.gate
    files: dict | None = None  # the export's files this row ran, with their sha256 (None: built for this run)
    vs_compile_dtype: str | None = None
    target: dict | None = None  # against a latency target: {"target_ms", "verdict"} (meets, misses, undecided)
    engine_threads: int | None = None  # the threads its engine names (BACKEND:PRECISION@THREADS); None: the default

    @property
    def engine(self) -> str:
        """BACKEND:PRECISION, with @THREADS where the engine names its threads."""
        return Engine(self.backend, self.dtype, self.engine_threads).name

    @property
    def round_latency(self) -> RoundLatency:
        """The row's latency as the statistic with its bounds."""
        return RoundLatency.of(self.latency["round_medians"], self.latency.get("confidence", DEFAULT_CONFIDENCE))

    @property
    def round_medians(self) -> list[float] | None:
        return self.latency.get("round_medians")

    @property
    def median_ms(self) -> float:
        """The median of its round medians."""
        return self.latency["median"]

    @property
    def upper_ms(self) -> float | None:
        return self.latency.get("upper")

    @property
    def verdict(self) -> str | None:
        """Against a latency target: meets, misses or undecided (None: no target)."""
        return (self.target or {}).get("verdict")

    @property
    def per_core(self) -> float | None:
        """Images per second per CPU thread the runtime ran with (None on a GPU): what a serving engineer compares
        between an engine at 1 thread and one at 2."""
        return self.throughput / self.threads if self.threads else None


@dataclass(frozen=True)
class ServingLayout:
    """A way to serve one engine at batch 1 on the whole CPU: ``instances`` copies, each on ``threads`` cores of its
    own. ``images_per_s`` is estimated as instances x one instance's measured throughput: instances on separate
    cores are assumed not to slow one another (an upper estimate where cores share a cache or are hyperthreads)."""

    model: str
    engine: str
    instances: int
    threads: int
    images_per_s: float
    latency_ms: float  # one request's latency, as measured for one instance


def serving_layouts(rows: list[BenchRow], cores: int) -> list[ServingLayout]:
    """Every batch-1 CPU row that states its threads, as a serving layout on ``cores`` cores (best first)."""
    out = [ServingLayout(r.model, r.engine, cores // r.threads, r.threads, cores // r.threads * r.throughput,
                         r.median_ms)
           for r in rows if r.batch == 1 and r.threads and r.threads <= cores and r.backend != BASELINE
           and r.backend != COMPILE_REFERENCE]
    return sorted(out, key=lambda s: -s.images_per_s)


@dataclass
class BenchResult:
    environment: dict
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # engines that cannot run here, with the reason
    failed: list[dict] = field(default_factory=list)  # rows that failed to build or while timed, with the reason
    quantization: dict[str, dict] = field(default_factory=dict)  # per model: how its int8 rows were calibrated
    isa_notes: list[str] = field(default_factory=list)  # INT8 engines gated on another instruction set

    def deployable(self) -> list[dict]:
        """Per model and batch, the engine the deploy rule (``nasdeploy.deploy``) ships among the rows scored by
        the accuracy gate."""
        from ..deploy import choose_engine

        ref = reference_engine(self.environment["device"]).name
        out = []
        for key in dict.fromkeys((r.model, r.batch) for r in self.rows):
            cands = [candidate(r) for r in self.rows if (r.model, r.batch) == key and r.backend != BASELINE
                     and r.backend != COMPILE_REFERENCE and r.accuracy]
            chosen = choose_engine(cands, ref)
            if chosen:
                row = next(r for r in self.rows if (r.model, r.batch) == key and r.engine == chosen.engine)
                out.append({"model": key[0], "batch": key[1], **asdict(chosen), "vs_reference": row.vs_reference,
                            "accuracy": row.accuracy})
        return out

    def serving(self) -> list[ServingLayout]:
        """Batch-1 serving layouts on this CPU's cores, best throughput first (none on a GPU)."""
        cores = self.environment.get("cores")
        return [] if not cores or self.environment["device"].startswith("cuda") else serving_layouts(self.rows, cores)

    def as_dict(self) -> dict:
        return {"environment": self.environment, "baseline": BASELINE, "compile_reference": COMPILE_REFERENCE,
                "reference_engine": reference_engine(self.environment["device"]).name,
                "rows": [asdict(r) for r in self.rows], "skipped": self.skipped, "failed": self.failed,
                "deployable": self.deployable(), "serving": [asdict(s) for s in self.serving()],
                "quantization": self.quantization, "isa_notes": self.isa_notes}


def candidate(row: BenchRow) -> Contender:
    """A bench row as the deploy rule reads it."""
    return Contender(engine=row.engine, throughput=row.throughput, round_medians=row.round_medians, gate=row.accuracy,
                     files=row.files, verdict=row.verdict)


def _with_copies(runner: Runner, x_cpu: torch.Tensor, repeats: int) -> Stats:
    """Wall time of copy-in, run, copy-out, synchronised (what a serving loop pays)."""
    pinned = x_cpu.pin_memory()

    def synced() -> None:
        with device_context(runner.device):
            y = runner(pinned.to(runner.device, non_blocking=True))
            y.to("cpu", non_blocking=False)
            torch.cuda.synchronize()

    return time_cpu(synced, warmup=10, repeats=repeats)


def bench(models: list, opt: BenchOptions | None = None) -> BenchResult:
    """Time every engine of every model at every batch against PyTorch eager fp32 in the same run.

    All rows of one model and batch are built first, then timed in ``opt.rounds`` interleaved rounds in a new
    order each round (the median of the round medians counts, with its bounds), so a slow spell of the machine
    touches every row alike. A row that fails to build or while it is timed is listed under ``failed`` with its
    reason; the others are kept.
    """
    opt = opt or BenchOptions()
    exports = any(isinstance(m, ExportFolder) or (not isinstance(m, Resolved) and is_export(m)) for m in models)
    opt.check(exports)
    with tf32_mode(opt.tf32):
        return _bench(models, opt)


def bench_in_clean_process(models: list[str | Path], opt: BenchOptions) -> BenchResult:
    """``bench`` in a fresh process of its own, as `nasdeploy bench` runs standalone: a long job that trained and
    fine-tuned first times its engines in the same state a user's bench will (benchmarks/README, "Timing in a
    clean process")."""
    from .worker import in_clean_process

    return in_clean_process(bench, [str(m) for m in models], opt)


def _bench(models: list, opt: BenchOptions) -> BenchResult:
    cuda = opt.device.startswith("cuda")
    res = BenchResult(environment(opt.device))
    batches = opt.batches or ([1, 256] if cuda else [1, 16])
    for b in opt.backends or []:
        reason = unavailable_reason(b, opt.device)
        if reason:
            res.skipped.append({"backend": b, "reason": reason})
    sources = [Source(m, opt, res.skipped, res.quantization) for m in models]
    bar = progress_bar(opt.progress, elapsed=True)
    total = sum(len(s.rows(1)) for s in sources) * len(batches) * (1 + opt.rounds)
    task = bar.add_task("bench", total=total) if bar else None
    try:
        if bar:
            bar.start()
        for src in sources:
            gate = _gate_for(src, opt, res)
            scored: dict[str, dict | None] = {}  # the gate does not depend on the batch: once per engine
            for n in batches:
                x = torch.randn(n, 3, src.setting.size, src.setting.size)
                rows = src.rows(n)
                try:
                    _batch(src, rows, n, x, opt, res, gate, scored, bar, task)
                finally:
                    for r in rows:
                        _close(r)
                _update(opt, res)
    finally:
        if bar:
            bar.stop()
        for src in sources:
            src.close()
    return res


def _batch(src: Source, rows: list[PlannedRow], n: int, x: torch.Tensor, opt: BenchOptions, res: BenchResult, gate,
           scored: dict, bar, task) -> None:
    """One model at one batch: every row built, timed in interleaved rounds, scored where asked, and reported."""
    for r in rows:
        advance(bar, task, description=f"{src.name} b{n}: build {r.backend} {r.dtype}")
        _build(r, x, res, src.name, n)
    _update(opt, res)  # a failed build is on disk before the timing starts

    def measure(i: int, k: int) -> None:
        if rows[i].runner is not None:
            _time(rows[i], x, opt, res, src.name, n)
        advance(bar, task, description=f"{src.name} b{n}: round {k + 1}/{opt.rounds}"
                if k < opt.rounds else f"{src.name} b{n}: round {k + 1}, rows not decided")

    # the one clock every whole-network figure is taken with (table validation, the search's finalists):
    # interleaved rounds in a new order each, a pause before each row on the CPU, the median of rounds
    clock, target = opt.clock, _target(src, opt, n)
    clock.interleave(len(rows), measure, opt.device, decided=lambda i: (
        rows[i].runner is None or clock.decided([st.median for st in rows[i].rounds], target)))
    if gate is not None:
        held, budget = gate
        for r in rows:
            key = f"{r.backend}:{r.dtype}"
            if r.runner is not None and key not in scored:
                scored[key] = _score(r.runner, held, n, budget)
            r.accuracy = scored.get(key)
    _rows(rows, src.name, n, x, opt, res, target)


def _update(opt: BenchOptions, res: BenchResult) -> None:
    """The result as it stands, to whoever keeps it (the CLI writes its JSON): a run killed later keeps this."""
    if opt.on_update is not None:
        opt.on_update(res)


def _gate_for(src: Source, opt: BenchOptions, res: BenchResult):
    """(held-out images, budget) where rows are to be scored: asked for, or an export's INT8 engine gated on a CPU
    of another instruction-set class (its figures were measured elsewhere: scored again here)."""
    spec = opt.gate
    if src.export is not None:
        for e in src.pairs:
            why = src.export.isa_mismatch(e.name)
            if why:
                note = f"{src.name} {e.name}: {why}: its accuracy gate is run again on this CPU"
                log.warning(note)
                res.isa_notes.append(note)
                spec = spec or GateSpec(budget=(src.export.entry(e.name).get("gate") or {}).get("budget", 1.0))
    if spec is None:
        return None
    from ..gate import held_out

    return held_out(src.plain, src.setting, spec.data, spec.images), spec.budget


def _build(r: PlannedRow, x: torch.Tensor, res: BenchResult, spec: str, n: int) -> None:
    """Build a row's runner and run it once (compile, capture, load); a failure becomes a 'skipped' line."""
    try:
        runner = r.make()
        t0 = time.perf_counter()
        r.out = runner(x).detach().float().cpu()
        log.debug("%s %s first call %.1fs", r.backend, r.dtype, time.perf_counter() - t0)
        r.runner = runner
    except (NasDeployError, RuntimeError) as e:  # one row that cannot run never ends the whole run
        _fail(r, res, spec, n, e)


def _time(r: PlannedRow, x: torch.Tensor, opt: BenchOptions, res: BenchResult, spec: str, n: int) -> None:
    try:
        if isinstance(r.runner, isolated.IsolatedRunner):  # a round timed in the row's own process
            r.rounds.append(r.runner.time_round(x, opt.device, opt.clock.warmup, opt.repeats))
        else:
            r.rounds.append(time_runner(r.runner, x, opt.device, opt.clock.warmup, opt.repeats))
        r.runner.check_ran()
    except (NasDeployError, RuntimeError) as e:  # a row failing while timed is dropped, the run goes on
        _fail(r, res, spec, n, e)


def _fail(r: PlannedRow, res: BenchResult, spec: str, n: int, e: Exception) -> None:
    """A row that failed: recorded with its reason (a failure, not a skip: the run's exit code says so)."""
    res.failed.append({"model": spec, "backend": r.backend, "dtype": r.dtype, "batch": n,
                       "reason": str(e).splitlines()[0][:200] if str(e) else type(e).__name__})
    _close(r)
    r.runner, r.rounds = None, []


def _close(r: PlannedRow) -> None:
    if isinstance(r.runner, isolated.IsolatedRunner):
        r.runner.close()


def _target(src: Source, opt: BenchOptions, n: int) -> float | None:
    """The latency target rows of ``src`` at batch ``n`` are judged against: the one asked for, else the one a
    deployed folder records (the target its engine was chosen under)."""
    if opt.target_ms is not None:
        return opt.target_for(n)
    lt = src.export.latency_target if src.export is not None else None
    return float(lt["target_ms"]) if lt and lt["batch"] == n else None


def _rows(rows: list[PlannedRow], spec: str, n: int, x: torch.Tensor, opt: BenchOptions, res: BenchResult,
          target: float | None) -> None:
    timed = [r for r in rows if r.runner is not None and r.rounds]
    lat = {id(r): latency_record(r.rounds, opt.confidence) for r in timed}
    tput = {id(r): n / (lat[id(r)]["median"] / 1e3) for r in timed}
    base = next((r for r in timed if r.backend == BASELINE), None)
    if base is None:
        raise DeviceError(f"{spec}: the PyTorch eager baseline could not run at batch {n} (see 'skipped')")
    compiled = {r.dtype: tput[id(r)] for r in timed if r.backend == COMPILE_REFERENCE}
    lowest_float = next((d for d in ("fp16", "bf16", "fp32") if d in compiled), None)
    ref_engine = reference_engine(opt.device)
    ref = next((tput[id(r)] for r in timed if r.engine == ref_engine), None) or \
        next((tput[id(r)] for r in timed if r.files and same_engine(r.engine, ref_engine)), None)
    for r in timed:
        cp = None
        if opt.device.startswith("cuda"):
            cp = r.runner.with_copies(x, opt.repeats or 50) if isinstance(r.runner, isolated.IsolatedRunner) else \
                _with_copies(r.runner, x, opt.repeats or 50)
        vs_dtype = r.dtype if r.dtype in compiled else (lowest_float if r.dtype == "int8" else None)
        note = ", ".join([r.note, *r.runner.notes()])
        res.rows.append(BenchRow(
            spec, r.backend, r.dtype, n, tput[id(r)], lat[id(r)], cp.as_dict() if cp else None, tput[id(r)] / tput[id(base)], note,
            tput[id(r)] / compiled[vs_dtype] if vs_dtype else None, _parity(base.out, r.out),
            tput[id(r)] / ref if ref else None, r.runner.threads, r.accuracy, r.files,
            vs_dtype, _verdict(lat[id(r)], target, opt.confidence), engine_threads=r.threads))


def _verdict(lat: dict, target: float | None, confidence: float) -> dict | None:
    if target is None:
        return None
    return {"target_ms": target, "verdict": RoundLatency.of(lat["round_medians"], confidence).verdict(target)}


def _parity(ref: torch.Tensor, out: torch.Tensor | None) -> dict | None:
    if out is None:
        return None
    from ..gate import agreement, error_stats

    st = error_stats(ref, out)
    return {"max_abs": st.max_abs, "max_rel": st.max_rel, "top1_agreement": agreement(ref, out), "images": len(ref)}


def _score(runner: Runner, held, n: int, budget: float) -> dict | None:
    """The gate of one runner, fed in calls of exactly ``n`` images (the batch it was built for)."""
    from ..gate import gate_of

    try:
        return gate_of(runner, held, (n, n), budget).as_dict()
    except (NasDeployError, RuntimeError) as e:
        log.warning("accuracy of %s not measured: %s", runner.name, str(e).splitlines()[0])
        return None


def default_models(device: str) -> list[str]:
    """`bench` without models: on the CPU every zoo model; on CUDA one representative per family (minutes, not
    hours; `--all` for every model)."""
    from ..zoo import list_models

    if not device.startswith("cuda"):
        return list_models()
    return [m for m in ("fairnas_a", "scarlet_a", "fairnas_a_se") if m in list_models()]


def model_spec(m) -> str:
    return str(m.path) if isinstance(m, ExportFolder) else (m.spec if isinstance(m, Resolved) else str(Path(m)))
