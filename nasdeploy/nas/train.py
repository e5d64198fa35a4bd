"""Supernet training: strict fairness or SPOS, SGD + cosine + label smoothing, AMP, atomic checkpoints, exact resume, DDP.

Resume is exact because everything random is either stored in the checkpoint (weights,
optimizer, scheduler, sampler RNG, torch RNG) or a pure function of (seed, step): the
data order of every step is drawn from a generator seeded by (seed, epoch).

Multi-GPU / multi-node: launch the same command under ``torchrun``.  Every rank draws
the same paths (same sampler seed) on its own shard of each batch, and gradients are
all-reduced once after the m paths, before the single optimizer update.
"""
from __future__ import annotations

import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from .. import data as data_mod
from ..device import resolve_device
from ..errors import ArtifactError, DataError, DeviceError, NasDeployError, UsageError
from ..io import folder_lock, remove_if_empty
from ..progress import progress_bar
from ..checkpoints.resume import restore, training_state
from .supernet_checkpoint import load_checkpoint, save_checkpoint
from .paths import make_path_sampler
from .recipe import GRAD_MODES, average_by_visits, inherit_from_parent, parent_path, warm_start_steps, \
    zero_init_residuals
from .space import get_space
from .supernet import Supernet

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
FINAL = "supernet.pt"


@dataclass
class TrainConfig:
    space: str = "scarlet"
    data: str = data_mod.BUILTIN
    steps: int = 200
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    grad_clip: float = 5.0  # as the official FairNAS training
    # The recipe that learns at small budgets (nasdeploy.recipe; ablation in benchmarks/README.md):
    warm_start: int = -1  # steps on the parent (largest) path before every candidate inherits it; -1: a third
    grad_mode: str = "sum"  # FairNAS's sum over the m paths; "visits": the mean over the paths that used a parameter
    zero_init_residual: bool = True  # last BN weight of residual blocks starts at zero
    warmup_steps: int = -1  # linear warm-up before the cosine decay; -1: 5% of the steps
    sampler: str = "fair"
    # "shared": the m paths of a step see the same batch (FairNAS's choice: the paths then differ only in
    # their choices, so their gradients are compared on equal terms); "separate": one batch per path.
    path_batches: str = "shared"
    # each path's batch in this many interleaved chunks (image k to chunk k mod n), their gradients averaged: what
    # n ranks of torchrun compute (each its own chunk, BN statistics per chunk), in one process with less memory
    micro_batches: int = 1
    ckpt_every: int = 50
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    stabilizer_bn: bool = False
    input_size: int = 224
    workers: int = 4
    deterministic: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ data

def train_setting(cfg: TrainConfig) -> data_mod.InputSetting:
    """The input setting a run trains for: the built-in images' own, or ``cfg.input_size`` px images of the folder
    (the small-input rule of ``data.InputSetting.for_images`` applies to both)."""
    if cfg.data == data_mod.BUILTIN:
        return data_mod.BUILTIN_SETTING
    return data_mod.InputSetting.for_images(cfg.input_size, data_mod.num_classes(cfg.data))


def open_train_data(cfg: TrainConfig) -> tuple[Dataset, data_mod.InputSetting]:
    """The train split of ``cfg.data`` (the search-validation part held out) and its input setting."""
    setting = train_setting(cfg)
    return data_mod.dataset(cfg.data, "train", setting, augment=True), setting


class StepBatches:
    """Index lists for batches ``start, start+1, ...``; batch b comes from epoch b // per_epoch's permutation."""

    def __init__(self, n: int, batch: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1) -> None:
        if n < batch:
            raise DataError(f"the training set has {n} images, fewer than one batch of {batch}")
        self.n, self.batch, self.seed, self.start, self.stop = n, batch, seed, start, stop
        self.rank, self.world = rank, world
        self.per_epoch = n // batch

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[list[int]]:
        epoch, perm = -1, None
        for b in range(self.start, self.stop):
            e = b // self.per_epoch
            if e != epoch:
                epoch = e
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + e))
            i = (b % self.per_epoch) * self.batch
            yield perm[i: i + self.batch][self.rank:: self.world].tolist()


# ------------------------------------------------------------- checkpoints

def _save(path: Path, net: Supernet, cfg: TrainConfig, step: int, opt, sched, path_sampler, history: list,
          setting: data_mod.InputSetting) -> None:
    save_checkpoint(path, net, train_config=asdict(cfg), setting=setting,
                    training=training_state(net, opt, sched, step), sampler=path_sampler.state_dict(), history=history)


# ---------------------------------------------------------------- training

def _dist(device: torch.device) -> tuple[int, int]:
    """(rank, world) under torchrun; NCCL only when training on CUDA, gloo otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _local_device(device: torch.device) -> torch.device:
    """Under torchrun each process drives the GPU of its LOCAL_RANK (else every rank would use device 0)."""
    if device.type != "cuda" or "LOCAL_RANK" not in os.environ:
        return device
    local = int(os.environ["LOCAL_RANK"])
    if local >= torch.cuda.device_count():
        raise DeviceError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices are visible: "
                          "start torchrun with --nproc-per-node at most the number of GPUs")
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def allreduce_grads(net: nn.Module, world: int, bucket_mb: float = 25.0) -> None:
    """Average gradients over ranks in a few flat buckets (one collective per bucket, not per parameter)."""
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    limit = int(bucket_mb * (1 << 20))
    bucket: list[torch.Tensor] = []
    size = 0
    for g in grads + [None]:
        if g is not None and (not bucket or (size + g.numel() * g.element_size() <= limit
                                             and g.dtype == bucket[0].dtype)):
            bucket.append(g)
            size += g.numel() * g.element_size()
            continue
        if bucket:
            flat = torch.cat([b.reshape(-1) for b in bucket])
            dist.all_reduce(flat)
            flat.div_(world)
            offset = 0
            for b in bucket:
                b.copy_(flat[offset: offset + b.numel()].view_as(b))
                offset += b.numel()
        bucket, size = ([g], g.numel() * g.element_size()) if g is not None else ([], 0)


def warmup_cosine(steps: int, warmup: int):
    """lr factor: linear warm-up (the summed gradients of m paths are large at the start), then cosine to 0."""
    w = max(1, round(0.05 * steps)) if warmup < 0 else warmup

    def factor(step: int) -> float:
        if step < w:
            return (step + 1) / w
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, steps - w))))

    return factor


def accumulate_paths(net: Supernet, paths: list[list[int]], batches: Iterator, criterion: nn.Module,
                     device: torch.device, amp: bool, separate: bool, micro_batches: int = 1) -> tuple[float, int]:
    """Forward/backward every path, gradients summed (FairNAS); no update. Returns (mean loss, images).

    ``micro_batches`` > 1: each path's batch in that many interleaved chunks, each chunk's loss divided by their
    number, so the summed gradient is the chunks' mean (torchrun ranks on interleaved shards, all-reduced)."""
    total, images = 0.0, 0
    x = y = None
    for path in paths:
        if x is None or separate:
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
        for k in range(micro_batches):
            xk, yk = (x, y) if micro_batches == 1 else (x[k::micro_batches], y[k::micro_batches])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = criterion(net(xk, path), yk) / micro_batches
            loss.backward()
            total += float(loss.detach())
        images += len(y)
    return total / len(paths), images


@dataclass
class TrainResult:
    path: Path  # the final supernet.pt
    history: list  # [step, mean loss over the step's paths]

    def loss_summary(self, k: int = 10) -> tuple[float, float]:
        """Mean loss of the first and of the last ``k`` steps (k at most a third of the run)."""
        k = max(1, min(k, len(self.history) // 3))
        return (sum(h[1] for h in self.history[:k]) / k, sum(h[1] for h in self.history[-k:]) / k)


def train_supernet(cfg: TrainConfig, out: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train (or continue) a supernet in ``out``; returns the final ``supernet.pt`` and the loss history."""
    out = Path(out)
    space = get_space(cfg.space)
    if cfg.path_batches not in ("shared", "separate"):
        raise UsageError(f"--path-batches must be 'shared' or 'separate', not '{cfg.path_batches}'")
    if cfg.steps <= 0 or cfg.batch_size <= 0:
        raise UsageError("--steps and --batch-size must be positive")
    if cfg.grad_mode not in GRAD_MODES:
        raise UsageError(f"--grad-mode must be one of {', '.join(GRAD_MODES)}, not '{cfg.grad_mode}'")
    if cfg.warm_start > cfg.steps:
        raise UsageError(f"--warm-start {cfg.warm_start} is longer than the run (--steps {cfg.steps}): give at most "
                         f"{cfg.steps}, 0 for none, or -1 for a third of the steps")
    if cfg.micro_batches < 1 or cfg.batch_size % cfg.micro_batches:
        raise UsageError(f"--micro-batches must divide --batch-size ({cfg.batch_size}), got {cfg.micro_batches}")
    if cfg.ckpt_every <= 0:
        raise UsageError(f"--ckpt-every must be at least 1, got {cfg.ckpt_every}")
    check_optimizer(cfg.lr, cfg.weight_decay, cfg.label_smoothing, cfg.momentum)
    device = _local_device(torch.device(resolve_device(cfg.device)))
    rank, world = _dist(device)
    # one writer per folder: a second training on it is refused at once (torchrun's ranks share rank 0's)
    with folder_lock(out, "a supernet training") if rank == 0 else nullcontext():
        try:
            return _train(cfg, out, space, resume, progress, device, rank, world)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(_interrupted(out, rank == 0)) from None


def check_optimizer(lr: float, weight_decay: float, label_smoothing: float, momentum: float = 0.9,
                    where: str = "--") -> None:
    """The optimizer's settings, refused in one line before any data is read (named as flags, ``where`` "--", or
    as keys of a configuration section, ``where`` "supernet.")."""
    def name(key: str) -> str:
        return where + (key.replace("_", "-") if where == "--" else key)

    if not lr > 0:
        raise UsageError(f"{name('lr')} must be positive, got {lr}")
    if not weight_decay >= 0:
        raise UsageError(f"{name('weight_decay')} must be 0 or more, got {weight_decay}")
    if not 0 <= label_smoothing < 1:
        raise UsageError(f"{name('label_smoothing')} must be at least 0 and below 1, got {label_smoothing}")
    if not 0 <= momentum < 1:
        raise UsageError(f"{name('momentum')} must be at least 0 and below 1, got {momentum}")


def _interrupted(out: Path, tidy: bool) -> str:
    """What an interrupted run leaves: a checkpoint to resume from, or nothing (``tidy``: its folder removed where
    it holds nothing but the lock)."""
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        try:
            step = int(load_checkpoint(ckpt)["step"])
        except NasDeployError:
            step = None
        at = f" at step {step}" if step is not None else ""
        return f"the checkpoint{at} is in {out}: the same command with --resume continues from it"
    if tidy:
        remove_if_empty(out)
    return f"stopped before the first checkpoint: nothing was saved in {out}"


def _train(cfg: TrainConfig, out: Path, space, resume: bool, progress: bool, device, rank: int,
           world: int) -> "TrainResult":
    ckpt_path = out / CHECKPOINT
    state = None
    if ckpt_path.exists():
        if not resume:
            raise UsageError(f"{out} already holds a training run: pass --resume to continue it, or choose another --out")
        state = load_checkpoint(ckpt_path)
        if state["config"]["space"] != space.name:
            raise ArtifactError(f"{ckpt_path} is a {state['config']['space']} supernet, not {space.name}: "
                                "use the same --space or another --out")
        if int(state["step"]) > cfg.steps:
            raise UsageError(f"{ckpt_path} is at step {state['step']}, beyond --steps {cfg.steps}: give --steps "
                             f"{state['step']} or more to continue it, or choose another --out")
    elif resume:  # the command line says so where the user asked for --resume
        log.debug("no checkpoint in %s to resume from: training starts at step 0", out)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    dataset, setting = open_train_data(cfg)
    cfg = replace(cfg, data=data_mod.data_record(cfg.data))  # recorded so that it reads from any directory
    num_classes = setting.num_classes
    torch.manual_seed(cfg.seed)
    net = Supernet(space, num_classes, setting.stride_plan, cfg.stabilizer_bn, input_setting=setting)
    if cfg.zero_init_residual:
        zero_init_residuals(net)
    net = net.to(device, memory_format=torch.channels_last)  # 1.5x faster training on the CPU, faster on GPUs
    parent, warm = parent_path(net), warm_start_steps(cfg.steps, cfg.warm_start)
    if state is not None and state["config"]["num_classes"] != num_classes:
        raise ArtifactError(f"{ckpt_path} was trained for {state['config']['num_classes']} classes, "
                            f"this data has {num_classes}")
    path_sampler = make_path_sampler(cfg.sampler, net.space, cfg.seed)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.steps, cfg.warmup_steps))
    step, history = 0, []
    if state is not None:
        step = restore(state, net, opt, sched, ckpt_path)
        path_sampler.load_state_dict(state["sampler"])
        history = list(state.get("history", []))
        log.info("resuming %s at step %d/%d", ckpt_path, step, cfg.steps)
    out.mkdir(parents=True, exist_ok=True)
    per_step = path_sampler.num_paths if cfg.path_batches == "separate" else 1
    batches = StepBatches(len(dataset), cfg.batch_size, cfg.seed, step * per_step, cfg.steps * per_step, rank, world)
    # worker processes for image folders, at most the usable cores; an unreadable image ends the run in one line
    workers = 0 if cfg.data == data_mod.BUILTIN else cfg.workers
    loader = iter(data_mod.Loader(dataset, workers, persistent=True, batch_sampler=batches,
                                  pin_memory=device.type == "cuda"))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    amp = cfg.amp and device.type == "cuda"
    net.train()
    bar = progress_bar(progress and rank == 0, "loss {task.fields[loss]}", "{task.fields[ips]} img/s")
    task = bar.add_task(f"supernet {space.name} ({cfg.sampler})", total=cfg.steps, completed=step, loss="", ips="") \
        if bar else None
    t0, seen = time.perf_counter(), 0
    try:
        if bar:
            bar.start()
        while step < cfg.steps:
            if warm and step == warm:  # once, at the same step on a resumed run (the checkpoint is before it)
                inherit_from_parent(net, parent)
            # warm-up on the parent path: with one batch per path it takes as many batches as a fair step would
            paths = ([parent] * per_step) if step < warm else path_sampler.paths()
            opt.zero_grad(set_to_none=True)
            mean, n = accumulate_paths(net, paths, loader, criterion, device, amp, cfg.path_batches == "separate",
                                       cfg.micro_batches)
            seen += n * world
            if world > 1:
                allreduce_grads(net, world)
            if cfg.grad_mode == "visits":
                average_by_visits(net, paths)
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            history.append([step, round(mean, 5)])
            if not math.isfinite(mean):
                raise UsageError(f"loss became {mean} at step {step}: lower --lr")
            if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.steps):
                _save(ckpt_path, net, cfg, step, opt, sched, path_sampler, history, setting)
            if bar:
                ips = seen / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, completed=step, loss=f"{mean:.3f}", ips=f"{ips:,.0f}")
    finally:
        if bar:
            bar.stop()
    final = out / FINAL
    if rank == 0:
        _save(final, net, cfg, step, opt, sched, path_sampler, history, setting)
    return TrainResult(final, history)
