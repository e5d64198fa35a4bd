"""What every backend is: what it needs, what precisions it runs, how it builds and runs an artefact.

A backend module defines one ``Backend`` subclass and an instance of it named ``BACKEND``; the registry
(``nasdeploy.backends``) finds it there. ``build`` writes the backend's artefact from the shared ``Sources`` of a
folded model (its ONNX graphs in float32, float16 or INT8 are made once and shared by every backend that
needs them); ``load`` turns an artefact into a ``Runner``.

A runner is a callable ``runner(x) -> logits`` on torch tensors plus ``runner.timed(x)``, a zero-argument
function for the timer that runs one inference on a pre-placed input. ``runner.stream`` (the CUDA stream the
work runs on; None: the current one) and ``runner.clock`` ("cuda": CUDA events on that stream; "wall": the host
clock, for runtimes that synchronise themselves) tell the timer how to time it.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import UsageError

# Every precision nasdeploy names. int8: a Q/DQ graph quantized from real calibration images.
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    """The torch dtype a runner's input is given in (float32 for an INT8 graph, which quantizes inside)."""
    try:
        return DTYPES[name]
    except KeyError:
        raise UsageError(f"unknown precision '{name}': choose one of {', '.join(DTYPES)}") from None


def device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def device_context(device: str | torch.device):
    """Make ``device`` current for CUDA work (streams, graphs, events); nothing on the CPU."""
    d = torch.device(device)
    return torch.cuda.device(d) if d.type == "cuda" else contextlib.nullcontext()


class tf32_mode:
    """PyTorch's TF32 switches for a block (cuDNN allows TF32 by default, so an "fp32" convolution would run in
    TF32 on Ampere and later), restored after it. Off unless asked: fp32 means float32."""

    def __init__(self, on: bool = False) -> None:
        self.on = on

    def __enter__(self) -> "tf32_mode":
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.on
        return self

    def __exit__(self, *exc) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def tf32_state() -> dict:
    """What PyTorch's TF32 switches say now (recorded beside every CUDA measurement)."""
    return {"matmul": bool(torch.backends.cuda.matmul.allow_tf32), "cudnn": bool(torch.backends.cudnn.allow_tf32)}


def quiet_cpu_compiler(device: str) -> None:
    """Inductor's C++ build on a CUDA-enabled torch without a CUDA runtime logs a warning about CUDA_HOME that
    has nothing to do with a CPU build: keep it off the user's terminal."""
    if not str(device).startswith("cuda"):
        import logging

        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Target:
    """What an artefact is built for: its input shape at the optimal batch, the batches it must accept, where
    it runs and in which precision."""

    shape: tuple[int, ...]  # (opt batch, C, H, W)
    batch_range: tuple[int, int]  # every call has lo..hi images
    device: str = "cpu"
    dtype: str = "fp32"
    tf32: bool = False  # CUDA fp32: allow TF32 (off: fp32 means float32)
    threads: int | None = None  # CPU threads the runtime runs with (None: NASDEPLOY_THREADS or the usable cores)

    @property
    def dynamic(self) -> bool:
        return self.batch_range[0] != self.batch_range[1]

    @property
    def chw(self) -> tuple[int, ...]:
        return tuple(self.shape[1:])


@dataclass(frozen=True)
class Engine:
    """What runs a model: a runtime (backend), a precision and, on the CPU, the threads it runs with. Its name is
    ``BACKEND:PRECISION`` or ``BACKEND:PRECISION@THREADS`` (``openvino:bf16@1``); without threads the runtime uses
    ``NASDEPLOY_THREADS`` or every usable core. A latency table, a bench row, an export's engine and the engine that
    ships all carry it, so what ships runs with the threads it was timed with."""

    backend: str
    dtype: str = "fp32"
    threads: int | None = None

    @property
    def name(self) -> str:
        return f"{self.backend}:{self.dtype}" + (f"@{self.threads}" if self.threads else "")

    def __str__(self) -> str:
        return self.name

    @property
    def plain(self) -> "Engine":
        """The same runtime and precision at the runtime's default threads (what an ENGINE@THREADS is a variant of)."""
        return Engine(self.backend, self.dtype)

    @classmethod
    def parse(cls, text: str, default_dtype: str = "fp32") -> "Engine":
        """``onnxruntime``, ``openvino:int8``, ``openvino:bf16@1`` -> an Engine (the names themselves are
        checked by the registry, ``backends.parse_engines``)."""
        head, at, threads = str(text).strip().partition("@")
        name, _, dtype = head.partition(":")
        if not name or (at and not (threads.isdigit() and int(threads) >= 1)):
            raise UsageError(f"engine '{text}' is not BACKEND[:PRECISION][@THREADS] (e.g. openvino:bf16@1; THREADS "
                             "a whole number of at least 1)")
        return cls(name, dtype or default_dtype, int(threads) if at else None)


class Runner:
    """What every runner declares (no caller probes for attributes): its device and input dtype, the CUDA stream
    and clock it is timed with, the CPU threads it uses, the batches a call may have, and the precision the
    runtime reports where it reports one."""

    name = "runner"
    stream: torch.cuda.Stream | None = None
    clock = "auto"  # CUDA events on CUDA devices, the host clock on the CPU
    threads: int | None = None  # CPU threads the runtime uses (stated in bench rows)
    batch_range: tuple[int, int | None] = (1, None)  # every call has lo..hi images (hi None: any number)
    precision: str | None = None  # what the runtime says it runs (OpenVINO's inference precision)

    def __init__(self, device: str, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def timed(self, x: torch.Tensor) -> Callable[[], object]:
        """A zero-argument function running one inference on ``x`` (placed once, not per call)."""
        x = x.to(self.device, self.dtype)
        return lambda: self(x)

    def notes(self) -> list[str]:
        """Facts a bench row states about how this runner ran (threads, precision, compiled graphs, ...)."""
        out = [f"{self.threads} thread(s)"] if self.threads else []
        return out + ([f"runtime precision {self.precision}"] if self.precision else [])

    def check_ran(self) -> None:
        """Raise where the runner did not run what it is labelled as (a compiled runner that compiled nothing)."""


def check_batch(n: int, batch_range: tuple[int, int], what: str) -> None:
    lo, hi = batch_range
    if not lo <= n <= hi:
        from ..errors import ExportError

        raise ExportError(f"batch {n} is outside this {what}'s batch range ({lo}..{hi}): export it with "
                          "--dynamic-batch covering it")


@dataclass
class Sources:
    """The folded float32 model and the graphs made from it, each made once in ``work`` and shared.

    ``calibration``: a ``nasdeploy.quantize.Calibration`` (images and options) for INT8 graphs.
    """

    model: nn.Module | None  # None: loading an export's artefacts, which need no module
    work: Path
    chw: tuple[int, ...]  # the input of one image (3, H, W); a latency-table block's own
    calibration: object | None = None
    made: dict[str, Path] = field(default_factory=dict)
    quant_reports: dict[str, dict] = field(default_factory=dict)

    def onnx(self, dtype: str = "fp32", symmetric: bool = False, quantizer: str = "onnxruntime") -> Path:
        """The model as ONNX (dynamic batch): float32, float16 (strongly typed TensorRT), or an INT8 Q/DQ graph
        made by ``quantizer`` (onnxruntime; nncf for OpenVINO) (``symmetric``: signed activations without zero
        points, as TensorRT requires)."""
        from ..onnxgraph import export_onnx

        key = dtype
        if dtype == "int8":
            key = "int8-nncf" if quantizer == "nncf" else ("int8-sym" if symmetric else "int8")
        if key in self.made:
            return self.made[key]
        if dtype == "int8-fp16":  # TensorRT: the symmetric INT8 graph, its float tensors in float16
            import onnx

            from ..onnxgraph import float16_graph
            from ..io import write_atomic

            sym = onnx.load(str(self.onnx("int8", symmetric=True)))
            half = float16_graph(sym)
            self.made[key] = write_atomic(self.work / "model.int8-fp16.onnx",
                                          lambda p: onnx.save(half, str(p)))
            return self.made[key]
        shape = (1, *self.chw)
        if dtype in ("fp32", "int8"):
            path = self.made.get("fp32") or export_onnx(self.model, self.work / "model.onnx", shape)
            self.made["fp32"] = path
            if dtype == "int8":
                from ..quantize import quantize_onnx, quantize_onnx_nncf

                if self.calibration is None:
                    raise UsageError("INT8 needs calibration images: give --calib-data DIR (or use the built-in "
                                     "images)")
                out = self.work / f"model.{key}.onnx"
                if quantizer == "nncf":
                    self.quant_reports[key] = quantize_onnx_nncf(path, out, self.calibration,
                                                                 bias_correction=not self.calibration.random)
                else:
                    self.quant_reports[key] = quantize_onnx(path, out, self.calibration, symmetric=symmetric)
                self.made[key] = out
            return self.made[key]
        if dtype == "fp16":
            self.made[key] = export_onnx(self.model, self.work / "model.fp16.onnx", shape, dtype=torch.float16)
            return self.made[key]
        raise UsageError(f"no ONNX graph is made in {dtype}")


class Backend:
    """One backend: override the class attributes and ``build``/``load``.

    Policy lives here too, so that no caller keeps a list of backends: ``candidates`` (the precisions offered as
    deployment candidates per device kind), ``table_default`` (the device kinds whose latency tables it measures
    by default) and ``reference`` (per device kind, the precision in which it is the engine every other must beat
    and the one shipped when none does)."""

    name = "backend"
    order = 100  # where it is listed
    description = ""
    package: str | None = None  # the optional Python package it needs (import name)
    install_hint = ""
    dtypes: dict[str, tuple[str, ...]] = {"cpu": ("fp32",)}  # device kind -> precisions it runs there
    artefact: str | None = None  # file name its build writes into the work folder (None: shares model.pt/ONNX)
    candidates: dict[str, tuple[str, ...]] = {}
    table_default: tuple[str, ...] = ()
    reference: dict[str, str] = {}
    # a native runtime that can take its process down (a crash loading a package): `bench` builds, loads and times
    # it in a process of its own, so that a crash costs its row and not the run
    isolated = False
    # whether a runner of its own sets the CPU threads it runs with (ONNX Runtime, OpenVINO); PyTorch's threads
    # belong to the process, so an engine of a PyTorch backend names none
    sets_threads = False

    @property
    def fixed_batch(self) -> bool:
        """Whether its artefact is built for a batch range (and must only ever be called inside it)."""
        return self.artefact is not None

    def unavailable(self, device: str) -> str | None:
        """Why this backend cannot run on ``device`` here, or None."""
        kind = device_kind(device)
        if kind not in self.dtypes:
            where = " or ".join(self.dtypes)
            return f"the {self.name} backend runs on {where}, not {kind}"
        if self.package and not installed(self.package):
            return f"{self.package} is not installed ({self.install_hint})"
        return None

    def threads_reason(self, threads: int | None, device: str) -> str | None:
        """Why an engine of this backend cannot name ``threads`` on ``device``, or None."""
        if threads is None:
            return None
        if device_kind(device) != "cpu":
            return "threads are a CPU setting; leave @THREADS out on a GPU"
        if not self.sets_threads:
            return (f"the {self.name} backend runs with the process's PyTorch threads; leave @THREADS out (set "
                    "OMP_NUM_THREADS for the process instead)")
        return None

    def precision_reason(self, dtype: str, device: str) -> str | None:
        """Why this backend does not run ``dtype`` on ``device``, or None if it does."""
        parse_dtype(dtype)
        runs = self.dtypes.get(device_kind(device), ())
        if dtype not in runs:
            if not runs:
                return f"the {self.name} backend does not run on {device_kind(device)}"
            return (f"the {self.name} backend runs {', '.join(runs)} on {device_kind(device)}: use "
                    f"{' or '.join(runs)}, or another backend")
        return None

    def export_device(self, requested: str) -> str:
        """Where an export builds and checks this backend's artefact when the user asked for ``requested``."""
        return requested if device_kind(requested) in self.dtypes else next(iter(self.dtypes))

    def files(self, path: Path | None) -> list[str]:
        """The files of an export folder an engine built at ``path`` runs from (model.pt when it runs the folded
        PyTorch model itself)."""
        return [Path(path).name] if path is not None else ["model.pt"]

    def build(self, src: Sources, target: Target) -> Path | None:
        """Write this backend's artefact for ``target`` (or reuse a shared one); return its path."""
        raise NotImplementedError

    def load(self, src: Sources, path: Path | None, target: Target) -> Runner:
        raise NotImplementedError

    def private_model(self, src: Sources) -> nn.Module:
        """A copy of the folded model for a runner that moves it to its device and dtype."""
        return copy.deepcopy(src.model)


def installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def runtime_threads() -> int:
    """CPU threads ONNX Runtime and OpenVINO use: ``NASDEPLOY_THREADS`` if set, else the usable cores."""
    import os

    value = os.environ.get("NASDEPLOY_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


def usable_cores() -> int:
    """The cores this process may run on."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
