"""Plain ``torch.compile`` (default mode, one graph, its own dynamo cache) on the folded model."""
from __future__ import annotations

import types
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .base import Backend, Runner, Sources, Target, parse_dtype, quiet_cpu_compiler
from .torch_eager import TorchRunner


def _isolated(module: nn.Module) -> nn.Module:
    """``module`` behind a forward with its own code object.

    Dynamo keeps compiled code and counts recompilations per code object: every Network shares
    ``Network.forward``, so after 8 models or shapes (``recompile_limit``) ``torch.compile`` would silently run
    eager. A fresh code object per runner gives each compiled model its own cache.
    """
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    fresh = types.FunctionType(forward.__code__.replace(), forward.__globals__, "forward")
    wrapper = nn.Module()
    wrapper.inner = module
    wrapper.forward = types.MethodType(fresh, wrapper)
    return wrapper


class CompileRunner(TorchRunner):
    """Plain ``torch.compile`` (default mode, whole graph): the baseline users compare against.

    Never runs eager in disguise: the model is compiled as one graph (``fullgraph``), in its own dynamo
    cache, with ``fail_on_recompile_limit_hit`` so a fallback raises instead; ``graphs`` counts the graphs
    dynamo compiled for this runner (at least one once it has run).
    """

    name = "compile"

    def __init__(self, model: nn.Module, device: str, dtype: torch.dtype, mode: str | None = None,
                 channels_last: bool = True, backend: str = "inductor") -> None:
        super().__init__(model, device, dtype, cuda_graph=False, channels_last=channels_last)
        quiet_cpu_compiler(device)
        self.compiled = torch.compile(_isolated(self.model), mode=mode, fullgraph=True, backend=backend)
        self.graphs = 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from torch._dynamo.utils import counters

        x = self._prep(x)
        before = counters["stats"]["unique_graphs"]
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            y = self.compiled(x)
        self.graphs += counters["stats"]["unique_graphs"] - before
        return y

    def notes(self) -> list[str]:
        return [f"{self.graphs} graph(s) compiled", *super().notes()]  # proof that it ran compiled code

    def check_ran(self) -> None:
        if self.graphs < 1:  # pragma: no cover - would be a torch regression
            from ..errors import DeviceError

            raise DeviceError("torch.compile ran without compiling: not recording an eager time as compiled")

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        self(x)  # compiled for this shape here, so the timed calls only replay it
        x = self._prep(x)
        compiled = self.compiled

        def run() -> object:
            with torch.no_grad():
                return compiled(x)

        return run


class CompileBackend(Backend):
    name = "compile"
    order = 20
    description = "torch.compile (inductor, default mode, one graph) on the folded model"
    dtypes = {"cpu": ("fp32",), "cuda": ("fp32", "fp16", "bf16")}
    candidates = {"cuda": ("fp32",)}
    reference = {"cuda": "fp32"}  # what GPU users compare with: torch.compile

    def build(self, src: Sources, target: Target) -> Path | None:
        return None

    def load(self, src: Sources, path: Path | None, target: Target) -> Runner:
        return CompileRunner(self.private_model(src), target.device, parse_dtype(target.dtype))


BACKEND = CompileBackend()
