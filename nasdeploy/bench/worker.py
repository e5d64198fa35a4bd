"""Timing in a clean process, as `benchmark_app` does: a fresh Python process (spawned, not forked) that builds and
times what it is asked to, so that a figure taken inside a long job (the pipeline, after training, fine-tuning,
exporting and gating) is taken in the same state as the same figure taken standalone.

``TimingWorker.call(fn, *args)`` runs the module-level function ``fn`` in the worker and returns its result;
state the function keeps in the worker's module globals (built runners) lives as long as the worker. An error
raised there comes back as the same nasdeploy error; a worker that dies (a native runtime crashing) is reported in
one line with its signal, and a new call starts a new worker.
"""
from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from ..errors import DeviceError, NasDeployError

log = logging.getLogger(__name__)


def _serve(inp, out) -> None:
    """The worker's loop: (fn, args, kwargs) in, ("ok", result) or ("error", kind, message, trace) out."""
    while True:
        try:
            msg = pickle.load(inp)
        except EOFError:
            return
        if msg is None:
            return
        fn, args, kwargs = msg
        try:
            reply = ("ok", fn(*args, **kwargs))
        except NasDeployError as e:
            reply = ("error", type(e).__name__, str(e), traceback.format_exc())
        except Exception as e:  # noqa: BLE001 - reported in the parent with its trace
            reply = ("error", type(e).__name__, f"{type(e).__name__}: {e}", traceback.format_exc())
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


def _error(kind: str, message: str) -> Exception:
    from .. import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, NasDeployError):
        return cls(message)
    return RuntimeError(message)


class WorkerDied(DeviceError):
    """The worker process died while running a call (``how``: "killed by SIGSEGV", "exit code 1")."""

    def __init__(self, message: str, how: str) -> None:
        super().__init__(message)
        self.how = how


class TimingWorker:
    """A fresh Python process that runs timing functions on request (a context manager; ``close`` ends it). It is
    started as ``python -m nasdeploy.bench.worker`` and talks over two pipes of its own, so the caller's script is
    not imported again and the worker's progress bars reach the same terminal."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._to = self._from = None

    def _start(self) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # nasdeploy importable as the caller imports it
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen([sys.executable, "-m", "nasdeploy.bench.worker", str(to_r), str(from_w)],
                                      pass_fds=(to_r, from_w), env=env)
        os.close(to_r)
        os.close(from_w)
        self._to, self._from = os.fdopen(to_w, "wb"), os.fdopen(from_r, "rb")

    def call(self, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` in the worker (``fn`` a module-level function, the arguments picklable)."""
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        try:
            pickle.dump((fn, args, kwargs), self._to, protocol=pickle.HIGHEST_PROTOCOL)
            self._to.flush()
            reply = pickle.load(self._from)
        except (EOFError, OSError, pickle.UnpicklingError):
            code = self._proc.wait(10)
            self._proc = None
            how = _signal_name(code)
            raise WorkerDied(f"the timing process died ({how}) while running {fn.__name__}: a native runtime "
                             "crashed; run again, or leave that engine out", how) from None
        if reply[0] == "ok":
            return reply[1]
        _, kind, message, trace = reply
        log.debug("timing process: %s", trace)
        raise _error(kind, message)

    def close(self) -> None:
        if self._proc is not None:
            try:
                pickle.dump(None, self._to)
                self._to.close()
            except OSError:
                pass
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._from.close()
        self._proc = None

    def __enter__(self) -> "TimingWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _signal_name(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


_SHARED: TimingWorker | None = None


def shared_worker() -> TimingWorker:
    """This process's timing worker, started on first use and kept until this process ends (it only ever builds
    and times, so it stays in the state of a standalone bench; one start serves every timing of a long job)."""
    global _SHARED
    if _SHARED is None:
        import atexit

        _SHARED = TimingWorker()
        atexit.register(_SHARED.close)
    return _SHARED


def in_clean_process(fn: Callable[..., Any], *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)`` in this process's timing worker (``shared_worker``)."""
    return shared_worker().call(fn, *args, **kwargs)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    _serve(os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb"))
