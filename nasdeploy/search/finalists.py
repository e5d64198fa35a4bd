"""The search's last step: every architecture it could return, timed end to end and raced on the whole
search-validation split, and the choice made on those figures.

The per-block latency tables are the search's fast filter; they are not what the user is promised. Before choosing,
the finalists (the point-estimate front of the study and every feasible architecture tied with its best estimate)
are built as deployed networks for every candidate engine and timed end to end by the one clock nasdeploy times
whole networks with (``bench.timing.Clock``: the same threads, warm-up, pauses and statistic as `bench`), and they
are scored again on every image of the search-validation split, with BN recalibrated on training images. The chosen
architecture is the finalist with the best race estimate among those whose measured latency meets the target
(ties: the faster), so no finalist is both faster and more accurate than it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..bench.timing import Clock, best_round
from ..pareto import dominates
from .estimate import Estimate, paired

log = logging.getLogger(__name__)
MAX_FINALISTS = 16  # the front first (spread over its latencies), then the tied, best estimates first


@dataclass
class Finalist:
    arch: str
    predicted_ms: dict[str, float]  # per engine, from its latency table (calibrated)
    measured_ms: dict[str, float] = field(default_factory=dict)  # per engine, end to end (the clock's best round)
    round_medians: dict[str, list[float]] = field(default_factory=dict)
    study_estimate: Estimate | None = None  # on the search's evaluation images
    estimate: Estimate | None = None  # the race: every search-validation image
    macs: int = 0
    params: int = 0
    trial: int = -1
    proxy_score: float | None = None  # the study's score, for a search without estimates

    @property
    def engine(self) -> str:
        """The engine measured fastest (predicted fastest where nothing was measured)."""
        src = self.measured_ms or self.predicted_ms
        return min(src, key=src.get)

    @property
    def latency_ms(self) -> float:
        src = self.measured_ms or self.predicted_ms
        return src[self.engine]

    def score(self, criterion: str) -> float:
        e = self.estimate or self.study_estimate
        if e is not None:
            return e.score(criterion)
        return self.proxy_score if self.proxy_score is not None else float("-inf")

    def as_dict(self, criterion: str) -> dict:
        e = self.estimate
        return {"arch": self.arch, "trial": self.trial, "engine": self.engine, "latency_ms": self.latency_ms,
                "predicted_ms": self.predicted_ms, "measured_ms": self.measured_ms,
                "round_medians": self.round_medians, "macs": self.macs, "params": self.params,
                "study_top1": self.study_estimate.top1 if self.study_estimate else None,
                "race_top1": e.top1 if e else None, "race_loss": e.loss if e else None,
                "race_images": e.images if e else None, "score": self.score(criterion)}


def pick_finalists(cands: list[dict], front_archs: set[str], criterion: str,
                   limit: int = MAX_FINALISTS) -> list[dict]:
    """The study's candidates the search could return: its point-estimate front, whole (spread evenly over its
    latencies where it alone exceeds ``limit``: the table may under-predict, and the front's faster points are what
    still meets the target then), and, while there is room, the feasible candidates whose paired 95% interval
    against the best estimate reaches 0, best estimates first (``cands``: feasible, each with ``estimate``)."""
    if not cands or limit < 1:
        return []
    front = sorted((c for c in cands if c["arch"] in front_archs), key=lambda c: c["cost"])
    if len(front) > limit:
        step = (len(front) - 1) / max(1, limit - 1)
        front = [front[round(i * step)] for i in range(limit)] if limit > 1 else front[-1:]
    with_est = [c for c in cands if c["estimate"] is not None]
    if not with_est:  # a proxy search: its front
        return front
    best = max(with_est, key=lambda c: c["estimate"].score(criterion))
    tied = [c for c in with_est if c is best or paired(best["estimate"], c["estimate"], criterion)[1] <= 0.0]
    tied.sort(key=lambda c: -c["estimate"].score(criterion))
    seen = {c["arch"] for c in front}
    return front + [c for c in tied if c["arch"] not in seen][: limit - len(front)]


def measure(finalists: list[Finalist], tables, clock: Clock, progress: bool = False) -> None:
    """Every finalist built as its deployed network for every engine of ``tables`` and timed end to end, all of one
    engine interleaved by ``clock`` (measured_ms and round_medians filled in)."""
    import torch

    from ..backends import tf32_mode
    from ..latency.measure import network_for, runner_for, settings_of
    from ..progress import progress_bar

    bar = progress_bar(progress)
    total = len(finalists) * len(tables.tables) * (1 + clock.rounds)
    task = bar.add_task("finalists end to end", total=total) if bar else None
    try:
        if bar:
            bar.start()
        for engine, table in tables.tables.items():
            s = settings_of(table, clock)
            shape = (table.batch, 3, table.input_size, table.input_size)
            x = torch.randn(*shape)
            runners = []
            for f in finalists:
                runners.append(runner_for(network_for(table, f.arch), shape, s))
                if bar:
                    bar.update(task, advance=1, description=f"build {engine}")
            with tf32_mode(s.tf32):
                rounds = clock.time_all([r.timed(x) for r in runners], s.device, streams=[r.stream for r in runners],
                                        clocks=[r.clock for r in runners],
                                        step=(lambda: bar.update(task, advance=1)) if bar else None)
            for f, r, rs in zip(finalists, runners, rounds):
                r.check_ran()
                f.measured_ms[engine] = best_round(rs).median
                f.round_medians[engine] = [round(k.median, 6) for k in rs]
    finally:
        if bar:
            bar.stop()


def choose(finalists: list[Finalist], meets, criterion: str) -> tuple[Finalist | None, dict]:
    """The best race estimate among the finalists whose measured latency meets the target (``meets``: the problem's
    rule), the faster of equals. Returns it and why."""
    ok = [f for f in finalists if meets(f.latency_ms)]
    why = {"rule": "the best estimate on every search-validation image among the finalists whose end-to-end "
                   "latency meets the target (equal estimates: the faster)",
           "criterion": criterion, "finalists": len(finalists), "meet_target_measured": len(ok),
           "over_target_measured": [f.arch for f in finalists if not meets(f.latency_ms)]}
    if not finalists:
        return None, why
    if ok:
        pick = max(ok, key=lambda f: (f.score(criterion), -f.latency_ms))
    else:  # the table let through only networks that are slower than it said: the fastest, said plainly
        pick = min(finalists, key=lambda f: f.latency_ms)
        why["rule"] = ("no finalist met the target when timed end to end (the latency table under-predicts them): "
                       "the fastest finalist, which does not meet the target either")
        log.warning("no finalist of the search met the latency target when timed end to end: the fastest of them "
                    "(%s, %.3f ms) is returned; validate the latency table (nasdeploy latency-table validate) or "
                    "raise the target", pick.arch, pick.latency_ms)
    if pick.estimate is not None:
        why["paired_vs_chosen"] = {f.arch: [round(v, 4) for v in paired(f.estimate, pick.estimate, criterion)]
                                   for f in finalists if f is not pick and f.estimate is not None}
    return pick, why


def measured_front(finalists: list[Finalist], criterion: str) -> list[Finalist]:
    """The finalists no other beats on both axes (higher estimate and lower measured latency, one strictly)."""
    point = {id(f): (-f.score(criterion), f.latency_ms) for f in finalists}  # both minimised
    return sorted((f for f in finalists if not any(dominates(point[id(o)], point[id(f)])
                                                   for o in finalists if o is not f)), key=lambda f: f.latency_ms)


def dominated_by(pick: Finalist, finalists: list[Finalist], criterion: str) -> list[str]:
    """Finalists both faster and more accurate than ``pick`` (empty for a right choice)."""
    return [f.arch for f in finalists if f is not pick and f.score(criterion) > pick.score(criterion)
            and f.latency_ms < pick.latency_ms]

