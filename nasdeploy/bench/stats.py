"""What a set of timed rounds says about a latency: the statistic, its confidence bounds, the machine's stability
and the verdict against a target.

Every whole-network latency nasdeploy reports (a latency table's validation, the search's finalists, `bench`, the
deploy check) is the **median of round medians**: each round is ``repeats`` calls (their median), rounds are
interleaved over everything compared. Unlike the fastest round, the median of rounds does not fall as rounds are
added, and a noisy row gets no lower a figure for being timed more often.

Its **bounds** are distribution-free: with ``n`` independent rounds, the ``k``-th smallest round median lies above
the true median with probability ``P(Binomial(n, 1/2) <= k - 1)``, so the upper bound at confidence ``c`` is the
smallest round median of rank ``k`` for which that probability reaches ``c`` (with 5 rounds and ``c = 0.9``: the
slowest round; with 15: the 11th). A latency **meets** a target at confidence ``c`` when its upper bound is under
the target, **misses** it when its lower bound is over it, and is **undecided** otherwise (more rounds decide).

**Stability** follows pyperf's "this benchmark is unstable" warning: the spread of the round medians (1.4826 x their
median absolute deviation, relative to the median: a standard deviation that one outlier does not inflate) above
10%, or the round medians split into two speed modes (a gap of more than 4% of the median between two groups of at
least two rounds each, larger than three times every other gap).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from ..errors import UsageError

DEFAULT_CONFIDENCE = 0.9
UNSTABLE_SPREAD_PCT = 10.0  # pyperf warns at a standard deviation of 10% of the mean
MODE_GAP = 0.04  # two speed modes: groups at least this far apart, relative to the median
VERDICTS = ("meets", "misses", "undecided")


def binom_cdf(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2.0 ** n


def check_confidence(c: float) -> float:
    """A latency confidence: a probability from 0.5 (the median itself under the target) to 0.999."""
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.5 <= c <= 0.999:
        raise UsageError(f"--latency-confidence must be between 0.5 and 0.999 (e.g. 0.9), got {c}")
    return float(c)


def check_latency(ms: float | None, what: str = "--latency-target") -> float | None:
    """A latency in milliseconds: finite and positive (None passes)."""
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms)
                           or ms <= 0):
        raise UsageError(f"{what} must be a positive latency, got {ms!r}")
    return ms


def bound_rank(n: int, confidence: float) -> int | None:
    """The rank (1-based, smallest first) of the round median that bounds the true median from above at
    ``confidence`` with ``n`` rounds; None when ``n`` rounds cannot (``1 - 0.5 ** n < confidence``)."""
    for k in range(1, n + 1):
        if binom_cdf(k - 1, n) >= confidence:
            return k
    return None


def min_rounds(confidence: float) -> int:
    """The fewest rounds whose slowest round bounds the median at ``confidence``."""
    return max(1, math.ceil(math.log2(1.0 / (1.0 - confidence)))) if confidence < 1.0 else 10 ** 9


def median_bounds(xs: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """(lower, upper): each a one-sided bound at ``confidence`` on the median of the distribution the ``xs`` are
    independent draws of (order statistics: no assumption on its shape); -inf / inf where there are too few."""
    s = sorted(xs)
    k = bound_rank(len(s), confidence)
    if k is None:
        return -math.inf, math.inf
    return s[len(s) - k], s[k - 1]


@dataclass(frozen=True)
class Stability:
    """How steady the machine was over the rounds: pyperf's instability warning, two speed modes."""

    spread_pct: float  # 1.4826 x MAD of the round medians / their median, in percent
    modes: tuple[float, float] | None = None  # the two speed modes' medians (fast, slow), where there are two
    mode_rounds: tuple[int, int] | None = None  # rounds in each

    @property
    def stable(self) -> bool:
        return self.spread_pct <= UNSTABLE_SPREAD_PCT and self.modes is None

    @property
    def warning(self) -> str | None:
        """pyperf's wording: what makes the rounds unstable, or None."""
        parts = []
        if self.spread_pct > UNSTABLE_SPREAD_PCT:
            parts.append(f"round medians spread {self.spread_pct:.0f}% (over {UNSTABLE_SPREAD_PCT:.0f}%)")
        if self.modes is not None:
            (a, b), (na, nb) = self.modes, self.mode_rounds or (0, 0)
            parts.append(f"two speed modes: {na} rounds near {a:.3f} ms, {nb} near {b:.3f} ms")
        return "unstable: " + "; ".join(parts) if parts else None

    def as_dict(self) -> dict:
        return {"spread_pct": round(self.spread_pct, 2), "modes": list(self.modes) if self.modes else None,
                "mode_rounds": list(self.mode_rounds) if self.mode_rounds else None, "stable": self.stable,
                "warning": self.warning}


def stability(xs: Sequence[float]) -> Stability:
    """The spread of ``xs`` (round medians) and whether they fall into two speed modes."""
    s = sorted(xs)
    if len(s) < 2:
        return Stability(0.0)
    med = statistics.median(s)
    mad = statistics.median(abs(v - med) for v in s)
    spread = 100.0 * 1.4826 * mad / med if med > 0 else 0.0
    return Stability(spread, *_two_modes(s, med))


def _two_modes(s: list[float], med: float) -> tuple[tuple[float, float] | None, tuple[int, int] | None]:
    if len(s) < 4 or med <= 0:
        return None, None
    gaps = [s[i + 1] - s[i] for i in range(len(s) - 1)]
    i = max(range(len(gaps)), key=gaps.__getitem__)
    low, high = s[: i + 1], s[i + 1:]
    others = [g for j, g in enumerate(gaps) if j != i]
    if min(len(low), len(high)) < 2 or gaps[i] < MODE_GAP * med or gaps[i] <= 3.0 * max(others, default=0.0):
        return None, None
    return (round(statistics.median(low), 6), round(statistics.median(high), 6)), (len(low), len(high))


@dataclass(frozen=True)
class RoundLatency:
    """A latency from rounds: the median of round medians, its one-sided bounds at ``confidence``, stability."""

    median: float
    lower: float
    upper: float
    confidence: float
    round_medians: tuple[float, ...]
    stability: Stability

    @classmethod
    def of(cls, round_medians: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> "RoundLatency":
        if not round_medians:
            raise ValueError("no rounds to summarise")
        lo, hi = median_bounds(round_medians, confidence)
        return cls(statistics.median(round_medians), lo, hi, confidence, tuple(round_medians),
                   stability(round_medians))

    @property
    def rounds(self) -> int:
        return len(self.round_medians)

    def overlaps(self, other: "RoundLatency") -> bool:
        """Whether the two figures' bounds overlap (without bounds, nothing can be told apart: True)."""
        return self.lower <= other.upper and other.lower <= self.upper

    def joined(self, other: "RoundLatency") -> "RoundLatency":
        """The rounds of both timings of one thing as one figure (more rounds: a figure less at the mercy of the
        machine's speed during either), at this one's confidence."""
        return RoundLatency.of(self.round_medians + other.round_medians, self.confidence)

    def verdict(self, target: float) -> str:
        """'meets' (upper bound at or under ``target``), 'misses' (lower bound over it) or 'undecided'."""
        if self.upper <= target:
            return "meets"
        if self.lower > target:
            return "misses"
        return "undecided"

    def as_dict(self) -> dict:
        return {"median": round(self.median, 6), "lower": _finite(self.lower), "upper": _finite(self.upper),
                "confidence": self.confidence, "rounds": self.rounds,
                "round_medians": [round(v, 6) for v in self.round_medians], "stability": self.stability.as_dict()}

    def describe(self) -> str:
        """'0.742 ms [0.731, 0.768] (90% bounds)' or with 'too few rounds for 90% bounds'."""
        if math.isinf(self.upper):
            return f"{self.median:.3f} ms (too few rounds for {self.confidence:.0%} bounds)"
        return f"{self.median:.3f} ms [{self.lower:.3f}, {self.upper:.3f}] ({self.confidence:.0%} bounds)"


def _finite(v: float) -> float | None:
    return None if math.isinf(v) else round(v, 6)
