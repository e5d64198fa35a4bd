"""The backend registry: the only place the rest of nasdeploy learns which backends exist.

Every module of this package that defines ``BACKEND`` (a ``base.Backend``) is a backend; adding a backend is
adding one file. ``export``, ``bench``, ``verify``, ``latency-table`` and ``pipeline`` take any of them, in any
precision it runs, by name (``onnxruntime``, ``openvino:int8``, ...).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from torch import nn

from ..device import check_device
from ..errors import DeviceError, UsageError
from .base import (DTYPES, Backend, Engine, Runner, Sources, Target, device_context, device_kind, parse_dtype,
                   quiet_cpu_compiler, tf32_mode, tf32_state)

__all__ = ["DTYPES", "Backend", "Engine", "Runner", "RunnerSpec", "Sources", "Target", "backend_names", "default_engines",
           "device_context", "device_kind", "dtype_reason", "engine_reason", "engine_help", "get_backend", "make_runner", "parse_dtype",
           "parse_engines", "pinned", "quiet_cpu_compiler", "reference_engine", "refresh_registry", "require",
           "same_engine", "table_backend",
           "tf32_mode", "tf32_state", "unavailable_reason"]


PLUGINS = "NASDEPLOY_BACKENDS"  # folders of backend files of your own (os.pathsep-separated), beside the built-in


@lru_cache(maxsize=1)
def _registry() -> dict[str, Backend]:
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)
               if info.name != "base"]
    found = [b for b in (getattr(m, "BACKEND", None) for m in modules + _plugins()) if isinstance(b, Backend)]
    return {b.name: b for b in sorted(found, key=lambda b: (b.order, b.name))}


def _plugins() -> list:
    """The backend files of the folders ``NASDEPLOY_BACKENDS`` names (an environment variable, so that a process
    of its own, a bench row's or a timing process, finds them too)."""
    import importlib.util
    import sys

    out = []
    for folder in filter(None, os.environ.get(PLUGINS, "").split(os.pathsep)):
        for path in sorted(Path(folder).glob("*.py")):
            name = f"{__name__}.{path.stem}"
            mod = sys.modules.get(name)
            if mod is None or getattr(mod, "__file__", None) != str(path):
                spec = importlib.util.spec_from_file_location(name, path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod
                spec.loader.exec_module(mod)
            out.append(mod)
    return out


def refresh_registry() -> None:
    """Find the backends again (a backend module added to the package's path while the process runs)."""
    _registry.cache_clear()


def backend_names() -> list[str]:
    return list(_registry())


def get_backend(name: str) -> Backend:
    try:
        return _registry()[name]
    except KeyError:
        raise UsageError(f"unknown backend '{name}': choose from {', '.join(backend_names())}") from None


def default_engines(device: str) -> list[Engine]:
    """The deployment candidates on ``device``: every backend's ``candidates`` there, in registry order."""
    kind = device_kind(device)
    return [Engine(b.name, d) for b in _registry().values() for d in b.candidates.get(kind, ())]


def reference_engine(device: str) -> Engine:
    """The engine every other must beat on ``device``, shipped when none is established faster (the runtime's
    default threads: plain ONNX Runtime as a user runs it)."""
    kind = device_kind(device)
    for b in _registry().values():
        if kind in b.reference:
            return Engine(b.name, b.reference[kind])
    raise UsageError(f"no reference engine is registered for {kind}")  # pragma: no cover - registry bug


def table_backend(device: str) -> str:
    """The backend latency tables are measured with on ``device`` unless another is asked for."""
    kind = device_kind(device)
    return next(b.name for b in _registry().values() if kind in b.table_default)


def engine_help() -> str:
    """The registered backends and the precisions each runs, for --help texts."""
    return "; ".join(f"{b.name} ({', '.join(f'{k}: {chr(47).join(v)}' for k, v in b.dtypes.items())})"
                     for b in _registry().values())


def unavailable_reason(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run on ``device`` here (missing package, wrong device), or None if it can."""
    return get_backend(backend).unavailable(device)


def dtype_reason(backend: str, dtype: str, device: str) -> str | None:
    """Why ``backend`` does not run ``dtype`` on ``device`` (or this CPU lacks it), or None if it does."""
    return get_backend(backend).precision_reason(dtype, device)


def parse_engines(text: str | list[str], default_dtype: str = "fp32") -> list[Engine]:
    """``"onnxruntime,openvino:int8@1"`` -> [Engine("onnxruntime", "fp32"), Engine("openvino", "int8", 1)], names
    checked."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        e = Engine.parse(item, default_dtype)
        b = get_backend(e.backend)
        parse_dtype(e.dtype)
        if e.threads is not None and not b.sets_threads:
            raise UsageError(f"engine '{item}': {b.threads_reason(e.threads, 'cpu')}")
        out.append(e)
    if not out:
        raise UsageError(f"no engine named in '{text}': give BACKEND[:PRECISION][@THREADS], e.g. onnxruntime:int8")
    return out


def pinned(engine: Engine, threads: int | None) -> Engine:
    """``engine`` naming the threads it ran with (``threads``: what its runner used), where its runtime sets its own
    and it names none: what ships runs as it was timed, on any machine."""
    if engine.threads is not None or not threads or not get_backend(engine.backend).sets_threads:
        return engine
    return Engine(engine.backend, engine.dtype, threads)


def same_engine(a: Engine, b: Engine) -> bool:
    """Whether ``a`` and ``b`` run alike here: the same runtime and precision, and the same threads once an engine
    that names none is given the runtime's default (``NASDEPLOY_THREADS`` or the usable cores)."""
    from .base import runtime_threads

    return pinned(a, runtime_threads()) == pinned(b, runtime_threads())


def engine_reason(engine: Engine, device: str) -> str | None:
    """Why ``engine`` (its runtime, precision and threads) cannot run on ``device`` here, or None."""
    b = get_backend(engine.backend)
    return b.unavailable(device) or b.precision_reason(engine.dtype, device) or \
        b.threads_reason(engine.threads, device)


def require(backend: str, dtype: str, device: str, threads: int | None = None) -> Backend:
    """The backend, or a one-line refusal saying why it cannot run ``dtype`` (with ``threads``) on ``device``
    here."""
    b = get_backend(backend)
    reason = engine_reason(Engine(backend, dtype, threads), device)
    if reason:
        raise DeviceError(f"backend {backend} cannot run {dtype} on {device} here: {reason}")
    return b


@dataclass(frozen=True)
class RunnerSpec:
    """Which runner to build: ``backend`` for inputs of ``shape`` (batch, C, H, W) on ``device`` in ``dtype``.
    ``dynamic_batch``: the runner takes any batch from 1 to ``shape[0]`` (a ragged last batch); otherwise exactly
    ``shape[0]`` where the backend fixes it. ``tf32``: CUDA fp32 may use TF32. ``threads``: the CPU threads its
    runtime runs with."""

    backend: str
    shape: tuple[int, ...]
    device: str = "cpu"
    dtype: str = "fp32"
    dynamic_batch: bool = False
    tf32: bool = False
    threads: int | None = None  # CPU threads (None: the runtime's default, ``base.runtime_threads``)

    def target(self) -> Target:
        n = self.shape[0]
        return Target(tuple(self.shape), (1, n) if self.dynamic_batch else (n, n), self.device, self.dtype, self.tf32,
                      self.threads)


def make_runner(spec: RunnerSpec, model: nn.Module, *, workdir: str | Path | None = None, calibration=None,
                graphs: dict[str, Path] | None = None, sources: Sources | None = None) -> Runner:
    """Build ``spec``'s runner from a (folded) module; refuses with the reason where it cannot run.

    The caller's module is never modified. ``calibration`` (a ``nasdeploy.quantize.Calibration``) is needed for
    int8 unless ``graphs`` already holds the INT8 graph: ONNX graphs to use as they are instead of making them
    ({"fp32": model.onnx, "int8": ...}, as an export wrote them). ``sources``: build from (and into) a caller's
    ``Sources``, which then outlives the runner. ``workdir``: where its files go (default: a temporary folder).
    """
    check_device(spec.device)
    b = require(spec.backend, spec.dtype, spec.device, spec.threads)
    target = spec.target()
    made = {k: Path(v) for k, v in (graphs or {}).items()}
    if sources is not None:  # shared with the caller's other runners: every graph (INT8 included) made once
        return b.load(sources, b.build(sources, target), target)
    if workdir is not None:
        src = Sources(model, Path(workdir), target.chw, calibration, made)
        return b.load(src, b.build(src, target), target)
    with tempfile.TemporaryDirectory(prefix="nasdeploy-") as tmp:  # every runtime holds what it loaded
        src = Sources(model, Path(tmp), target.chw, calibration, made)
        return b.load(src, b.build(src, target), target)
