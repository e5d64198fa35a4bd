"""The search's last step: every architecture it could return, timed end to end and raced on the whole
search-validation split, and the choice made on those figures.

The per-block latency tables are the search's fast filter; they are not what the user is promised. Before choosing,
the finalists (the point-estimate front of the study and every feasible architecture tied with its best estimate)
are built as deployed networks for every candidate engine and timed end to end by the one clock nasdeploy times
whole networks with (``bench.timing.Clock``: the same threads, warm-up, pauses and statistic as `bench`: the median
of interleaved rounds' medians with one-sided bounds at the search's latency confidence), and they are scored again
on every image of the search-validation split, with BN recalibrated on training images.

A finalist **qualifies** when the target holds at the confidence asked: the upper bound of its latency on its
fastest engine is under the target. Finalists whose bounds straddle the target are timed again, round after round
(a sequential test), until they are decided or reach the clock's cap. The qualifying finalist with the best race
estimate (ties: the faster) is then **timed again with fresh rounds**, so the figure reported carries no selection
bias (the winner's curse: among noisy measurements, the one that looked fast enough is likely to have been lucky);
if the fresh rounds do not show the target holding, the next qualifying finalist is taken, and the record says so.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from ..bench.stats import RoundLatency
from ..bench.timing import Clock
from ..pareto import dominates, pareto_front
from .candidate import Candidate
from .config import SearchConfig
from .estimate import paired

log = logging.getLogger(__name__)
MAX_FINALISTS = 16  # the front first (spread over its latencies), then the tied, best estimates first


def pick_finalists(cands: list[Candidate], front_archs: set[str], criterion: str,
                   limit: int = MAX_FINALISTS) -> list[Candidate]:
    """The study's candidates the search could return: its point-estimate front, whole (spread evenly over its
    latencies where it alone exceeds ``limit``: the table may under-predict, and the front's faster points are what
    still meets the target then), and, while there is room, the feasible candidates whose paired 95% interval
    against the best estimate reaches 0, best estimates first (``cands``: feasible)."""
    if not cands or limit < 1:
        return []
    front = sorted((c for c in cands if c.arch in front_archs), key=lambda c: c.predicted)
    if len(front) > limit:
        step = (len(front) - 1) / max(1, limit - 1)
        front = [front[round(i * step)] for i in range(limit)] if limit > 1 else front[-1:]
    with_est = [c for c in cands if c.study_estimate is not None]
    if not with_est:  # a proxy search: its front
        return front
    best = max(with_est, key=lambda c: c.study_estimate.score(criterion))
    tied = [c for c in with_est if c is best or paired(best.study_estimate, c.study_estimate, criterion)[1] <= 0.0]
    tied.sort(key=lambda c: -c.study_estimate.score(criterion))
    seen = {c.arch for c in front}
    return front + [c for c in tied if c.arch not in seen][: limit - len(front)]


class FinalistTimer:
    """Times finalists end to end on the engines of ``tables`` by ``clock``, in this process: each (engine,
    architecture) built once as its deployed network and kept for the fresh rounds after the choice; ``close()``
    lets them go. ``CleanTimer`` runs one in a fresh process."""

    def __init__(self, tables, clock: Clock, progress: bool = False) -> None:
        self.tables, self.clock, self.progress = tables, clock, progress
        self._runners: dict[tuple[str, str], object] = {}

    def engines(self) -> list[str]:
        return list(self.tables.tables)

    def _runner(self, engine: str, arch: str):
        from ..latency.measure import network_for, runner_for, settings_of

        key = (engine, arch)
        if key not in self._runners:
            table = self.tables.tables[engine]
            shape = (table.batch, 3, table.input_size, table.input_size)
            self._runners[key] = runner_for(network_for(table, arch), shape, settings_of(table, self.clock))
        return self._runners[key]

    def time(self, engine: str, archs: list[str], target: float | None, seed: int = 0,
             label: str = "time") -> list[RoundLatency]:
        """``archs`` on ``engine``, interleaved; with ``target``, the undecided timed again up to the cap."""
        import torch

        from ..backends import tf32_mode
        from ..latency.measure import settings_of
        from ..progress import advance, progress_bar

        table = self.tables.tables[engine]
        s = settings_of(table, self.clock)
        x = torch.randn(table.batch, 3, table.input_size, table.input_size)
        bar = progress_bar(self.progress)
        task = bar.add_task(f"{label} {engine}", total=len(archs) * (1 + self.clock.rounds)) if bar else None
        try:
            if bar:
                bar.start()
            runners = []
            for a in archs:
                runners.append(self._runner(engine, a))
                advance(bar, task)
            with tf32_mode(s.tf32):
                rounds = self.clock.time_all([r.timed(x) for r in runners], s.device, seed=seed,
                                             streams=[r.stream for r in runners], clocks=[r.clock for r in runners],
                                             step=lambda: advance(bar, task), targets=[target] * len(runners))
        finally:
            if bar:
                bar.stop()
        for r in runners:
            r.check_ran()
        return [self.clock.summary([k.median for k in rs]) for rs in rounds]

    def close(self) -> None:
        self._runners.clear()


# the timer of a timing process (CleanTimer's worker): built by _open, used by _time
_TIMER: FinalistTimer | None = None


def _open(luts: list[str], clock: Clock, progress: bool) -> None:
    from ..latency.table import EngineTables

    global _TIMER
    _TIMER = FinalistTimer(EngineTables.load(luts), clock, progress)


def _time(engine: str, archs: list[str], target: float | None, seed: int, label: str) -> list[RoundLatency]:
    assert _TIMER is not None, "_open first"
    return _TIMER.time(engine, archs, target, seed, label)


def _close() -> None:
    global _TIMER
    if _TIMER is not None:
        _TIMER.close()
    _TIMER = None


class CleanTimer:
    """A ``FinalistTimer`` in a fresh process of its own (``bench.worker``): the finalists are timed in the same
    state as `nasdeploy bench` times the shipped engine, whatever this process did before (training, fine-tuning:
    benchmarks/README, "Timing in a clean process")."""

    def __init__(self, tables, clock: Clock, progress: bool = False) -> None:
        from ..bench.worker import shared_worker

        self.clock = clock
        self._engines = list(tables.tables)
        self._worker = shared_worker()
        self._worker.call(_open, [str(Path(t.path).resolve()) for t in tables.tables.values()], clock, progress)

    def engines(self) -> list[str]:
        return self._engines

    def time(self, engine: str, archs: list[str], target: float | None, seed: int = 0,
             label: str = "time") -> list[RoundLatency]:
        return self._worker.call(_time, engine, archs, target, seed, label)

    def close(self) -> None:
        from ..errors import NasDeployError

        try:
            self._worker.call(_close)  # the runners go; the worker stays for the next timing
        except NasDeployError:  # the worker died meanwhile: nothing is left to close
            pass


def measure(finalists: list[Candidate], timer: FinalistTimer | CleanTimer, target: float | None = None) -> None:
    """Every finalist timed end to end on every engine, all of one engine interleaved; with ``target``, those
    whose bounds straddle it timed again (``timing`` filled in)."""
    for engine in timer.engines():
        for f, lat in zip(finalists, timer.time(engine, [f.arch for f in finalists], target,
                                                label="finalists end to end:")):
            f.timing[engine] = lat


def table_bias(finalists: list[Candidate]) -> dict[str, float]:
    """Per engine, the median ratio measured / predicted over the finalists timed on it: how far the latency tables
    under-predict (above 1) the architectures the search selected. The search selects on the tables' prediction, so
    it favours what they under-predict (the winner's curse on the cost model): a few random architectures (the speed
    check) do not show this bias, the finalists do."""
    import statistics

    out = {}
    for engine in {e for f in finalists for e in f.timing}:
        ratios = [f.timing[engine].median / f.predicted_ms[engine] for f in finalists
                  if engine in f.timing and f.predicted_ms.get(engine)]
        if ratios:
            out[engine] = statistics.median(ratios)
    return out


def corrected_latency(predicted_ms: dict[str, float], factors: dict[str, float]) -> float:
    """The latency of the fastest engine once each engine's prediction is scaled by its factor (1 where absent)."""
    return min(v * factors.get(e, 1.0) for e, v in predicted_ms.items())


def corrected(cands: list[Candidate], factors: dict[str, float], meets: Callable[[float], bool]) -> list[Candidate]:
    """New records of the candidates whose study latency (``cost``) is their ``corrected_latency`` and whose
    feasibility is judged again on it; their table predictions stay as the tables made them, nothing is timed."""
    from dataclasses import replace

    out = []
    for c in cands:
        cost = corrected_latency(c.predicted_ms, factors)
        out.append(replace(c, cost=cost, feasible=meets(cost), timing={}, retimed={}, estimate=None))
    return out


def second_round(feasible: list[Candidate], finals: list[Candidate], cfg: SearchConfig,
                 meets: Callable[[float], bool], objectives: tuple[str, ...],
                 repaired: Callable[[dict[str, float]], list[Candidate]] | None = None
                 ) -> tuple[list[Candidate], dict]:
    """Where no finalist holds the target when timed (``finals``, timed) and the tables under-predicted them, a
    second round: the study's candidates (``feasible``) judged again with their predictions scaled by that bias
    (``table_bias``), with the first finalists made just fast enough for the corrected tables and evaluated
    (``repaired(bias)``: the study concentrates near the target, where a bias leaves nothing it evaluated), and the
    finalists of all that meets the target then, those not timed yet, to be timed too. Returns them and what was
    done (the search's ``choice["second_round"]``)."""
    bias = table_bias(finals)
    record: dict = {"table_bias": {e: round(v, 4) for e, v in sorted(bias.items())}, "finalists": [],
                    "repaired": []}
    if any(f.verdict(cfg.target_ms) == "meets" for f in finals) or not bias or max(bias.values()) <= 1.0:
        return [], record
    timed = {f.arch for f in finals}
    again = [c for c in corrected(feasible, bias, meets) if c.feasible and c.arch not in timed]
    known = timed | {c.arch for c in again}
    fixed = [c for c in (repaired(bias) if repaired else []) if c.arch not in known]
    record["repaired"] = [c.arch for c in fixed]
    again += fixed
    if not again:
        record["rule"] = "no evaluated architecture meets the target once the tables' bias is corrected"
        return [], record
    record["rule"] = ("no finalist held the target when timed and the tables under-predicted them: the evaluated "
                      "architectures that meet it with their predictions scaled by that bias are timed too")
    front = {p.arch for p in pareto_front([c.study_point() for c in again], objectives)}
    more = pick_finalists(again, front, cfg.criterion, cfg.finalists)
    record["finalists"] = [c.arch for c in more]
    return more, record


def second_round_text(choice: dict) -> str | None:
    """One sentence on the second round of finalists (``choice["second_round"]``, written by the search), or None
    where there was none."""
    rec = choice.get("second_round") or {}
    if not rec.get("rule") or not rec.get("table_bias"):
        return None
    bias = ", ".join(f"{e} {v:.2f}x" for e, v in rec["table_bias"].items())
    n = len(rec.get("finalists") or [])
    if not n:
        return f"No finalist held the target and the tables under-predicted them (measured / predicted: {bias}); " \
               "no other evaluated architecture meets the target once that is corrected."
    k = len(rec.get("repaired") or [])
    made = f", {k} of them the first finalists made just fast enough and evaluated" if k else ""
    return (f"No finalist held the target and the tables under-predicted them (measured / predicted: {bias}): "
            f"{n} more architecture{'s' if n > 1 else ''} that meet the target with that correction were timed "
            f"too (a second round{made}).")


Retime = Callable[[Candidate], dict[str, RoundLatency]]


def choose(finalists: list[Candidate], target: float, criterion: str,
           retime: Retime | None = None) -> tuple[Candidate | None, dict]:
    """The best race estimate among the finalists that qualify (the target holds at the clock's confidence on their
    engine), the faster of equals, confirmed by fresh rounds (``retime``: per engine, a new timing of one
    finalist); one whose fresh rounds do not confirm it gives way to the next. Returns it and why."""
    ok = sorted((f for f in finalists if f.verdict(target) == "meets"),
                key=lambda f: (-f.score(criterion), f.latency_ms))
    confidence = next((t.confidence for f in finalists for t in f.timing.values()), None)
    why = {"rule": "the best estimate on every search-validation image among the finalists whose end-to-end "
                   "latency meets the target at the latency confidence (upper bound under the target; equal "
                   "estimates: the faster), confirmed by fresh rounds",
           "criterion": criterion, "confidence": confidence, "finalists": len(finalists),
           "meet_target_measured": len(ok),
           "verdicts": {f.arch: f.verdict(target) for f in finalists},
           "over_target_measured": [f.arch for f in finalists if f.verdict(target) == "misses"],
           "not_confirmed": []}
    if not finalists:
        return None, why
    pick = None
    for f in ok:
        if retime is None:
            pick = f
            break
        f.retimed = retime(f)
        fresh = f.retimed.get(f.engine)
        verdict = fresh.verdict(target) if fresh is not None else "undecided"
        if verdict == "meets":
            pick = f
            break
        why["not_confirmed"].append({"arch": f.arch, "engine": f.engine, "verdict": verdict,
                                     "fresh": fresh.as_dict() if fresh is not None else None})
        log.info("finalist %s met the target in its first rounds but its fresh rounds say %s: the next one is "
                 "taken", f.arch, verdict)
    if pick is None:  # nothing holds the target at this confidence: the fastest, said plainly
        pick = min(finalists, key=lambda f: f.latency_ms)
        why["rule"] = ("no finalist met the target at the latency confidence when timed end to end (the latency "
                       "table under-predicts them, or the machine is too noisy to tell): the fastest finalist, "
                       "which does not hold the target either")
        log.warning("no finalist of the search met the latency target at the asked confidence when timed end to "
                    "end: the fastest of them (%s, %.3f ms) is returned; validate the latency table (nasdeploy "
                    "latency-table validate), raise the target or lower --latency-confidence", pick.arch,
                    pick.latency_ms)
        why["confirmed"] = False
    else:
        why["confirmed"] = retime is not None
    if pick.estimate is not None:
        why["paired_vs_chosen"] = {f.arch: [round(v, 4) for v in paired(f.estimate, pick.estimate, criterion)]
                                   for f in finalists if f is not pick and f.estimate is not None}
    return pick, why


def measured_front(finalists: list[Candidate], criterion: str) -> list[Candidate]:
    """The finalists no other beats on both axes (higher estimate and lower measured latency, one strictly)."""
    point = {id(f): (-f.score(criterion), f.latency_ms) for f in finalists}  # both minimised
    return sorted((f for f in finalists if not any(dominates(point[id(o)], point[id(f)])
                                                   for o in finalists if o is not f)), key=lambda f: f.latency_ms)


def eligible(f: Candidate, target: float) -> bool:
    """Whether ``f`` holds the target at the confidence asked: its rounds say so, and its fresh rounds, where it
    was timed again, too."""
    fresh = f.retimed.get(f.engine)
    return f.verdict(target) == "meets" and (fresh is None or fresh.verdict(target) == "meets")


def dominated_by(pick: Candidate, finalists: list[Candidate], criterion: str, target: float) -> list[str]:
    """Finalists that hold the target and are both faster and more accurate than ``pick`` (empty for a right
    choice)."""
    return [f.arch for f in finalists if f is not pick and eligible(f, target)
            and f.score(criterion) > pick.score(criterion) and f.latency_ms < pick.latency_ms]

