"""PyTorch eager on the folded model; on CUDA each input shape is captured once in a CUDA graph and replayed."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .base import Backend, Runner, Sources, Target, device_context, parse_dtype


class TorchRunner(Runner):
    """PyTorch eager; on CUDA the call is captured once in a CUDA graph per input shape and replayed."""

    name = "torch"

    def __init__(self, model: nn.Module, device: str, dtype: torch.dtype, cuda_graph: bool = True,
                 channels_last: bool = False) -> None:
        super().__init__(device, dtype)
        self.model = model.eval().to(device, dtype)
        self.channels_last = channels_last and device.startswith("cuda")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.cuda_graph = cuda_graph and device.startswith("cuda")
        self.threads = None if device.startswith("cuda") else torch.get_num_threads()
        self._graphs: dict[tuple, tuple] = {}

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def _graph(self, x: torch.Tensor) -> tuple:
        """The CUDA graph for x's shape (captured on first use, on the runner's device), its static buffers."""
        key = tuple(x.shape)
        if key not in self._graphs:
            with device_context(self.device):
                static_in = x.clone()
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        self.model(static_in)
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    static_out = self.model(static_in)
            self._graphs[key] = (g, static_in, static_out)
        return self._graphs[key]

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = self._prep(x)
        if not self.cuda_graph:
            return self.model(x)
        g, static_in, static_out = self._graph(x)
        with device_context(self.device):
            static_in.copy_(x)
            g.replay()
            return static_out.clone()  # the static buffer is overwritten by the next replay

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        x = self._prep(x)
        if not self.cuda_graph:
            return lambda: self(x)
        g, static_in, _ = self._graph(x)
        static_in.copy_(x)
        return g.replay  # the input is already in place: one replay per call, no copies


class TorchBackend(Backend):
    name = "torch"
    order = 10
    description = "PyTorch eager on the folded model (CUDA graphs on the GPU)"
    dtypes = {"cpu": ("fp32",), "cuda": ("fp32", "fp16", "bf16")}
    candidates = {"cuda": ("fp16",)}
    table_default = ("cuda",)  # CUDA graphs and CUDA events: the GPU tables

    def build(self, src: Sources, target: Target) -> Path | None:
        return None  # runs the folded model itself (model.pt in an export)

    def load(self, src: Sources, path: Path | None, target: Target) -> Runner:
        return TorchRunner(self.private_model(src), target.device, parse_dtype(target.dtype))


BACKEND = TorchBackend()
