"""Parity of an exported artefact against PyTorch float32: error statistics and top-1 agreement on real images."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from ..gate import ErrorStats, agreement, chunked, error_stats


@dataclass
class Parity:
    backend: str
    dtype: str
    random: ErrorStats
    real: ErrorStats
    top1_agreement: float  # percent of real images with the same top-1 as PyTorch float32
    images: int

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def check_parity(reference: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], backend: str, dtype: str,
                 input_size: int, real: list[torch.Tensor], max_batch: int | None = None, seed: int = 0,
                 min_batch: int = 1) -> Parity:
    """``run`` against a float32 copy of ``reference`` (the caller's module is not changed), every call with
    ``min_batch..max_batch`` images."""
    reference = copy.deepcopy(reference).eval().float().cpu()
    g = torch.Generator().manual_seed(seed)
    n = max(min_batch, min(4, max_batch or 4))
    x = torch.randn(n, 3, input_size, input_size, generator=g)
    rnd = error_stats(reference(x), run(x).float().cpu())
    r, o = chunked(reference, real, min_batch, max_batch), chunked(run, real, min_batch, max_batch)
    return Parity(backend, dtype, rnd, error_stats(r, o), agreement(r, o), len(r))
