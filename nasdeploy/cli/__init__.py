"""The command line: each command a thin layer over the Python API.

Library errors (``NasDeployError``) become one line on stderr and exit code 2,
never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Sequence

from ..errors import NasDeployError

# Each command module exposes register(subparsers) -> None and sets args.func.
_COMMAND_MODULES = ("zoo", "fold", "export", "bench", "train", "latency", "search", "pipeline")


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = _Parser(prog="nasdeploy", description="FairNAS / SCARLET-NAS from supernet to deployed engine.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue  # command not built yet
            raise
        mod.register(sub)
    return p


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(show_path=False, show_time=False, rich_tracebacks=False)])


def check_outputs(args: argparse.Namespace) -> None:
    """Every output path a command was given, checked before it starts working (``outputs``: its arguments that
    name one, "dir" or "file")."""
    from ..io import check_output

    for attr, kind in getattr(args, "outputs", {}).items():
        value = getattr(args, attr, None)
        if isinstance(value, str):
            check_output(value, kind, "OUTPUT" if attr == "output" else f"--{attr}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    _setup_logging(args.verbose)
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        check_outputs(args)
        return int(func(args) or 0)
    except NasDeployError as e:
        print(f"nasdeploy {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # the job may say what it left (a checkpoint to resume from)
        print(f"nasdeploy {args.command}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: keep one line unless asked for more
        if args.verbose or os.environ.get("NASDEPLOY_TRACEBACK"):
            raise
        print(f"nasdeploy {args.command}: internal error: {type(e).__name__}: {e} "
              "(rerun with -v for the traceback and report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
