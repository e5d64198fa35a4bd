"""Measuring latency tables block by block (resumable) and validating them end to end."""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from ..backends import make_runner, require, tf32_mode
from ..bench.env import environment
from ..bench.timing import SETTLE_S, Stats, best_round, time_fn, time_runner
from ..device import check_device
from ..errors import ArtifactError, UsageError
from ..fold import fold, fold_bn
from ..io import provenance
from ..nas.blocks import InvertedResidual, classifier, get_flavour, head, separable_conv, stem
from ..nas.net import Network
from ..nas.space import HEAD_CHANNELS, SEPARABLE_CHANNELS, STEM_CHANNELS, Arch, Choice, get_space
from ..nas.supernet import SPACE_FLAVOUR
from ..progress import progress_bar
from .metrics import fit_linear, kendall_tau, loo_calibrated, mape, max_error
from .table import LatencyTable

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
    rounds: int = 3  # CPU: the fastest of several rounds (see bench.timing.time_fn)
    tf32: bool = False  # CUDA fp32: TF32 convolutions (off: fp32 means float32)

    @classmethod
    def for_input(cls, space: str, device: str, backend: str, batch: int, dtype: str, setting, warmup: int = 10,
                  repeats: int = 50, rounds: int = 3) -> "Settings":
        """The settings of a table for a model's input setting (size, stride plan, classes)."""
        return cls(space, device, backend, batch, dtype, setting.size,
                   list(setting.stride_plan) if setting.stride_plan else None, setting.num_classes, warmup, repeats,
                   rounds)

    def check(self) -> None:
        get_space(self.space)
        check_device(self.device)
        require(self.backend, self.dtype, self.device)
        if self.batch <= 0:
            raise UsageError(f"--batch must be at least 1, got {self.batch}")
        if self.repeats <= 0:
            raise UsageError("--repeats must be at least 1")
        if self.rounds <= 0:
            raise UsageError(f"--rounds must be at least 1, got {self.rounds}")

    def new_table(self) -> LatencyTable:
        return LatencyTable(self.space, self.device, self.backend, self.batch, self.dtype, self.input_size,
                            list(self.stride_plan) if self.stride_plan else None, self.num_classes)


def _out_size(h: int, stride: int) -> int:
    return (h - 1) // stride + 1  # odd kernels, padding k // 2


def input_sizes(space_name: str, input_size: int, stride_plan: Sequence[int] | None) -> tuple[list[int], int, int]:
    """(input height of each searchable layer, height after the stem, height at the head)."""
    sp = get_space(space_name)
    if stride_plan is not None:
        sp = sp.with_strides(stride_plan)
    h = _out_size(input_size, 2)
    first = h
    sizes = []
    for layer in sp.layers:
        sizes.append(h)
        h = _out_size(h, layer.stride)
    return sizes, first, h


class _Fixed(nn.Module):
    def __init__(self, *mods: nn.Module, flatten_before: int | None = None) -> None:
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.flatten_before = flatten_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, m in enumerate(self.mods):
            if i == self.flatten_before:
                x = torch.flatten(x, 1)
            x = m(x)
        return x


def _eval_folded(m: nn.Module) -> nn.Module:
    m.eval()
    fold_bn(m)  # the deployed network has BN folded: time what is deployed
    return m


def stem_block(space: str) -> nn.Module:
    fl = get_flavour(SPACE_FLAVOUR[space])
    return _eval_folded(_Fixed(stem(STEM_CHANNELS, fl.stem_act), separable_conv(STEM_CHANNELS, SEPARABLE_CHANNELS,
                                                                                 fl.separable_act)))


def head_block(space: str, cin: int, num_classes: int) -> nn.Module:
    fl = get_flavour(SPACE_FLAVOUR[space])
    return _eval_folded(_Fixed(head(cin, HEAD_CHANNELS, fl.head_act), nn.AdaptiveAvgPool2d(1),
                               classifier(HEAD_CHANNELS, num_classes, 0.0), flatten_before=2))


def choice_block(space: str, layer: int, choice: Choice, stride_plan: Sequence[int] | None) -> nn.Module:
    sp = get_space(space).with_strides(stride_plan) if stride_plan else get_space(space)
    spec = sp.layers[layer]
    fl = get_flavour(SPACE_FLAVOUR[space])
    return _eval_folded(InvertedResidual(spec.in_channels, spec.out_channels, choice.kernel, spec.stride,
                                         choice.expansion, choice.se, fl))


def runner_for(module: nn.Module, shape: tuple[int, ...], s: Settings):
    """The runner a table entry or a validation network is timed with. INT8 graphs are calibrated on random
    inputs: the ranges change the values, not the work, and a table must not depend on a data set."""
    calib = None
    if s.dtype == "int8":
        from ..quantize import random_calibration

        calib = random_calibration(shape)
    return make_runner(s.backend, module, shape, s.device, s.dtype, calibration=calib)


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
SKIP_ENTRY = Stats(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0).as_dict() | {"folded": True}


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
                    setattr(table, key, time_module(build(), shape, s).as_dict())
                    table.save(out)
            else:
                i, tok, sig = key
                if tok not in table.layers[i]:
                    if sig == ("skip",):
                        st = dict(SKIP_ENTRY)
                    elif sig in sig_stats:  # an identical block measured at another position
                        st = dict(sig_stats[sig])
                    else:
                        st = time_module(build(), shape, s).as_dict()
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


def _settings(table: LatencyTable, warmup: int, repeats: int, rounds: int = 1) -> Settings:
    return Settings(table.space, table.device, table.backend, table.batch, table.dtype, table.input_size,
                    table.stride_plan, table.num_classes, warmup, repeats, rounds)


def time_network(table: LatencyTable, arch: Arch | str, warmup: int = 5, repeats: int = 30, rounds: int = 1) -> Stats:
    return time_module(network_for(table, arch), (table.batch, 3, table.input_size, table.input_size),
                       _settings(table, warmup, repeats, rounds))


@dataclass
class Validation:
    archs: list[str]
    raw: list[float]
    calibrated_loo: list[float]
    measured: list[float]
    calibration: dict

    def metrics(self) -> dict:
        return {
            "n": len(self.archs),
            "raw": {"mape_pct": mape(self.raw, self.measured), "max_err_pct": max_error(self.raw, self.measured),
                    "kendall_tau": kendall_tau(self.raw, self.measured)},
            "calibrated": {"mape_pct": mape(self.calibrated_loo, self.measured),
                           "max_err_pct": max_error(self.calibrated_loo, self.measured),
                           "kendall_tau": kendall_tau(self.calibrated_loo, self.measured),
                           "note": "leave-one-out: each architecture predicted by a fit on the others"},
            "calibration": self.calibration,
        }


def validation_from(archs: list[str], raw: list[float], measured: list[float]) -> Validation:
    a, b = fit_linear(raw, measured)
    return Validation(archs, raw, loo_calibrated(raw, measured), measured, {"a": a, "b": b, "n": len(raw)})


def validate_table(table: LatencyTable, n: int, seed: int = 0, progress: bool = True, repeats: int = 30,
                   save_calibration: bool = True, rounds: int = 3) -> Validation:
    """Time ``n`` random architectures end to end; compare with the table; fit and store the calibration."""
    if n < 3:
        raise UsageError("--archs must be at least 3 to fit and check a calibration")
    if rounds < 1:
        raise UsageError(f"--rounds must be at least 1, got {rounds}")
    if not table.complete:
        raise ArtifactError(f"latency table {table.path} is incomplete: rerun `nasdeploy latency-table` to finish it")
    check_device(table.device)
    sp = get_space(table.space)
    rng = random.Random(seed)
    # n random architectures, plus the fastest and slowest possible ones so the calibration spans the range
    archs = [sp.sample(rng) for _ in range(n)] + [table.fastest(False)[0], table.slowest()]
    raw = [table.raw(a) for a in archs]
    shape = (table.batch, 3, table.input_size, table.input_size)
    s = _settings(table, 5, repeats)
    x = torch.randn(*shape)
    bar = progress_bar(progress)
    task = bar.add_task(f"validate {table.describe()}", total=len(archs) * (1 + rounds)) if bar else None
    try:
        if bar:
            bar.start()
        timers = []
        for a in archs:
            runner = runner_for(network_for(table, a), shape, s)
            timers.append((runner.timed(x), runner.stream, runner.clock))  # placed and bound once
            if bar:
                bar.update(task, advance=1)
        rounds_ms: list[list[Stats]] = [[] for _ in archs]
        order = list(range(len(archs)))
        for _ in range(rounds):
            # interleaved, so that the slow spells of a shared machine (they last seconds to minutes) touch
            # every architecture alike, and in a new order each round, so none always follows the same one
            rng.shuffle(order)
            for i in order:
                fn, stream, clock = timers[i]
                if not s.device.startswith("cuda"):
                    time.sleep(SETTLE_S)  # every network's runtime is alive: the last one's idle threads stop first
                with tf32_mode(s.tf32):
                    rounds_ms[i].append(time_fn(fn, s.device, s.warmup, s.repeats, stream=stream, clock=clock))
                if bar:
                    bar.update(task, advance=1)
        meas = [best_round(r).median for r in rounds_ms]
    finally:
        if bar:
            bar.stop()
    v = validation_from([str(a) for a in archs], raw, meas)
    if save_calibration and table.path:
        table.calibration = v.calibration
        table.save()
    return v

