"""nasdeploy's own network checkpoints (a searched subnet, a fine-tuned model, a folded network): the network's
structure, its weights, its input setting and provenance in one file. ``zoo`` builds the network they describe."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..io import provenance, torch_save

FORMAT = "nasdeploy-checkpoint"
FORMAT_VERSION = 1


def save(path: str | Path, config: dict, state_dict: dict, setting: dict | None = None,
         extra: dict | None = None) -> Path:
    """Write a network checkpoint atomically: ``config`` (the structure a network is rebuilt from), ``state_dict``,
    ``setting`` (its input setting, as a table) and ``extra`` keys."""
    obj: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config,
                           "state_dict": state_dict, "provenance": {k: str(v) for k, v in provenance().items()}}
    if setting is not None:
        obj["input"] = setting
    if extra:
        obj.update(extra)
    return torch_save(path, obj)


def parse(obj: Any, path: str | Path = "checkpoint") -> tuple[dict[str, torch.Tensor], dict | None] | None:
    """The weights and structure of a network checkpoint already read, or None when ``obj`` is not one."""
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        return None
    if obj.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is a nasdeploy checkpoint of format {obj.get('format_version')}, "
                              f"this nasdeploy reads format {FORMAT_VERSION}")
    return obj["state_dict"], obj.get("config")
