"""Reading any PyTorch checkpoint file safely: ``torch.load(weights_only=True)``, each failure one line that says
what the file is and what to do."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError


def _looks_saved(path: Path) -> bool:
    """Whether a file starts as ``torch.save`` writes: a zip archive, or a pickle of protocol 2 or later."""
    with open(path, "rb") as f:
        head = f.read(1)
    return head == b"\x80" or zipfile.is_zipfile(path)


def read_file(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with each failure turned into a one-line CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist: check the path")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not _looks_saved(path):  # text or other bytes that happen to start like a pickle opcode
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (neither torch.save's zip archive "
                                  "nor a pickle): is it truncated or another kind of file?") from None
        if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(f"{path} holds Python objects that a safe load refuses ({first[:160]}); "
                                  "re-save it as a plain state dict") from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first[:160]}): "
                              "is it truncated or another kind of file?") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError) as e:
        msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({msg}): "
                              "is it truncated or another kind of file?") from None
