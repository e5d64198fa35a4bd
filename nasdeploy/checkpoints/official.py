"""The official checkpoint layouts (FairNAS and SCARLET as their repositories publish them, FairNAS-SE as timm 0.1.18
writes it) renamed into nasdeploy's module names and loaded strictly: every key present with its shape, the missing,
unexpected and mis-shaped ones named."""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CheckpointError
from . import network

# timm 0.1.18 EfficientNet as used by FairNAS-SE: blocks.0.0 is the separable conv,
# then stages of 1, 1, 4, 8 and 5 inverted residuals.
TIMM_STAGES = (1, 1, 4, 8, 5)
_TIMM_TOP = {"conv_stem": "stem.0", "bn1": "stem.1", "conv_head": "conv_before_pooling.0",
             "bn2": "conv_before_pooling.1"}
_TIMM_DS = {"conv_dw": "0", "bn1": "1", "conv_pw": "3", "bn2": "4"}
_TIMM_IR = {"conv_pw": "conv1", "bn1": "bn1", "conv_dw": "conv2", "bn2": "bn2", "se.conv_reduce": "mid_se.squeeze_conv",
            "se.conv_expand": "mid_se.excite_conv", "conv_pwl": "conv3", "bn3": "bn3"}
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)\.(\w+)$")


def unwrap(obj: Any, path: str | Path = "checkpoint") -> tuple["OrderedDict[str, torch.Tensor]", dict | None]:
    """The state dict inside a checkpoint object (an official one, its usual wrappers, or a nasdeploy network checkpoint)
    and, for nasdeploy's own, the network config it was saved with."""
    own = network.parse(obj, path)
    if own is not None:
        return own
    if isinstance(obj, dict) and "model_state" in obj and isinstance(obj["model_state"], dict):
        obj = obj["model_state"]
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                       for k, v in obj.items()):
        raise CheckpointError(f"{path} holds no state dict (expected tensors by name, a {{'model_state': ...}} "
                              "wrapper or a nasdeploy checkpoint)")
    return obj, None


def timm_to_ours(key: str) -> str:
    if key.startswith("classifier."):
        return official_to_ours(key)
    top = key.split(".")[0]
    if top in _TIMM_TOP and not key.startswith("blocks."):
        return key.replace(top, _TIMM_TOP[top], 1)
    m = _TIMM_BLOCK.match(key)
    if not m:
        return key
    stage, idx, mod, leaf = int(m[1]), int(m[2]), m[3], m[4]
    if stage == 0:
        return f"separable_conv.{_TIMM_DS.get(mod, mod)}.{leaf}"
    pos = sum(TIMM_STAGES[: stage - 1]) + idx
    return f"mb_module.{pos}.{_TIMM_IR.get(mod, mod)}.{leaf}"


def official_to_ours(key: str) -> str:
    # SCARLET's classifier is a bare Linear; ours (like FairNAS's) is Sequential(Dropout, Linear).
    if key in ("classifier.weight", "classifier.bias"):
        return "classifier.1." + key.split(".")[1]
    return key


TRANSLATORS: dict[str, Callable[[str], str]] = {
    "official": official_to_ours,
    "timm": timm_to_ours,
    "nasdeploy": lambda k: k,
}


def translate(state: dict, layout: str) -> tuple["OrderedDict[str, torch.Tensor]", dict[str, str]]:
    """Rename ``state`` into nasdeploy's module names; also return ours -> theirs for messages."""
    fn = TRANSLATORS[layout]
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    back: dict[str, str] = {}
    for k, v in state.items():
        ours = fn(k)
        out[ours] = v
        back[ours] = k
    return out, back


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_state(model: nn.Module, state: dict, layout: str, source: str = "checkpoint") -> None:
    """Load strictly: every key must exist with its shape; ``num_batches_tracked`` may be absent."""
    ours, back = translate(state, layout)
    expected = model.state_dict()
    missing = [k for k in expected if k not in ours and not k.endswith("num_batches_tracked")]
    unexpected = [back[k] for k in ours if k not in expected]
    misshaped = [f"{back[k]} {tuple(ours[k].shape)} (model wants {tuple(expected[k].shape)})"
                 for k in ours if k in expected and ours[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys: {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_names(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped: {_names(misshaped, 3)}")
    if problems:
        raise CheckpointError(f"{source} does not fit this model ({'; '.join(problems)}): "
                              "is it the checkpoint of another model?")
    with torch.no_grad():
        for k, t in expected.items():
            if k in ours:
                t.copy_(ours[k].to(t.dtype))
            elif k.endswith("num_batches_tracked"):
                t.zero_()
