"""Measuring latency tables block by block (resumable) and validating them end to end."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from ..backends import RunnerSpec, make_runner, require, tf32_mode
from ..bench.env import environment
from ..bench.timing import Clock, Stats, time_runner, typical_round
from ..device import check_device
from ..errors import ArtifactError, UsageError
from ..fold import fold
from ..io import provenance
from ..nas.net import Network
from ..nas.space import Arch, get_space
from ..nas.supernet import SPACE_FLAVOUR
from ..progress import advance, progress_bar
from .blocks import choice_block, head_block, input_sizes, module_params, stem_block
from .metrics import fit_calibration, kendall_tau, loo_calibrated, mape, max_error
from .table import LatencyTable, blocks

log = logging.getLogger(__name__)


@dataclass
class Settings:
    space: str = "scarlet"
    device: str = "cpu"
    backend: str = "onnxruntime"
    batch: int = 1
    dtype: str = "fp32"
    input_size: int = 224
    stride_plan: list[int] | None = None
    num_classes: int = 1000
    warmup: int = 10
    repeats: int = 50
    rounds: int = 5  # CPU: several rounds, their medians' median (see bench.timing.Clock)
    tf32: bool = False  # CUDA fp32: TF32 convolutions (off: fp32 means float32)
    threads: int | None = None  # CPU threads the engine runs with (None: the runtime's default)

    @classmethod
    def for_input(cls, space: str, device: str, backend: str, batch: int, dtype: str, setting, warmup: int = 10,
                  repeats: int = 50, rounds: int = 5, threads: int | None = None) -> "Settings":
        """The settings of a table for a model's input setting (size, stride plan, classes)."""
        return cls(space, device, backend, batch, dtype, setting.size,
                   list(setting.stride_plan) if setting.stride_plan else None, setting.num_classes, warmup, repeats,
                   rounds, threads=threads)

    def check(self) -> None:
        get_space(self.space)
        check_device(self.device)
        require(self.backend, self.dtype, self.device, self.threads)
        if self.batch <= 0:
            raise UsageError(f"--batch must be at least 1, got {self.batch}")
        if self.repeats <= 0:
            raise UsageError("--repeats must be at least 1")
        if self.rounds <= 0:
            raise UsageError(f"--rounds must be at least 1, got {self.rounds}")

    def new_table(self) -> LatencyTable:
        return LatencyTable(self.space, self.device, self.backend, self.batch, self.dtype, self.input_size,
                            list(self.stride_plan) if self.stride_plan else None, self.num_classes, self.threads)


def runner_for(module: nn.Module, shape: tuple[int, ...], s: Settings):
    """The runner a table entry or a validation network is timed with. INT8 graphs are calibrated on random
    inputs: the ranges change the values, not the work, and a table must not depend on a data set."""
    calib = None
    if s.dtype == "int8":
        from ..quantize import random_calibration

        calib = random_calibration(shape)
    return make_runner(RunnerSpec(s.backend, shape, s.device, s.dtype, threads=s.threads), module, calibration=calib)


def time_module(module: nn.Module, shape: tuple[int, ...], s: Settings) -> Stats:
    runner = runner_for(module, shape, s)
    x = torch.randn(*shape)
    with tf32_mode(s.tf32):
        stats = time_runner(runner, x, s.device, s.warmup, s.repeats, s.rounds)
    runner.check_ran()
    return stats


def _jobs(s: Settings, positions: Iterable[int] | None):
    """(key, label, builder, shape) per entry; identical blocks (same shapes and op) are timed once."""
    sp = get_space(s.space)
    sizes, h0, hh = input_sizes(s.space, s.input_size, s.stride_plan)
    plan = sp.with_strides(s.stride_plan) if s.stride_plan else sp
    yield "stem", "stem", lambda: stem_block(s.space), (s.batch, 3, s.input_size, s.input_size)
    for i in (positions if positions is not None else range(sp.num_layers)):
        spec = plan.layers[i]
        for c in sp.choices_at(i):
            sig = ("skip",) if c.skip else (spec.in_channels, spec.out_channels, spec.stride, sizes[i], c.token)
            yield (i, c.token, sig), f"layer {i} {c.token}", \
                (lambda i=i, c=c: choice_block(s.space, i, c, s.stride_plan)), \
                (s.batch, spec.in_channels, sizes[i], sizes[i])
    yield "head", "head", lambda: head_block(s.space, plan.layers[-1].out_channels, s.num_classes), \
        (s.batch, plan.layers[-1].out_channels, hh, hh)


def _open(s: Settings, out: Path) -> LatencyTable:
    fresh = s.new_table()
    if not out.exists():
        return fresh
    t = LatencyTable.load(out)
    want = fresh.setting()
    diff = {k: (v, want[k]) for k, v in t.setting().items() if v != want[k]}
    if diff:
        raise ArtifactError(f"{out} holds a table for other settings ({diff}): choose another --out")
    return t


# Skips are folded away in the deployed network (no op), so they cost nothing.
SKIP_ENTRY = Stats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0).as_dict() | {"folded": True, "params": 0}


def timed_entry(module: nn.Module, shape: tuple[int, ...], s: Settings) -> dict:
    """A table entry: the block's timing statistics and its deployed size (what a call reads from memory)."""
    return time_module(module, shape, s).as_dict() | {"params": module_params(module)}


def measure_table(s: Settings, out: str | Path, positions: Iterable[int] | None = None,
                  progress: bool = True) -> LatencyTable:
    """Time every entry not yet in ``out`` (killed and rerun, it continues), saving after each one."""
    s.check()
    out = Path(out)
    table = _open(s, out)
    table.device_name = table.device_name or environment(s.device)["device_name"]
    table.provenance = provenance() | {"environment": environment(s.device), "warmup": s.warmup,
                                       "repeats": s.repeats, "rounds": s.rounds}
    jobs = list(_jobs(s, positions))
    bar = progress_bar(progress)
    task = bar.add_task(f"latency table {table.describe()}", total=len(jobs)) if bar else None
    sig_stats: dict[tuple, dict] = {}
    try:
        if bar:
            bar.start()
        for key, label, build, shape in jobs:
            if key in ("stem", "head"):
                if getattr(table, key) is None:
                    setattr(table, key, timed_entry(build(), shape, s))
                    table.save(out)
            else:
                i, tok, sig = key
                if tok not in table.layers[i]:
                    if sig == ("skip",):
                        st = dict(SKIP_ENTRY)
                    elif sig in sig_stats:  # an identical block measured at another position
                        st = dict(sig_stats[sig])
                    else:
                        st = timed_entry(build(), shape, s)
                    table.layers[i][tok] = st
                    table.save(out)
                sig_stats.setdefault(sig, table.layers[i][tok] | {"same_as": label})
            if bar:
                bar.update(task, advance=1, description=f"latency {label}")
    finally:
        if bar:
            bar.stop()
    return table


def network_for(table: LatencyTable, arch: Arch | str) -> Network:
    """The deployed (folded) network of ``arch`` in the table's setting."""
    net = Network(arch, SPACE_FLAVOUR[table.space], table.num_classes, table.stride_plan).eval()
    plain, _ = fold(net, check=False)
    return plain


def settings_of(table: LatencyTable, clock: Clock) -> Settings:
    """The measurement settings of ``table``'s engine and setting, timed by ``clock``."""
    return Settings(table.space, table.device, table.backend, table.batch, table.dtype, table.input_size,
                    table.stride_plan, table.num_classes, clock.warmup, clock.repeats, clock.rounds,
                    threads=table.threads)


def time_network(table: LatencyTable, arch: Arch | str, warmup: int = 5, repeats: int = 30, rounds: int = 1) -> Stats:
    return time_module(network_for(table, arch), (table.batch, 3, table.input_size, table.input_size),
                       settings_of(table, Clock(warmup, repeats, rounds)))


@dataclass
class Validation:
    archs: list[str]
    raw: list[float]
    blocks: list[int]
    params: list[int]
    calibrated_loo: list[float]
    measured: list[float]
    calibration: dict
    round_medians: list[list[float]] | None = None

    def metrics(self) -> dict:
        out = {
            "n": len(self.archs),
            "raw": {"mape_pct": mape(self.raw, self.measured), "max_err_pct": max_error(self.raw, self.measured),
                    "kendall_tau": kendall_tau(self.raw, self.measured)},
            "calibrated": {"mape_pct": mape(self.calibrated_loo, self.measured),
                           "max_err_pct": max_error(self.calibrated_loo, self.measured),
                           "kendall_tau": kendall_tau(self.calibrated_loo, self.measured),
                           "note": "leave-one-out: each architecture predicted by a fit on the others"},
            "calibration": self.calibration,
        }
        if self.round_medians and len(self.round_medians[0]) > 1:
            # how far the rounds of one architecture lie apart: the clock's own noise, which no predictor beats
            spread = sorted((max(r) - min(r)) / min(r) * 100.0 for r in self.round_medians)
            out["round_spread_pct_median"] = spread[len(spread) // 2]
            out["measured"] = measured_summary(self.round_medians)
        return out


def measured_summary(round_medians: list[list[float]]) -> dict:
    """What the end-to-end figures are and how sure: the statistic, the median width of their bounds relative to
    the median, and how many architectures were timed in unstable rounds (the warnings, de-duplicated)."""
    from ..bench.stats import RoundLatency

    lats = [RoundLatency.of(r) for r in round_medians]
    widths = sorted((x.upper - x.lower) / x.median * 100.0 for x in lats if x.upper != float("inf"))
    return {"statistic": "median of round medians", "confidence": lats[0].confidence,
            "bounds_width_pct_median": round(widths[len(widths) // 2], 2) if widths else None,
            "unstable": sum(not x.stability.stable for x in lats), "archs": len(lats),
            "warnings": sorted({x.stability.warning for x in lats if x.stability.warning})[:3]}


def validation_from(archs: list[str], raw: list[float], blocks: list[int], params: list[int],
                    measured: list[float], round_medians: list[list[float]] | None = None) -> Validation:
    return Validation(archs, raw, blocks, params, loo_calibrated(raw, blocks, params, measured), measured,
                      fit_calibration(raw, blocks, params, measured), round_medians)


def spread_archs(table: LatencyTable, n: int, rng: random.Random, pool: int = 4000) -> list[Arch]:
    """``n`` architectures spread evenly over the table's range of sums, from the fastest possible to the slowest
    (one per equal-width bin, from a pool of random draws biased towards cheap or dear choices so that every bin
    can be filled), plus the fastest and the slowest: uniform random architectures gather near the median and
    cannot measure how well a table orders the range a search moves in."""
    sp = get_space(table.space)
    fast, slow = table.fastest(False)[0], table.slowest()
    lo, hi = table.raw(fast), table.raw(slow)
    ranked = [sorted(sp.choices_at(i), key=lambda c: table.layers[i][c.token]["median"]) for i in range(sp.num_layers)]
    cands: list[Arch] = []
    for _ in range(pool):
        beta = rng.uniform(-8.0, 8.0)  # < 0: towards dear choices, > 0: towards cheap ones
        cands.append(Arch(tuple(rng.choices(o, weights=[2.718281828 ** (-beta * k / max(len(o) - 1, 1))
                                                        for k in range(len(o))])[0] for o in ranked)))
    sums = [table.raw(a) for a in cands]
    out: list[Arch] = []
    for k in range(n):
        a, b = lo + k * (hi - lo) / n, lo + (k + 1) * (hi - lo) / n
        inside = [c for c, v in zip(cands, sums) if a <= v <= b and c not in out]
        centre = (a + b) / 2
        out.append(rng.choice(inside) if inside else min(((c, v) for c, v in zip(cands, sums) if c not in out),
                                                         key=lambda cv: abs(cv[1] - centre))[0])
    return out + [fast, slow]


def validate_table(table: LatencyTable, n: int, seed: int = 0, progress: bool = True, repeats: int | None = None,
                   save_calibration: bool = True, rounds: int | None = None, clock: Clock | None = None) -> Validation:
    """Time ``n`` architectures spread over the table's range end to end, by the clock every whole network is timed
    with; compare them with the table; fit and store the calibration."""
    clock = clock or Clock()
    clock = replace(clock, repeats=repeats or clock.repeats, rounds=rounds or clock.rounds)
    if n < 3:
        raise UsageError("--archs must be at least 3 to fit and check a calibration")
    if clock.rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {clock.rounds}")
    if not table.complete:
        raise ArtifactError(f"latency table {table.path} is incomplete: rerun `nasdeploy latency-table` to finish it")
    check_device(table.device)
    rng = random.Random(seed)
    archs = spread_archs(table, n, rng)
    raw = [table.raw(a) for a in archs]
    shape = (table.batch, 3, table.input_size, table.input_size)
    s = settings_of(table, clock)
    x = torch.randn(*shape)
    bar = progress_bar(progress)
    task = bar.add_task(f"validate {table.describe()}", total=len(archs) * (1 + clock.rounds)) if bar else None
    try:
        if bar:
            bar.start()
        runners = []
        for a in archs:
            runners.append(runner_for(network_for(table, a), shape, s))  # placed and bound once
            if bar:
                bar.update(task, advance=1)
        with tf32_mode(s.tf32):
            rounds_ms = clock.time_all([r.timed(x) for r in runners], s.device, seed,
                                       [r.stream for r in runners], [r.clock for r in runners],
                                       step=lambda: advance(bar, task))
        meas = [typical_round(r).median for r in rounds_ms]
    finally:
        if bar:
            bar.stop()
    v = validation_from([str(a) for a in archs], raw, [blocks(a) for a in archs], [table.params(a) for a in archs],
                        meas,
                        [[st.median for st in r] for r in rounds_ms])
    if save_calibration and table.path:
        table.calibration = v.calibration
        table.save()
    return v
