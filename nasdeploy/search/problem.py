"""What a constrained search works on: one choice (a token) per layer, a cost per architecture (predicted
latency, or any additive cost such as FLOPs) and a target the cost must meet.

``Problem`` alone decides feasibility (``Problem.within``). A latency target is milliseconds (a float) from the
moment ``parse_latency`` reads it at the command line or in a pipeline configuration to the study."""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import UsageError

_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
Tokens = tuple[str, ...]


def parse_latency(text: str) -> float:
    """'1.2ms', '850us', '0.002s' -> milliseconds; a bare or negative number is refused."""
    m = re.fullmatch(r"\s*([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)\s*(ms|us|µs|s)\s*", str(text), re.IGNORECASE)
    if not m:
        raise UsageError(f"latency target '{text}' needs a unit: write e.g. 1.2ms or 850us")
    value = float(m[1]) * _UNITS[m[2].lower()]
    if not value > 0:
        raise UsageError(f"latency target '{text}' must be positive")
    return value


@dataclass
class Problem:
    """``layers``: the tokens each layer may take; ``cost``: an architecture's cost (what the target bounds: for
    nasdeploy's search, predicted latency in milliseconds); ``layer_cost``: a choice's own share of it (orders the
    choices when a draw is biased or repaired); ``target``: in the cost's unit."""

    layers: list[tuple[str, ...]]
    cost: Callable[[Tokens], float]
    layer_cost: Callable[[int, str], float]
    target: float
    # the canonical form of an architecture: architectures that build the same network map to one form (a space
    # with identity layers: an identity moved inside a stage); None: every architecture is its own
    canonical_form: Callable[[Tokens], Tokens] | None = None

    def __post_init__(self) -> None:
        # choices of each layer from cheapest to dearest
        self.order = [tuple(sorted(c, key=lambda t, i=i: self.layer_cost(i, t))) for i, c in enumerate(self.layers)]
        self.cheapest = tuple(o[0] for o in self.order)
        self.dearest = tuple(o[-1] for o in self.order)
        if not self.meets(self.cost(self.cheapest)):
            refuse_infeasible(self.target, self.cost(self.cheapest), "-".join(self.cheapest))

    @staticmethod
    def within(cost: float, target: float) -> bool:
        """The feasibility rule, the only place it is written: a cost meets a target when it is at most the target."""
        return cost <= target

    def meets(self, cost: float) -> bool:
        """Whether ``cost`` meets this problem's target."""
        return self.within(cost, self.target)

    def feasible(self, tokens: Tokens) -> bool:
        return self.meets(self.cost(tokens))

    def draw(self, rng: random.Random, beta: float) -> Tokens:
        """A random architecture biased towards cheap choices: layer i takes its k-th cheapest choice with
        probability proportional to exp(-beta * k / (n_i - 1)) (beta 0: uniform)."""
        out = []
        for o in self.order:
            n = len(o)
            w = [2.718281828 ** (-beta * k / max(n - 1, 1)) for k in range(n)]
            out.append(rng.choices(o, weights=w)[0])
        return tuple(out)

    def repair(self, tokens: Tokens, rng: random.Random) -> Tokens:
        """``tokens`` made feasible by moving random layers one choice cheaper at a time: the child stays as close
        to its parents (and to the target) as the target allows. (Measured on NAS-Bench-Macro: jumping to any
        cheaper choice threw children far below the target, where the accurate architectures are not.)"""
        t = list(tokens)
        for _ in range(50 * len(t)):
            if self.feasible(tuple(t)):
                return tuple(t)
            dear = [i for i, o in enumerate(self.order) if o.index(t[i]) > 0]
            if not dear:
                break
            i = rng.choice(dear)
            t[i] = self.order[i][self.order[i].index(t[i]) - 1]
        return self.cheapest

    def canonical(self, tokens: Tokens) -> Tokens:
        return tuple(self.canonical_form(tuple(tokens))) if self.canonical_form else tuple(tokens)

    def mutate(self, tokens: Tokens, rng: random.Random) -> Tokens:
        """``tokens`` with one random layer (of those with a choice) changed to another of its choices."""
        t = list(tokens)
        free = [i for i, c in enumerate(self.layers) if len(c) > 1]
        if free:
            i = rng.choice(free)
            t[i] = rng.choice([c for c in self.layers[i] if c != t[i]])
        return tuple(t)

    def band_floor(self, band: float) -> float:
        """The lowest cost of the top ``band`` share of [cheapest, the highest feasible cost]: the target, or the
        dearest architecture's cost where the target lies above it (a band above every network holds only the
        dearest, and a first generation drawn there would be one network over and over)."""
        lo = self.cost(self.cheapest)
        top = min(self.target, self.cost(self.dearest))
        return top - band * (top - lo)

    def near_target(self, rng: random.Random, band: float, draws: int = 400) -> Tokens:
        """A feasible architecture whose cost lies in the top ``band`` of [cheapest, target]: a uniform draw that
        lands there, else a draw repaired down to the target (one choice cheaper at a time in random layers) and
        grown back up while it stays feasible (one choice dearer at a time), which ends just under the target."""
        floor = self.band_floor(band)
        for k in range(draws):
            t = self.draw(rng, 0.0 if k < draws // 2 else rng.uniform(0.0, 12.0))
            if self.cost(t) >= floor and self.feasible(t):
                return t
        t = list(self.repair(self.draw(rng, 0.0), rng))
        for _ in range(50 * len(t)):
            if self.cost(tuple(t)) >= floor:
                break
            dearer = [i for i, o in enumerate(self.order) if o.index(t[i]) < len(o) - 1]
            rng.shuffle(dearer)
            for i in dearer:
                up = list(t)
                up[i] = self.order[i][self.order[i].index(t[i]) + 1]
                if self.feasible(tuple(up)):
                    t = up
                    break
            else:
                break
        return tuple(t)


def space_problem(space, tables, target_ms: float) -> Problem:
    """The nasdeploy search problem: a space's choices, latency from the tables of the candidate engines."""
    from ..nas.space import Arch, Choice

    def cost(tokens: Tokens) -> float:
        return tables.predict(Arch(tuple(Choice.parse(t) for t in tokens)))

    def canonical(tokens: Tokens) -> Tokens:
        return tuple(c.token for c in space.canonical(Arch(tuple(Choice.parse(t) for t in tokens))))

    layers = [tuple(c.token for c in space.choices_at(i)) for i in range(space.num_layers)]
    return Problem(layers, cost, tables.layer_cost, target_ms, canonical)


def check_target(tables, target_ms: float):
    """(the fastest architecture, its latency); a target it cannot meet is refused in one line."""
    arch, fastest = tables.fastest()
    if not Problem.within(fastest, target_ms):
        refuse_infeasible(target_ms, fastest, str(arch), " ms", f" on {tables.describe()}")
    return arch, fastest


def refuse_infeasible(target: float, cheapest: float, arch: str, unit: str = "", where: str = "") -> None:
    """The one refusal of a target no architecture can meet, with the cheapest architecture and its cost."""
    raise UsageError(f"no architecture can meet {target:g}{unit}{where}: the fastest possible is predicted at "
                     f"{cheapest:.3f}{unit} ({arch}); raise the target")


def auto_target(tables, space_name: str, seed: int = 0, samples: int = 200) -> float:
    """85% of the median random architecture's predicted latency (at least 5% above the fastest possible)."""
    from ..nas.space import get_space

    rng = random.Random(seed)
    sp = get_space(space_name)
    lats = sorted(tables.predict(sp.sample(rng)) for _ in range(samples))
    return round(max(0.85 * lats[len(lats) // 2], 1.05 * tables.fastest()[1]), 3)


def spread(costs: Sequence[float], lo: float, target: float) -> float:
    """The share of [lo, target] that ``costs`` span (1: the whole feasible range)."""
    if not costs or target <= lo:
        return 0.0
    return (max(costs) - min(costs)) / (target - lo)
