"""Bench rows of engines that can take their process down (a native runtime: AOTInductor packages, TensorRT; any
backend that says ``isolated = True``), built, loaded and timed in a process of their own (``bench.worker``), so
that a crash costs its row ("crashed: SIGSEGV while loading") and not the run.

The row's runner lives in its process; the bench talks to it through ``IsolatedRunner``, which the bench treats as
any runner, except that a round is timed there (``time_round``) and not across the pipe.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..backends import Runner
from ..errors import NasDeployError
from .timing import Stats, time_cpu, time_runner
from .worker import TimingWorker, WorkerDied

# in the row's own process: its runner
_ROW: dict[str, Runner] = {}


class EngineCrashed(NasDeployError):
    """An isolated engine's process died: its row fails with this line, the run goes on."""


def _describe(r: Runner) -> dict:
    return {"device": r.device, "dtype": r.dtype, "threads": r.threads, "notes": r.notes(),
            "files": getattr(r, "files", None), "batch_range": r.batch_range, "precision": r.precision,
            "clock": r.clock}


def _load_export(path: str, engine: str, device: str, batch: int) -> dict:
    from ..export.manifest import ExportFolder

    _ROW["runner"] = ExportFolder.open(path).runner(engine, device, (batch, batch))
    return _describe(_ROW["runner"])


def _build_model(backend: str, module: torch.nn.Module, shape: tuple[int, ...], device: str, dtype: str,
                 tf32: bool, work: str, calibration, graphs: dict[str, str]) -> dict:
    from ..backends import RunnerSpec, make_runner

    _ROW["runner"] = make_runner(RunnerSpec(backend, shape, device, dtype, tf32=tf32), module, workdir=work,
                                 calibration=calibration, graphs=graphs)
    return _describe(_ROW["runner"])


def _call(x: torch.Tensor) -> torch.Tensor:
    return _ROW["runner"](x).detach().float().cpu()


def _round(x: torch.Tensor, device: str, warmup: int, repeats: int) -> Stats:
    return time_runner(_ROW["runner"], x, device, warmup, repeats)


def _copies(x: torch.Tensor, repeats: int) -> Stats:
    from ..backends import device_context

    r = _ROW["runner"]
    pinned = x.pin_memory()

    def synced() -> None:
        with device_context(r.device):
            r(pinned.to(r.device, non_blocking=True)).to("cpu", non_blocking=False)
            torch.cuda.synchronize()

    return time_cpu(synced, warmup=10, repeats=repeats)


def _check() -> None:
    _ROW["runner"].check_ran()


def _crashed(e: WorkerDied, what: str) -> EngineCrashed:
    """The row's failure: "crashed: SIGSEGV while loading"."""
    return EngineCrashed(f"crashed: {e.how.replace('killed by ', '')} while {what}")


class IsolatedRunner(Runner):
    """A runner living in a process of its own."""

    name = "isolated"

    def __init__(self, worker: TimingWorker, info: dict) -> None:
        super().__init__(info["device"], info["dtype"])
        self.worker = worker
        self.threads, self.batch_range, self.precision = info["threads"], info["batch_range"], info["precision"]
        self.clock, self.files, self._notes = info["clock"], info["files"], info["notes"]

    def _ask(self, what: str, fn, *args):
        try:
            return self.worker.call(fn, *args)
        except WorkerDied as e:
            raise _crashed(e, what) from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._ask("running", _call, x)

    def time_round(self, x: torch.Tensor, device: str, warmup: int | None, repeats: int | None) -> Stats:
        return self._ask("timed", _round, x, device, warmup, repeats)

    def with_copies(self, x: torch.Tensor, repeats: int) -> Stats:
        return self._ask("timed", _copies, x, repeats)

    def check_ran(self) -> None:
        self._ask("checked", _check)

    def notes(self) -> list[str]:
        return self._notes + ["in a process of its own"]

    def close(self) -> None:
        self.worker.close()


def _start(what: str, fn, *args) -> IsolatedRunner:
    worker = TimingWorker()
    try:
        return IsolatedRunner(worker, worker.call(fn, *args))
    except WorkerDied as e:
        worker.close()
        raise _crashed(e, what) from None
    except BaseException:
        worker.close()
        raise


def load_export(path: str | Path, engine: str, device: str, batch: int) -> IsolatedRunner:
    """An export folder's engine, loaded in a process of its own."""
    return _start("loading", _load_export, str(path), engine, device, batch)


def build_model(backend: str, module: torch.nn.Module, shape: tuple[int, ...], device: str, dtype: str,
                tf32: bool, sources) -> IsolatedRunner:
    """A backend's runner built from a folded model in a process of its own, into (and from) ``sources``' folder:
    graphs already made there are used as they are."""
    return _start("building", _build_model, backend, module, tuple(shape), device, dtype, tf32, str(sources.work),
                  sources.calibration, {k: str(v) for k, v in sources.made.items()})
