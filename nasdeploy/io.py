"""Atomic writes (temp file + rename) and provenance for every artefact nasdeploy writes."""
from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    return write_atomic(path, lambda p: torch.save(obj, p))


LOCK = ".nasdeploy.lock"
# a name written atomically is first written as ".NAME.XXXXXXXX.tmp" (and reports beside it add a suffix): what is
# left of the filesystem's 255 bytes
MAX_NAME = 200


def check_output(path: str | os.PathLike, kind: str, flag: str) -> Path:
    """An output path refused in one line when the command starts, not after the work: a folder that is a file (or
    a file that is a folder), a name too long for the filesystem, a place under a file or where this user cannot
    write. ``kind``: "dir" or "file"; ``flag``: how the user gave it (--out)."""
    from .errors import UsageError

    p = Path(path)
    long = next((part for part in p.parts if len(os.fsencode(part)) > MAX_NAME), None)
    if long is not None:
        raise UsageError(f"{flag}: the name {long[:32]}... is {len(os.fsencode(long))} bytes long: give a name of at "
                         f"most {MAX_NAME}")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise UsageError(f"{flag} {p} is a file, not a folder: give a folder")
    if kind == "file" and p.is_dir():
        raise UsageError(f"{flag} {p} is a folder: give a file name")
    base = p if kind == "dir" and p.exists() else p.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"{flag} {p}: {base} is a file, so nothing can be written under it: give another path")
    if not os.access(base, os.W_OK | os.X_OK) or (kind == "file" and p.exists() and not os.access(p, os.W_OK)):
        raise UsageError(f"{flag} {p}: {base if not p.exists() or kind == 'dir' else p} cannot be written here "
                         "(read-only or not yours): give another path")
    return p


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold ``folder`` for one writer (``what`` it is: "a supernet training"): a second process that asks for it
    meanwhile is refused at once, in one line, instead of overwriting the first's files. The folder is made if
    needed; the lock is released when the process ends, however it ends."""
    import fcntl

    from .errors import UsageError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
        os.close(fd)
        raise UsageError(f"{folder} is being written by another nasdeploy process ({holder or 'running'}): wait "
                         f"for it to finish, or choose another --out for {what}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what}, pid {os.getpid()}".encode(), 0)
        yield folder
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def remove_if_empty(folder: str | os.PathLike) -> bool:
    """Remove ``folder`` if it holds nothing but its lock file (a run stopped before writing anything)."""
    folder = Path(folder)
    try:
        names = {p.name for p in folder.iterdir()}
    except OSError:
        return False
    if names - {LOCK}:
        return False
    (folder / LOCK).unlink(missing_ok=True)
    folder.rmdir()
    return True


def provenance(command: str | None = None) -> dict:
    """Who wrote an artefact: when, with what, on what."""
    import torch

    info: dict[str, Any] = {
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "nasdeploy": _version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "command": command if command is not None else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def _version() -> str:
    from . import __version__

    return __version__
