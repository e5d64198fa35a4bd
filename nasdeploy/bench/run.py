"""`bench`: throughput and latency per backend / batch / dtype, against PyTorch eager fp32 in the same run."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch

from ..errors import DeviceError, UsageError
from ..fold import fold
from ..progress import progress_bar
from ..zoo import input_size_of, load_any
from .env import environment
from .runners import BACKENDS, Runner, TorchRunner, check_device, make_runner, parse_dtype, unavailable_reason
from .timing import Stats, time_cpu, time_fn

log = logging.getLogger(__name__)
BASELINE = "torch-eager-fp32"


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


@dataclass
class BenchResult:
    environment: dict
    rows: list[BenchRow] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"environment": self.environment, "baseline": BASELINE, "rows": [asdict(r) for r in self.rows],
                "skipped": self.skipped}


def _with_copies(runner: Runner, x_cpu: torch.Tensor, repeats: int) -> Stats:
    """Wall time of copy-in, run, copy-out, synchronised (what a serving loop pays)."""
    pinned = x_cpu.pin_memory()

    def call() -> None:
        y = runner(pinned.to(runner.device, non_blocking=True))
        y.to("cpu", non_blocking=False)

    def synced() -> None:
        call()
        torch.cuda.synchronize()

    return time_cpu(synced, warmup=10, repeats=repeats)


def bench(models: list[str], device: str = "cpu", backends: list[str] | None = None, batches: list[int] | None = None,
          dtypes: list[str] | None = None, repeats: int | None = None, progress: bool = True) -> BenchResult:
    check_device(device)
    cuda = device.startswith("cuda")
    backends = backends or list(BACKENDS)
    for b in backends:
        unavailable_reason(b, device)  # raises on an unknown backend
    batches = batches or ([1, 256] if cuda else [1, 16])
    if any(b < 1 for b in batches):
        raise UsageError(f"--batch values must be at least 1, got {batches}")
    dtypes = dtypes or (["fp32", "fp16"] if cuda else ["fp32"])
    for d in dtypes:
        parse_dtype(d)
    res = BenchResult(environment(device))
    for b in backends:
        reason = unavailable_reason(b, device)
        if reason:
            res.skipped.append({"backend": b, "reason": reason})
    live = [b for b in backends if not unavailable_reason(b, device)]
    jobs = [(m, b, d, n) for m in models for b in live for d in dtypes for n in batches]
    bar = progress_bar(progress, elapsed=True)
    task = bar.add_task("bench", total=len(jobs) + len(models) * len(batches)) if bar else None
    try:
        if bar:
            bar.start()
        for spec in models:
            model = load_any(spec).eval()
            size = input_size_of(spec, model)
            plain, _ = fold(model, input_size=min(size, 64))
            base: dict[int, float] = {}
            for n in batches:  # baseline: the unfolded model in eager fp32, as the official verify.py runs it
                r = _time_one(TorchRunner(model, device, torch.float32, cuda_graph=False), n, size, device, repeats)
                base[n] = r[0]
                what = "already folded input" if getattr(model, "folded", False) else "unfolded"
                res.rows.append(BenchRow(spec, BASELINE, "fp32", n, r[0], r[1].as_dict(),
                                         r[2].as_dict() if r[2] else None, 1.0, f"{what}, eager, no CUDA graph"))
                if bar:
                    bar.update(task, advance=1, description=f"{spec} baseline b{n}")
            for _, backend, dtype, n in [j for j in jobs if j[0] == spec]:
                if bar:
                    bar.update(task, description=f"{spec} {backend} {dtype} b{n}")
                if backend == "onnxruntime" and dtype != "fp32":
                    res.skipped.append({"model": spec, "backend": backend, "dtype": dtype,
                                        "reason": "the onnxruntime backend runs fp32 graphs"})
                elif not cuda and dtype != "fp32":
                    res.skipped.append({"model": spec, "backend": backend, "dtype": dtype,
                                        "reason": "reduced precision is benchmarked on the GPU only"})
                else:
                    try:
                        runner = make_runner(backend, plain, (n, 3, size, size), device, dtype)
                        tp, st, cp = _time_one(runner, n, size, device, repeats)
                        res.rows.append(BenchRow(spec, backend, dtype, n, tp, st.as_dict(),
                                                 cp.as_dict() if cp else None, tp / base[n],
                                                 "folded" + (", CUDA graph" if backend == "torch" and cuda else "")))
                    except (DeviceError, RuntimeError) as e:
                        res.skipped.append({"model": spec, "backend": backend, "dtype": dtype, "batch": n,
                                            "reason": str(e).splitlines()[0][:200]})
                if bar:
                    bar.update(task, advance=1)
    finally:
        if bar:
            bar.stop()
    return res


def _time_one(runner: Runner, n: int, size: int, device: str, repeats: int | None) -> tuple[float, Stats, Stats | None]:
    x = torch.randn(n, 3, size, size)
    t0 = time.perf_counter()
    runner(x)  # build / capture / compile before timing
    log.debug("%s first call %.1fs", runner.name, time.perf_counter() - t0)
    st = time_fn(runner.timed(x), device, repeats=repeats)
    copies = _with_copies(runner, x, repeats or 50) if device.startswith("cuda") else None
    return n / (st.median / 1e3), st, copies

