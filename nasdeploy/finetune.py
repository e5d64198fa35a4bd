"""Training one network alone: fine-tuning a searched architecture from its inherited supernet weights (the
step every NAS paper takes after search), or training an architecture from scratch (the stand-alone
accuracies a supernet's ranking is judged against).  Resumable like the supernet trainer."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .checkpoints.files import read_file
from .checkpoints.resume import restore, training_state
from .device import resolve_device
from .errors import UsageError
from .io import folder_lock, torch_save
from .nas.train import StepBatches, check_optimizer, warmup_cosine
from .progress import progress_bar
from .zoo import get_card, resolve, save_checkpoint

STATE = "finetune_state.pt"


@dataclass
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.02
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    ckpt_every: int = 50
    seed: int = 0
    device: str = "auto"


def train_model(model: nn.Module, dataset: Dataset, cfg: FinetuneConfig, state_path: Path | None = None,
                progress: bool = True, label: str = "train") -> nn.Module:
    """SGD (Nesterov) + warm-up/cosine + label smoothing on ``dataset`` for ``cfg.steps`` steps.

    With ``state_path``, the state is saved every ``cfg.ckpt_every`` steps and a rerun continues from it
    (data order is a function of (seed, step), so the result equals an uninterrupted run).
    """
    if cfg.steps <= 0 or cfg.batch_size <= 0:
        raise UsageError("--steps and --batch-size must be positive")
    check_optimizer(cfg.lr, cfg.weight_decay, cfg.label_smoothing)
    device = torch.device(resolve_device(cfg.device))
    model = model.to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.steps, -1))
    step = 0
    if state_path is not None and state_path.exists():
        step = restore(read_file(state_path), model, opt, sched, state_path)
    loader = iter(DataLoader(dataset, batch_sampler=StepBatches(len(dataset), cfg.batch_size, cfg.seed, step,
                                                                cfg.steps)))
    crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    bar = progress_bar(progress, "loss {task.fields[loss]}")
    task = bar.add_task(label[:60], total=cfg.steps, completed=step, loss="") if bar else None
    try:
        if bar:
            bar.start()
        while step < cfg.steps:
            x, y = next(loader)
            opt.zero_grad(set_to_none=True)
            loss = crit(model(x.to(device)), y.to(device))
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if state_path is not None and step % cfg.ckpt_every == 0 and step < cfg.steps:
                torch_save(state_path, training_state(model, opt, sched, step))
            if bar:
                bar.update(task, completed=step, loss=f"{float(loss.detach()):.3f}")
    finally:
        if bar:
            bar.stop()
    return model.eval()


def finetune(spec: str, out: str | Path, cfg: FinetuneConfig, data: str = "fashion-mnist",
             progress: bool = True) -> Path:
    """Train ``spec`` (a card with its weights, or a checkpoint) on the train split of ``data``, with the input
    setting it records; returns the card (or checkpoint) of the result."""
    if cfg.steps <= 0 or cfg.batch_size <= 0:
        raise UsageError("--steps and --batch-size must be positive")
    check_optimizer(cfg.lr, cfg.weight_decay, cfg.label_smoothing)
    out = Path(out)
    with folder_lock(out, "a fine-tune"):
        return _finetune(spec, out, cfg, data, progress)


def _finetune(spec: str, out: Path, cfg: FinetuneConfig, data: str, progress: bool) -> Path:
    from . import data as D

    model = resolve(spec)
    classes = D.num_classes(data)
    if classes != model.setting.num_classes:
        raise UsageError(f"{spec} predicts {model.setting.num_classes} classes, {data} has {classes}")
    dataset = D.dataset(data, "train", model.setting, augment=True)
    net = train_model(model.net, dataset, cfg, out / STATE, progress, f"fine-tune {model.net.arch}")
    save_checkpoint(net.eval().cpu(), out / "model.pt", setting=model.setting)
    card = get_card(spec) if str(spec).endswith(".toml") else None
    if card is not None:
        card.checkpoint = {"file": "model.pt", "layout": "nasdeploy",
                           "note": f"fine-tuned {cfg.steps} steps of {cfg.batch_size} from the inherited weights"}
        card.write(out / "model.toml")
        return out / "model.toml"
    return out / "model.pt"
