"""Does the latency promise hold on a noisy machine? The search's finalist timing and choice, driven many times by a
noisy clock fitted to measured round medians, against the truth the simulation knows.

The noise model (``NoiseModel``): a round median is ``base x mode x jitter x outlier``. ``mode`` is the machine's
speed, shared by every row timed in the same spell: 1 (fast) or ``slow`` (a slow spell), a two-state Markov chain
stepped at every row timed (spells span rounds and rows, as the slow spells seen on these VMs do); ``jitter`` is
log-normal per round median; ``outlier`` a rare extra delay (exponential). A row's **true latency** is the median
of its round medians in the long run (``base`` times the stationary median of the factors), which is what a
standalone bench on the same machine converges to.

``fit`` estimates the model from rows timed together round by round (``benchmarks/clock_noise.py`` records them):
each round's shared speed is the mean of its rows' log residuals; a two-component mixture on those gives the speed
modes, their share and persistence; what is left within a mode is the jitter; what lies past 4 sigma, outliers.

Each run: ``finalists`` architectures with true latencies spread around the target (``spread``), the more accurate
the slower (the trade-off a front has), timed by ``Clock.interleave`` exactly as the search does; then

* **the confidence rule** (this nasdeploy): ``nasdeploy.search.finalists.choose``: qualify on the upper bound of the
  median of round medians at ``confidence``, the undecided timed again up to the cap, the choice confirmed by fresh
  rounds;
* **the fastest-round rule** (nasdeploy before the confidence rule, 3e073f9): the fastest round's median, more
  rounds for rows whose two fastest rounds disagree by over 5%, the most accurate finalist whose figure is under the
  target, no fresh rounds.

A **miss** is a run whose rule says the chosen architecture meets the target while its true latency is over it.

The user's own check comes later: a **later bench** (``later`` rows' worth of time after the choice, a standalone
`nasdeploy bench` of what shipped, the clock's rounds) reads a median over the target in a slow spell even where the
true latency is under it. Two more rules are run on the same worlds to see that:

* **the confidence rule, later bench**: the confidence rule as above, its chosen architecture benched again later;
* **the headroom rule** (``nasdeploy.search.speed``): before the finalists, a speed check times a few architectures
  and compares them with a table measured earlier (at the machine's speed then); the largest change it saw (the
  ratio either way, or two speed modes in its rounds) is the headroom, the search aims at ``target / (1 +
  headroom)`` (its finalists spread around the aim), the confidence rule chooses against the aim, and the later
  bench is judged against the target.

A **later miss** is a run whose rule claimed the target (or the aim) and whose later bench reads over the target.

    python -m benchmarks.clock_sim --data benchmarks/results/clock_noise_avx512.json \
        --json benchmarks/results/clock_sim.json
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from nasdeploy.bench.timing import Clock
from nasdeploy.search import finalists as F
from nasdeploy.search.candidate import Candidate


@dataclass(frozen=True)
class NoiseModel:
    sigma: float  # log-normal jitter of one round median
    slow: float = 1.0  # the slow spells' speed factor (1: one mode)
    p_slow: float = 0.0  # per row timed: the chance a fast spell turns slow
    p_fast: float = 1.0  # per row timed: the chance a slow spell turns fast
    outlier: float = 0.0  # the chance of an outlier round (a row's own slow round)
    outlier_sizes: tuple[float, ...] = ()  # an outlier's extra delay, relative, drawn from these (measured)
    source: str = ""

    @property
    def slow_share(self) -> float:
        return self.p_slow / (self.p_slow + self.p_fast) if self.p_slow + self.p_fast > 0 else 0.0

    def true_factor(self, samples: int = 200_000, seed: int = 12345) -> float:
        """The median of the stationary factor: a row of base ``b`` has true latency ``b * true_factor``."""
        rng = random.Random(seed)
        share = self.slow_share
        xs = [(self.slow if rng.random() < share else 1.0) * self._noise(rng) for _ in range(samples)]
        return statistics.median(xs)

    def _noise(self, rng: random.Random) -> float:
        x = math.exp(rng.gauss(0.0, self.sigma))
        if self.outlier_sizes and rng.random() < self.outlier:
            x *= 1.0 + rng.choice(self.outlier_sizes)
        return x


class Machine:
    """The machine's state as rows are timed: its speed mode, stepped once per row timed (and while other work
    runs: ``idle``)."""

    def __init__(self, model: NoiseModel, rng: random.Random) -> None:
        self.model, self.rng = model, rng
        self.slow = rng.random() < model.slow_share

    def _step(self) -> None:
        m = self.model
        if self.slow:
            self.slow = self.rng.random() >= m.p_fast
        else:
            self.slow = self.rng.random() < m.p_slow

    def idle(self, steps: int) -> None:
        """Time passing without timing (the race between the finalists' rounds and the fresh ones)."""
        for _ in range(steps):
            self._step()

    def factor(self) -> float:
        self._step()
        return (self.model.slow if self.slow else 1.0) * self.model._noise(self.rng)


# ------------------------------------------------------------------ fitting

def _mixture(xs: list[float], iters: int = 200) -> tuple[float, float, float, float, list[bool]]:
    """A two-component Gaussian mixture on ``xs`` by EM: (mean fast, mean slow, sd, weight slow, slow per x)."""
    s = sorted(xs)
    lo, hi = statistics.median(s[: len(s) // 2] or s), statistics.median(s[len(s) // 2:] or s)
    sd = max(statistics.pstdev(s) / 2, 1e-4)
    w = 0.5
    for _ in range(iters):
        post = []
        for x in xs:
            a = (1 - w) * math.exp(-0.5 * ((x - lo) / sd) ** 2)
            b = w * math.exp(-0.5 * ((x - hi) / sd) ** 2)
            post.append(b / (a + b) if a + b > 0 else float(x > (lo + hi) / 2))
        n1 = sum(post)
        n0 = len(xs) - n1
        if n1 < 1e-9 or n0 < 1e-9:
            break
        lo = sum((1 - p) * x for p, x in zip(post, xs)) / n0
        hi = sum(p * x for p, x in zip(post, xs)) / n1
        var = sum((1 - p) * (x - lo) ** 2 + p * (x - hi) ** 2 for p, x in zip(post, xs)) / len(xs)
        sd = max(math.sqrt(var), 1e-4)
        w = n1 / len(xs)
    return lo, hi, sd, w, [p > 0.5 for p in post]


def fit(rows: Sequence[Sequence[float]], source: str = "") -> NoiseModel:
    """The noise model of rows timed together round by round (``rows[i][k]``: row i's median in round k): a round's
    shared speed is the median of its rows' log residuals (one row's slow round does not move it); a two-component
    mixture on those finds speed modes; within a mode, the jitter is the robust spread of what is left, and what lies
    over 3 sigma above is a row's own outlier, whose sizes are kept as measured."""
    n = len(rows)
    rounds = min(len(r) for r in rows)
    logs = [[math.log(r[k]) for k in range(rounds)] for r in rows]
    resid = [[v - statistics.median(r) for v in r] for r in logs]
    shared = [statistics.median(resid[i][k] for i in range(n)) for k in range(rounds)] if n > 2 else [0.0] * rounds
    lo, hi, _, w, slow = _mixture(shared)
    two = hi - lo > math.log(1.03) and 0.08 <= w <= 0.92 and 2 <= sum(slow) <= rounds - 2
    if not two:
        lo, hi, w, slow = statistics.median(shared), statistics.median(shared), 0.0, [False] * rounds
    within = [resid[i][k] - (hi if slow[k] else lo) for i in range(n) for k in range(rounds)]
    centre = statistics.median(within)
    sigma = max(1.4826 * statistics.median(abs(v - centre) for v in within), 1e-3)
    out = [v - centre for v in within if v - centre > 3 * sigma]
    sizes = tuple(round(math.exp(v) - 1, 4) for v in out)
    outlier = len(out) / len(within)
    if not two:
        return NoiseModel(sigma, 1.0, 0.0, 1.0, outlier, sizes, source)
    # spell persistence from the rounds' modes, per round, turned into a chance per row timed (n rows a round)
    fs = sum(1 for a, b in zip(slow, slow[1:]) if not a and b)
    sf = sum(1 for a, b in zip(slow, slow[1:]) if a and not b)
    nf = sum(1 for a in slow[:-1] if not a)
    ns = sum(1 for a in slow[:-1] if a)
    per_round_slow = (fs + 0.5) / (nf + 1.0)
    per_round_fast = (sf + 0.5) / (ns + 1.0)
    step = lambda p: 1.0 - (1.0 - min(p, 0.999)) ** (1.0 / n)  # noqa: E731
    return NoiseModel(sigma, math.exp(hi - lo), step(per_round_slow), step(per_round_fast), outlier, sizes, source)


def stress(model: NoiseModel) -> NoiseModel:
    """``model`` with the slow spells the pipeline met (2026-12-07: rounds 20-25% slower for a while): a 25% slow
    mode a third of the time, spells of about 30 rows timed (five rounds of six finalists)."""
    return NoiseModel(model.sigma, 1.25, 1.0 / 60, 1.0 / 30, model.outlier, model.outlier_sizes,
                      f"{model.source} + slow spells (x1.25, a third of the time)")


# ------------------------------------------------------------------ the rules

@dataclass
class Outcome:
    claimed: bool  # the rule says the chosen architecture meets the target
    miss: bool  # ... and its true latency is over the target
    true_ms: float | None
    rows_timed: int
    later_ms: float | None = None  # a later bench's median of the chosen architecture (None: not benched again)
    later_miss: bool = False  # claimed, and the later bench reads over the target
    headroom: float | None = None  # the headroom rule's, where it ran


def _world(rng: random.Random, target: float, n: int, spread: tuple[float, float], factor: float):
    trues = sorted(target * rng.uniform(*spread) for _ in range(n))
    # the more accurate the slower (a front's trade-off), with noise: accuracy ties break either way
    scores = [50.0 + 40.0 * (t / target - spread[0]) + rng.gauss(0.0, 1.5) for t in trues]
    return trues, scores, [t / factor for t in trues]


def confidence_rule(machine: Machine, bases, trues, scores, target: float, clock: Clock, gap: int = 0) -> Outcome:
    timed = [0]

    def timing(rows: list[list[float]], idx: list[int]) -> None:
        def measure(i: int, k: int) -> None:
            rows[i].append(bases[idx[i]] * machine.factor())
            timed[0] += 1

        clock.interleave(len(idx), measure, "cpu", decided=lambda i: clock.decided(rows[i], target))

    rows: list[list[float]] = [[] for _ in bases]
    timing(rows, list(range(len(bases))))
    finals = [Candidate(str(i), {"e": trues[i]}, timing={"e": clock.summary(rows[i])}, study_score=scores[i])
              for i in range(len(bases))]

    machine.idle(gap)  # the race runs between the finalists' rounds and the fresh ones

    def retime(f: Candidate) -> dict:
        fresh: list[list[float]] = [[]]
        timing(fresh, [int(f.arch)])
        return {"e": clock.summary(fresh[0])}

    pick, why = F.choose(finals, target, "top1", retime)
    t = trues[int(pick.arch)]
    claimed = bool(why.get("confirmed"))
    return Outcome(claimed, claimed and t > target, t, timed[0])


def fastest_round_rule(machine: Machine, bases, trues, scores, target: float, rounds: int = 5,
                       agree: float = 0.05) -> Outcome:
    """nasdeploy at 3e073f9: the fastest round, more rounds while the two fastest disagree, no fresh rounds."""
    rows: list[list[float]] = [[] for _ in bases]
    rng = random.Random(0)
    timed = 0

    def settled(m: list[float]) -> bool:
        if len(m) < rounds:
            return False
        a, b = sorted(m)[:2] if len(m) > 1 else (m[0], m[0])
        return b <= a * (1.0 + agree)

    for k in range(3 * rounds):
        order = [i for i in range(len(bases)) if k < rounds or not settled(rows[i])]
        if not order:
            break
        rng.shuffle(order)
        for i in order:
            rows[i].append(bases[i] * machine.factor())
            timed += 1
    measured = [min(r) for r in rows]
    ok = [i for i in range(len(bases)) if measured[i] <= target]
    if not ok:
        i = min(range(len(bases)), key=measured.__getitem__)
        return Outcome(False, False, trues[i], timed)
    i = max(ok, key=lambda j: (scores[j], -measured[j]))
    return Outcome(True, trues[i] > target, trues[i], timed)


def later_bench(machine: Machine, base: float, clock: Clock, later: int) -> float:
    """A standalone bench of the shipped architecture ``later`` rows' worth of time after the choice: the median of
    its round medians."""
    machine.idle(later)
    rows: list[float] = []
    clock.interleave(1, lambda i, k: rows.append(base * machine.factor()), "cpu")
    return statistics.median(rows)


def speed_check(machine: Machine, table_factor: float, clock: Clock, archs: int = 3) -> float:
    """The headroom ``nasdeploy.search.speed`` measures: ``archs`` architectures timed now against a table measured
    at the speed ``table_factor`` (a row's true latency 1: the table predicts ``table_factor``)."""
    rows: list[list[float]] = [[] for _ in range(archs)]
    clock.interleave(archs, lambda i, k: rows[i].append(machine.factor()), "cpu")
    lats = [clock.summary(r) for r in rows]
    f = statistics.median(lat.median / table_factor for lat in lats)
    gaps = [m[1] / m[0] - 1 for lat in lats if (m := lat.stability.modes)]
    return max([max(f, 1 / f) - 1, *gaps])


def headroom_rule(model: NoiseModel, rng: random.Random, target: float, finalists: int, spread, factor: float,
                  clock: Clock, gap: int, later: int) -> Outcome:
    """The speed check against a table measured earlier, the search under ``target / (1 + headroom)``, the choice
    against that aim, a later bench against the target."""
    then = Machine(model, random.Random(rng.random()))
    table_factor = statistics.median(then.factor() for _ in range(15)) / factor  # the table's speed, relative
    machine = Machine(model, random.Random(rng.random()))
    h = speed_check(machine, table_factor, clock)
    aim = target / (1 + h)
    trues, scores, bases = _world(rng, aim, finalists, spread, factor)
    o = confidence_rule(machine, bases, trues, scores, aim, clock, gap)
    i = next(j for j, t in enumerate(trues) if t == o.true_ms)
    o.later_ms = later_bench(machine, bases[i], clock, later)
    o.later_miss = o.claimed and o.later_ms > target
    o.miss = o.claimed and o.true_ms > target
    o.headroom = h
    return o


def simulate(model: NoiseModel, runs: int = 2000, seed: int = 0, finalists: int = 6, confidence: float = 0.9,
             rounds: int = 5, spread: tuple[float, float] = (0.85, 1.10), gap: int = 0, later: int = 0) -> dict:
    """Both rules on the same simulated worlds and machines, ``runs`` times: their miss rates and more. ``gap``:
    rows' worth of time between the finalists' rounds and the fresh ones (the race runs then)."""
    logging.getLogger(F.__name__).setLevel(logging.ERROR)  # the choice's own warnings, thousands of times
    factor = model.true_factor()
    clock = Clock(rounds=rounds, settle=0.0, confidence=confidence)
    out: dict[str, list[Outcome]] = {"confidence_rule": [], "fastest_round_rule": []}
    if later:
        out["headroom_rule"] = []
    for r in range(runs):
        rng = random.Random(seed * 1_000_003 + r)
        trues, scores, bases = _world(rng, 1.0, finalists, spread, factor)
        ms = random.Random(rng.random())
        machine = Machine(model, random.Random(ms.random()))
        o = confidence_rule(machine, bases, trues, scores, 1.0, clock, gap)
        if later:  # the same machine, benched again later
            o.later_ms = later_bench(machine, bases[trues.index(o.true_ms)], clock, later)
            o.later_miss = o.claimed and o.later_ms > 1.0
        out["confidence_rule"].append(o)
        out["fastest_round_rule"].append(fastest_round_rule(Machine(model, random.Random(ms.random())), bases, trues,
                                                            scores, 1.0, rounds))
        if later:
            out["headroom_rule"].append(headroom_rule(model, random.Random(ms.random()), 1.0, finalists, spread,
                                                      factor, clock, gap, later))
    return {name: summary(o, runs) for name, o in out.items()} | {
        "model": _describe(model) | {"slow_share": model.slow_share, "true_factor": factor}, "runs": runs,
        "finalists": finalists, "confidence": confidence, "rounds": rounds, "spread": list(spread), "gap": gap,
        "later": later}


def _describe(model: NoiseModel) -> dict:
    d = asdict(model)
    sizes = sorted(d.pop("outlier_sizes"))
    d["outlier_sizes"] = {"n": len(sizes), "median": statistics.median(sizes), "max": sizes[-1]} if sizes else None
    return d


def _rate(k: int, runs: int) -> tuple[float, list[float]]:
    rate = k / runs
    half = 1.959964 * math.sqrt(max(rate * (1 - rate), 1e-12) / runs)
    return rate, [max(0.0, rate - half), rate + half]


def summary(outcomes: list[Outcome], runs: int) -> dict:
    claimed = [o for o in outcomes if o.claimed]
    rate, ci = _rate(sum(o.miss for o in outcomes), runs)
    out = {"miss_rate": rate, "miss_rate_ci95": ci, "claimed_rate": len(claimed) / runs,
           "mean_true_over_target": statistics.fmean(o.true_ms for o in claimed) if claimed else None,
           "rows_timed_mean": statistics.fmean(o.rows_timed for o in outcomes)}
    if any(o.later_ms is not None for o in outcomes):
        later, later_ci = _rate(sum(o.later_miss for o in outcomes), runs)
        over, over_ci = _rate(sum(o.later_ms > 1.0 for o in outcomes if o.later_ms is not None), runs)
        out |= {"later_miss_rate": later, "later_miss_rate_ci95": later_ci,
                "later_over_target_rate": over, "later_over_target_rate_ci95": over_ci}
    heads = [o.headroom for o in outcomes if o.headroom is not None]
    if heads:
        out["headroom_median"] = statistics.median(heads)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True,
                    help="a clock_noise JSON (rows timed round by round); several: one model each")
    ap.add_argument("--runs", type=int, default=4000)
    ap.add_argument("--confidence", type=float, default=0.9)
    ap.add_argument("--gap", type=int, default=0,
                    help="rows' worth of time between the finalists' rounds and the fresh ones (the race; default 0)")
    ap.add_argument("--later", type=int, default=0,
                    help="rows' worth of time between the choice and a later standalone bench of what shipped, and "
                         "the headroom rule beside (0: neither; the demo: about 600)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    results = []
    for path in args.data:
        d = json.loads(Path(path).read_text())
        for group in d["groups"]:
            m = fit(group["round_medians"], f"{Path(path).name}: {group['name']}")
            for model in (m, stress(m)):
                r = simulate(model, args.runs, confidence=args.confidence, gap=args.gap, later=args.later)
                results.append(r)
                print(f"{model.source}: sigma {model.sigma:.3f}, slow x{model.slow:.2f} "
                      f"{model.slow_share:.0%} of the time | confidence rule misses "
                      f"{r['confidence_rule']['miss_rate']:.2%} (claims {r['confidence_rule']['claimed_rate']:.0%}), "
                      f"fastest-round rule misses {r['fastest_round_rule']['miss_rate']:.2%} "
                      f"(claims {r['fastest_round_rule']['claimed_rate']:.0%})", flush=True)
                if args.later:
                    c, h = r["confidence_rule"], r["headroom_rule"]
                    print(f"  later bench over the target after a claim: confidence rule "
                          f"{c['later_miss_rate']:.2%}, headroom rule {h['later_miss_rate']:.2%} (claims "
                          f"{h['claimed_rate']:.0%}, median headroom {h['headroom_median']:.0%}); any later bench "
                          f"over: {c['later_over_target_rate']:.2%} vs {h['later_over_target_rate']:.2%}",
                          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
