"""The state a long training run resumes from, shared by the supernet trainer and fine-tuning: the model's weights,
the optimizer's and the schedule's state, the step reached and torch's random state, so that a run killed at any
moment continues exactly where its last saved step left it (the data order is a function of (seed, step))."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

KEYS = ("model", "optimizer", "scheduler", "step")


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, step: int) -> dict:
    """What ``restore`` needs, as a table to save (with ``io.torch_save``, atomically) alone or inside a larger
    checkpoint."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": int(step), "torch_rng": torch.get_rng_state()}


def restore(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
            path: str | Path = "checkpoint") -> int:
    """Load a saved training state into the objects of a new run; returns the step to continue from. A state
    saved before torch's random state was kept continues with the random state it has."""
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} has no {', '.join(missing)}: it is not a training state (is it truncated?); "
                              "remove it to start again")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if isinstance(state.get("torch_rng"), torch.Tensor):
        torch.set_rng_state(state["torch_rng"])
    return int(state["step"])
