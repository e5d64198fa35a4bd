"""Timing done right: warm-up, many repeats, median and percentiles; CUDA events on the GPU."""
from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from .stats import DEFAULT_CONFIDENCE, RoundLatency, min_rounds

# On the CPU, ONNX Runtime's, OpenVINO's and PyTorch's thread pools spin for a while after their last work and would
# take the cores from whatever runs next: a measurement that follows another runtime's starts after this pause.
SETTLE_S = 0.3


@dataclass
class Stats:
    """Latency statistics in milliseconds."""

    median: float
    p10: float
    p90: float
    p95: float
    p99: float
    mean: float
    repeats: int

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Stats":
        return cls(**{k: d[k] for k in ("median", "p10", "p90", "p95", "p99", "mean", "repeats")})


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(ms: list[float]) -> Stats:
    return Stats(statistics.median(ms), percentile(ms, 10), percentile(ms, 90), percentile(ms, 95),
                 percentile(ms, 99), statistics.fmean(ms), len(ms))


def time_cpu(fn: Callable[[], object], warmup: int = 10, repeats: int = 50, min_seconds: float = 0.0) -> Stats:
    """Wall-clock per call; at least ``repeats`` calls and, if given, at least ``min_seconds`` of them."""
    for _ in range(warmup):
        fn()
    ms: list[float] = []
    start = time.perf_counter()
    while len(ms) < repeats or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return summarize(ms)


def time_cuda(fn: Callable[[], object], warmup: int = 20, repeats: int = 100, device: str = "cuda",
              stream: torch.cuda.Stream | None = None) -> Stats:
    """GPU time per call from CUDA events recorded on ``stream`` (the one ``fn`` enqueues its work on; default:
    the current stream of ``device``), each call bracketed, synchronised at the end."""
    with torch.cuda.device(torch.device(device)):
        stream = stream or torch.cuda.current_stream()
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        for s, e in zip(starts, ends):
            s.record(stream)
            fn()
            e.record(stream)
        torch.cuda.synchronize()
    return summarize([s.elapsed_time(e) for s, e in zip(starts, ends)])


def time_wall_cuda(fn: Callable[[], object], warmup: int = 20, repeats: int = 100, device: str = "cuda") -> Stats:
    """Host wall time per call, the device synchronised after each (for runtimes with their own streams)."""
    def synced() -> None:
        fn()
        torch.cuda.synchronize(torch.device(device))

    return time_cpu(synced, warmup, repeats)


def time_fn(fn: Callable[[], object], device: str, warmup: int | None = None, repeats: int | None = None,
            rounds: int = 1, stream: torch.cuda.Stream | None = None, clock: str = "auto") -> Stats:
    """Time ``fn`` on ``device``: CUDA events on ``stream`` on a GPU unless ``clock`` is "wall".

    ``rounds`` > 1 (CPU): several rounds, summarised by ``typical_round`` (each statistic's median over the rounds:
    the median of round medians, never the luckiest round)."""
    if device.startswith("cuda"):
        if clock == "wall":
            return time_wall_cuda(fn, warmup or 20, repeats or 100, device)
        return time_cuda(fn, warmup or 20, repeats or 100, device, stream)
    return typical_round([time_cpu(fn, warmup or 10, repeats or 50) for _ in range(max(1, rounds))])


def time_runner(runner, x, device: str, warmup: int | None = None, repeats: int | None = None,
                rounds: int = 1) -> Stats:
    """Time one inference of ``runner`` on ``x`` the way that runner must be timed (its stream, its clock)."""
    return time_fn(runner.timed(x), device, warmup, repeats, rounds, getattr(runner, "stream", None),
                   getattr(runner, "clock", "auto"))


def typical_round(rounds: Sequence[Stats]) -> Stats:
    """Rounds summarised statistic by statistic: each one's median over the rounds (``median``: the median of round
    medians; ``repeats``: the calls of a round). A figure that does not fall as rounds are added."""
    if not rounds:
        raise ValueError("no rounds to summarise")
    pick = {k: statistics.median(getattr(r, k) for r in rounds) for k in ("median", "p10", "p90", "p95", "p99",
                                                                          "mean")}
    return Stats(**pick, repeats=int(statistics.median(r.repeats for r in rounds)))


def latency_record(rounds: Sequence[Stats], confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """What a whole-network latency reports (bench rows, finalists, validation): the typical round's statistics,
    the median of round medians with its bounds at ``confidence``, every round median, the machine's stability."""
    return typical_round(rounds).as_dict() | RoundLatency.of([r.median for r in rounds], confidence).as_dict()


@dataclass(frozen=True)
class Clock:
    """How nasdeploy times a whole network, wherever it does (a latency table's validation, the search's finalists,
    `bench`), so that "predicted", "measured" and "shipped" are the same kind of number: ``warmup`` calls, then
    ``repeats`` timed calls per round (the round's median), ``rounds`` rounds interleaved over everything being
    compared in a new order each round, a ``settle`` pause before each on the CPU (the previous runtime's idle
    threads spin for a while after their last call). The figure is the median of the round medians, with
    one-sided bounds at ``confidence`` (``nasdeploy.bench.stats``).

    After ``rounds`` rounds, items that are not decided are timed again, up to ``round_cap`` rounds: against a
    target, those whose bounds straddle it (a sequential test); without one, those whose bounds lie more than
    ``agree`` from their median."""

    warmup: int = 10
    repeats: int = 50
    rounds: int = 5
    settle: float = SETTLE_S
    agree: float = 0.05
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def round_cap(self) -> int:
        """The most rounds an undecided item gets: three times ``rounds``, and never fewer than bounds at
        ``confidence`` need (4 at 0.9)."""
        return max(3 * self.rounds, min_rounds(self.confidence))

    def summary(self, medians: Sequence[float]) -> RoundLatency:
        return RoundLatency.of(medians, self.confidence)

    def decided(self, medians: Sequence[float], target: float | None = None) -> bool:
        """Whether rounds with these medians need no more: at least ``rounds`` of them, and, against ``target``, a
        verdict (meets or misses); without one, bounds within ``agree`` of the median (where ``rounds`` is too few
        for bounds at ``confidence``, those rounds and no more: the caller chose speed over bounds)."""
        if len(medians) < self.rounds:
            return False
        if target is None and self.rounds < min_rounds(self.confidence):
            return True  # fewer rounds asked than bounds need, and no verdict to reach: exactly those rounds
        lat = self.summary(medians)
        if target is not None:
            return lat.verdict(target) != "undecided"
        return lat.median * (1.0 - self.agree) <= lat.lower and lat.upper <= lat.median * (1.0 + self.agree)

    def interleave(self, n: int, measure: Callable[[int, int], None], device: str = "cpu", seed: int = 0,
                   step: Callable[[], None] | None = None, decided: Callable[[int], bool] | None = None) -> int:
        """``measure(i, round)`` for each of ``n`` items in ``rounds`` rounds, in a new seeded order each round; then,
        given ``decided(i)``, more rounds over the items not decided, up to ``round_cap`` rounds. Returns the
        rounds run."""
        rng = random.Random(seed)
        cap = self.round_cap if decided is not None else self.rounds
        for k in range(cap):
            order = [i for i in range(n) if k < self.rounds or not decided(i)]
            if not order:
                return k
            rng.shuffle(order)  # nothing always follows the same neighbour (whose threads may still spin)
            for i in order:
                if not device.startswith("cuda"):
                    time.sleep(self.settle)
                measure(i, k)
                if step:
                    step()
        return cap

    def time_all(self, timers: Sequence[Callable[[], object]], device: str = "cpu", seed: int = 0,
                 streams: Sequence | None = None, clocks: Sequence[str] | None = None,
                 step: Callable[[], None] | None = None,
                 targets: Sequence[float | None] | None = None) -> list[list[Stats]]:
        """Every timed call of ``timers`` measured by this clock: per timer, its rounds' statistics. ``targets``:
        per timer, the latency it is compared with (its extra rounds decide that verdict)."""
        out: list[list[Stats]] = [[] for _ in timers]

        def measure(i: int, k: int) -> None:
            out[i].append(time_fn(timers[i], device, self.warmup, self.repeats, 1,
                                  streams[i] if streams else None, clocks[i] if clocks else "auto"))

        self.interleave(len(timers), measure, device, seed, step,
                        decided=lambda i: self.decided([st.median for st in out[i]],
                                                       targets[i] if targets else None))
        return out
