"""`bench`: throughput and latency per backend / batch / dtype, against PyTorch eager fp32 in the same run."""
from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import asdict, dataclass, field

import torch

from ..backends import (Runner, backend_names, check_device, device_context, dtype_reason, make_runner, parse_dtype,
                        unavailable_reason)
from ..backends.compile import CompileRunner
from ..backends.torch_eager import TorchRunner
from ..errors import DeviceError, NasDeployError, UsageError
from ..fold import fold
from ..progress import progress_bar
from ..quantize import QuantOptions
from ..zoo import input_size_of, load_any
from .env import environment
from .timing import Stats, best_round, time_cpu, time_runner

log = logging.getLogger(__name__)
BASELINE = "torch-eager-fp32"
# What users compare a deployment toolkit with on the GPU: the unfolded model under plain torch.compile
# (default mode, channels_last), in the benchmarked dtype. Timed in the same run; every row gets its ratio.
COMPILE_REFERENCE = "torch-compile-plain"
# On the CPU, PyTorch's OpenMP threads and ONNX Runtime's pool spin for a while after their last work and would
# take the cores from whichever row runs next: each row starts after this pause.
SETTLE_S = 0.3
# What a deployment toolkit must beat on the CPU: the folded model in plain ONNX Runtime fp32.
ORT_REFERENCE = ("onnxruntime", "fp32")


@dataclass
class BenchRow:
    model: str
    backend: str
    dtype: str
    batch: int
    throughput: float  # images/s from the median latency
    latency: dict  # Stats of one call (ms): GPU compute time on CUDA (events), wall time on CPU
    latency_with_copies: dict | None = None  # CUDA: host->device input, run, device->host output (wall)
    speedup: float | None = None  # over the baseline at the same batch
    note: str = ""
    vs_compile: float | None = None  # over plain torch.compile at the same batch and dtype (when timed)
    parity: dict | None = None  # this row's output on the timed input against the baseline's (max abs/rel error)
    vs_onnxruntime: float | None = None  # over the folded model in ONNX Runtime fp32 at the same batch (when timed)
    threads: int | None = None  # CPU threads the runtime ran with
    accuracy: dict | None = None  # the accuracy gate on held-out images (when asked): see nasdeploy.gate


@dataclass
class BenchResult:
    environment: dict
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    quantization: dict[str, dict] = field(default_factory=dict)  # per model: how its int8 rows were calibrated

    def deployable(self) -> list[dict]:
        """Per model and batch: the fastest row that passed the accuracy gate (rows without a gate are not
        candidates), with its ratio over ONNX Runtime fp32."""
        best: dict[tuple, BenchRow] = {}
        for r in self.rows:
            if r.accuracy and r.accuracy["passed"] and r.backend != BASELINE:
                key = (r.model, r.batch)
                if key not in best or r.throughput > best[key].throughput:
                    best[key] = r
        return [{"model": r.model, "batch": r.batch, "engine": f"{r.backend}:{r.dtype}", "throughput": r.throughput,
                 "vs_onnxruntime": r.vs_onnxruntime, "accuracy": r.accuracy} for r in best.values()]

    def as_dict(self) -> dict:
        return {"environment": self.environment, "baseline": BASELINE, "compile_reference": COMPILE_REFERENCE,
                "onnxruntime_reference": ":".join(ORT_REFERENCE), "rows": [asdict(r) for r in self.rows],
                "skipped": self.skipped, "deployable": self.deployable(), "quantization": self.quantization}


def _with_copies(runner: Runner, x_cpu: torch.Tensor, repeats: int) -> Stats:
    """Wall time of copy-in, run, copy-out, synchronised (what a serving loop pays)."""
    pinned = x_cpu.pin_memory()

    def synced() -> None:
        with device_context(runner.device):
            y = runner(pinned.to(runner.device, non_blocking=True))
            y.to("cpu", non_blocking=False)
            torch.cuda.synchronize()

    return time_cpu(synced, warmup=10, repeats=repeats)


@dataclass
class _Entry:
    """One row to time: its runner (None once it failed to build) and what the row will say."""

    backend: str
    dtype: str
    note: str
    runner: Runner | None
    rounds: list = field(default_factory=list)
    out: torch.Tensor | None = None  # its output on the timed input (parity against the baseline)
    accuracy: dict | None = None


def bench(models: list[str], device: str = "cpu", backends: list[str] | None = None, batches: list[int] | None = None,
          dtypes: list[str] | None = None, repeats: int | None = None, progress: bool = True,
          compile_reference: bool | None = None, rounds: int = 3, tf32: bool = False, calib_data: str | None = None,
          quant: QuantOptions | None = None, gate: "GateSpec | None" = None,
          graphs: dict[str, str] | None = None) -> BenchResult:
    """Time every backend of every model at every batch and dtype against PyTorch eager fp32 in the same run.

    All runners of one model and batch are built first, then timed in ``rounds`` interleaved rounds (the
    round with the lowest median counts), so a slow spell of the machine touches every row alike.
    ``compile_reference`` (default: on CUDA) also times the unfolded model under plain ``torch.compile``.
    ``tf32``: let "fp32" convolutions and matmuls use TF32 on GPUs that have it (off by default, so fp32 rows
    are float32; the setting is recorded in the environment and in every fp32 row's note).
    int8 rows quantize the folded model with ``quant`` on calibration images from ``calib_data`` (train split;
    default: the built-in images). ``gate``: every row is also scored on held-out images against the folded
    float32 model (nasdeploy.gate), and the result lists the fastest row that passed, per model and batch.
    ``graphs`` (one model only): the ONNX graphs an export wrote ({"fp32": ..., "int8": ...}), timed as they are.
    """
    if graphs and len(models) != 1:
        raise UsageError("exported graphs belong to one model: bench one model with them")
    check_device(device)
    cuda = device.startswith("cuda")
    backends = backends or backend_names()
    for b in backends:
        unavailable_reason(b, device)  # raises on an unknown backend
    batches = batches or ([1, 256] if cuda else [1, 16])
    if any(b < 1 for b in batches):
        raise UsageError(f"--batch values must be at least 1, got {batches}")
    if rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {rounds}")
    dtypes = dtypes or (["fp32", "fp16"] if cuda else ["fp32"])
    for d in dtypes:
        parse_dtype(d)
    quant = (quant or QuantOptions()).check() if "int8" in dtypes else quant
    with _tf32(tf32):
        return _bench(models, device, backends, batches, dtypes, repeats, progress, compile_reference, rounds, tf32,
                      calib_data, quant, gate, graphs)


@dataclass
class GateSpec:
    """Score every bench row on held-out labelled images: ``data`` (an ImageNet-layout folder, or None for the
    built-in images), ``images`` of them, ``budget`` top-1 points."""

    data: str | None = None
    images: int = 1000
    budget: float = 1.0


class _tf32:
    """Set PyTorch's TF32 switches for the run (cuDNN allows TF32 by default) and restore them after."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self) -> None:
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.on

    def __exit__(self, *exc) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def _bench(models, device, backends, batches, dtypes, repeats, progress, compile_reference, rounds,
           tf32, calib_data, quant, gate, graphs) -> BenchResult:
    cuda = device.startswith("cuda")
    res = BenchResult(environment(device) | {"tf32": tf32 if cuda else None})
    for b in backends:
        reason = unavailable_reason(b, device)
        if reason:
            res.skipped.append({"backend": b, "reason": reason})
    live = [b for b in backends if not unavailable_reason(b, device)]
    pairs = []
    for b in live:
        for d in dtypes:
            why = dtype_reason(b, d, device)
            if why:
                res.skipped += [{"model": spec, "backend": b, "dtype": d, "reason": why} for spec in models]
            else:
                pairs.append((b, d))
    if compile_reference is None:
        compile_reference = cuda
    per_batch = 1 + (len(dtypes) if compile_reference else 0) + len(pairs)
    bar = progress_bar(progress, elapsed=True)
    task = bar.add_task("bench", total=len(models) * len(batches) * per_batch * (1 + rounds)) if bar else None
    try:
        if bar:
            bar.start()
        for spec in models:
            model = load_any(spec).eval()
            size = input_size_of(spec, model)
            plain, _ = fold(model, input_size=min(size, 64))
            what = "already folded input" if getattr(model, "folded", False) else "unfolded"
            small = model.stride_plan is not None
            calib = None
            if any(d == "int8" for _, d in pairs) and not {"int8", "int8-nncf"} <= set(graphs or {}):
                from ..quantize import calibration_images

                calib = calibration_images(size, small, calib_data, quant)
                res.quantization[spec] = {**asdict(quant), "exclude": list(quant.exclude),
                                          "calibration": calib.source, "calibration_images": calib.images}
            held = None
            if gate is not None:
                from ..export.parity import held_out

                held = held_out(plain, size, small, gate.data, gate.images)
            scored: dict[tuple[str, str], dict] = {}  # the gate does not depend on the batch: once per engine
            for n in batches:
                x = torch.randn(n, 3, size, size)
                # runners move their module to the device and dtype in place: each gets its own copy
                build = [(BASELINE, "fp32", f"{what}, eager, no CUDA graph",
                          lambda: TorchRunner(copy.deepcopy(model), device, torch.float32, cuda_graph=False))]
                if compile_reference:
                    build += [(COMPILE_REFERENCE, d, "unfolded, torch.compile default mode, channels_last",
                               lambda d=d: CompileRunner(copy.deepcopy(model), device, parse_dtype(d),
                                                         channels_last=True)) for d in dtypes]
                build += [(b, d, "folded" + (", CUDA graph" if b == "torch" and cuda else ""),
                           lambda b=b, d=d: make_runner(b, plain, (n, 3, size, size), device, d, tf32=tf32,
                                                        calibration=calib, graphs=graphs))
                          for b, d in pairs]
                if cuda:
                    build = [(b, d, note + (f", TF32 {'on' if tf32 else 'off'}" if d == "fp32" else ""), make)
                             for b, d, note, make in build]
                entries = []
                for backend, dtype, note, make in build:
                    if bar:
                        bar.update(task, advance=1, description=f"{spec} b{n}: build {backend} {dtype}")
                    entries.append(_build(make, backend, dtype, note, x, res, spec, n))
                order = list(entries)
                for r in range(rounds):
                    random.Random(r).shuffle(order)  # no row always follows the same one (runtime threads may spin)
                    for e in order:
                        if e.runner is not None:
                            if not cuda:
                                time.sleep(SETTLE_S)  # the previous row's idle threads stop spinning first
                            e.rounds.append(time_runner(e.runner, x, device, repeats=repeats))
                        if bar:
                            bar.update(task, advance=1, description=f"{spec} b{n}: round {r + 1}/{rounds}")
                if held is not None:
                    for e in entries:
                        if e.runner is not None and (e.backend, e.dtype) not in scored:
                            scored[(e.backend, e.dtype)] = _score(e.runner, held, n, gate.budget)
                        e.accuracy = scored.get((e.backend, e.dtype))
                _rows(entries, spec, n, x, device, repeats, res)
    finally:
        if bar:
            bar.stop()
    return res


def _build(make, backend: str, dtype: str, note: str, x: torch.Tensor, res: BenchResult, spec: str, n: int) -> _Entry:
    """Build a runner and run it once (compile, capture, load); a failure becomes a 'skipped' line."""
    try:
        runner = make()
        t0 = time.perf_counter()
        out = runner(x).detach().float().cpu()
        log.debug("%s %s first call %.1fs", backend, dtype, time.perf_counter() - t0)
        return _Entry(backend, dtype, note, runner, out=out)
    except (NasDeployError, RuntimeError) as e:  # one row that cannot run never ends the whole run
        res.skipped.append({"model": spec, "backend": backend, "dtype": dtype, "batch": n,
                            "reason": str(e).splitlines()[0][:200]})
        return _Entry(backend, dtype, note, None)


def _rows(entries: list[_Entry], spec: str, n: int, x: torch.Tensor, device: str, repeats: int | None,
          res: BenchResult) -> None:
    timed = [e for e in entries if e.runner is not None]
    best = {id(e): best_round(e.rounds) for e in timed}
    tput = {id(e): n / (best[id(e)].median / 1e3) for e in timed}
    base = next((tput[id(e)] for e in timed if e.backend == BASELINE), None)
    if base is None:
        raise DeviceError(f"{spec}: the PyTorch eager baseline could not run at batch {n} (see 'skipped')")
    ref = {e.dtype: tput[id(e)] for e in timed if e.backend == COMPILE_REFERENCE}
    base_out = next(e.out for e in timed if e.backend == BASELINE)
    ort = next((tput[id(e)] for e in timed if (e.backend, e.dtype) == ORT_REFERENCE), None)
    for e in timed:
        st = best[id(e)]
        if isinstance(e.runner, CompileRunner):  # proof that the row ran compiled code, not eager
            e.note += f", {e.runner.graphs} graph(s) compiled"
        threads = getattr(e.runner, "threads", None)
        if threads:
            e.note += f", {threads} thread(s)"
        precision = getattr(e.runner, "precision", None)
        if precision:  # what the runtime says it runs (OpenVINO's inference precision)
            e.note += f", runtime precision {precision}"
        cp = _with_copies(e.runner, x, repeats or 50) if device.startswith("cuda") else None
        res.rows.append(BenchRow(spec, e.backend, e.dtype, n, tput[id(e)], st.as_dict() | {"rounds": len(e.rounds),
                                                                "round_medians": [round(r.median, 6) for r in e.rounds]},
                                 cp.as_dict() if cp else None, tput[id(e)] / base, e.note,
                                 tput[id(e)] / ref[e.dtype] if e.dtype in ref else None, _parity(base_out, e.out),
                                 tput[id(e)] / ort if ort else None, threads, e.accuracy))


def _parity(ref: torch.Tensor, out: torch.Tensor | None) -> dict | None:
    if out is None:
        return None
    from ..export.parity import error_stats

    st = error_stats(ref, out)
    agree = float((ref.argmax(1) == out.argmax(1)).double().mean() * 100)
    return {"max_abs": st.max_abs, "max_rel": st.max_rel, "top1_agreement": agree, "images": len(ref)}


def _score(runner: Runner, held, n: int, budget: float) -> dict | None:
    """The gate of one runner, fed in calls of exactly ``n`` images (the batch it was built for)."""
    from ..export.parity import chunked
    from ..gate import judge

    try:
        out = chunked(runner, held.images, n, n)
    except (NasDeployError, RuntimeError) as e:
        log.warning("accuracy of %s not measured: %s", runner.name, str(e).splitlines()[0])
        return None
    return judge(held.reference, out, held.labels, held.classes, budget).as_dict()
