"""Supernet checkpoints, read and written without the training loop: what the trainer saves (``checkpoint.pt``
while it runs, ``supernet.pt`` at the end) and what search, fine-tuning and the pipeline read back, validated."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import data as data_mod
from ..checkpoints.files import read_file
from ..errors import ArtifactError
from ..io import provenance, torch_save
from .supernet import Supernet

FORMAT = "nasdeploy-supernet"
FORMAT_VERSION = 1


def load_checkpoint(path: str | Path) -> dict:
    """A supernet checkpoint as written by ``save_checkpoint`` (format, version and the keys every reader needs
    checked)."""
    obj = read_file(path)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a nasdeploy supernet checkpoint (written by train-supernet)")
    if obj.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: supernet checkpoint format {obj.get('format_version')} is not {FORMAT_VERSION}")
    for key in ("config", "model", "step"):
        if key not in obj:
            raise ArtifactError(f"{path}: supernet checkpoint has no '{key}': is it truncated?")
    return obj


def load_supernet(path: str | Path, device: str | torch.device = "cpu") -> Supernet:
    return supernet_from(load_checkpoint(path), path, device)


def supernet_from(obj: dict, path: str | Path, device: str | torch.device = "cpu") -> Supernet:
    """The supernet held by a checkpoint already read with ``load_checkpoint``, with its input setting."""
    net = Supernet.from_config(obj["config"], input_setting=supernet_setting(obj))
    try:
        net.load_state_dict(obj["model"])
    except RuntimeError as e:
        raise ArtifactError(f"{path}: weights do not fit the supernet they claim ({str(e).splitlines()[0]})") from None
    return net.to(device).eval()


def supernet_setting(obj: dict) -> data_mod.InputSetting:
    """The input setting a supernet checkpoint records (earlier versions: the built-in images', or 224 px)."""
    if isinstance(obj.get("input"), dict):
        return data_mod.InputSetting.from_dict(obj["input"])
    cfg = obj["config"]
    if cfg.get("stride_plan"):
        return data_mod.BUILTIN_SETTING
    return data_mod.InputSetting(obj.get("train_config", {}).get("input_size", 224), cfg["num_classes"])


def save_checkpoint(path: Path, net: Supernet, *, train_config: dict, setting: data_mod.InputSetting, training: dict,
                    sampler: dict, history: list) -> Path:
    """Write a supernet checkpoint atomically: the supernet's structure and weights, how it was trained (the
    training configuration, its data's splits), where the run stands (``training``: ``checkpoints.resume``'s
    training state, with the weights; the path sampler's state, the loss history) and provenance."""
    return torch_save(path, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "config": net.config(), "train_config": train_config,
        "input": setting.as_dict(), "splits": data_mod.split_record(train_config["data"]),
        **training, "sampler": sampler, "history": history,
        "provenance": {k: str(v) for k, v in provenance().items()},
    })
