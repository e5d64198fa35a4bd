from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_REF = Path(os.environ.get("NASDEPLOY_SHARED", ROOT.parent / "shared")) / "reference"


def _load_refweights():
    path = SHARED_REF / "refweights.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("refweights", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


REFWEIGHTS = _load_refweights()


def pytest_sessionstart(session) -> None:
    """On CI a missing ../shared is a broken checkout, not a reason to skip half the suite."""
    if REFWEIGHTS is None and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise pytest.UsageError(f"CI is set but the reference data is missing ({SHARED_REF}): "
                                "check out ../shared beside the repository or set NASDEPLOY_SHARED")
needs_shared = pytest.mark.skipif(REFWEIGHTS is None, reason="../shared/reference is not beside the checkout")
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")


@pytest.fixture(scope="session")
def refweights():
    if REFWEIGHTS is None:
        pytest.skip("../shared/reference is not beside the checkout")
    return REFWEIGHTS


@pytest.fixture(scope="session")
def official_ckpt(tmp_path_factory, refweights):
    """Write (once per session) the stand-in official checkpoint of a model and seed."""
    cache: dict[tuple[str, int], Path] = {}
    d = tmp_path_factory.mktemp("official")

    def make(model: str, seed: int = 0) -> Path:
        key = (model, seed)
        if key not in cache:
            p = d / f"{model}_seed{seed}.pth.tar"
            torch.save(refweights.make_checkpoint(model, seed), p)
            cache[key] = p
        return cache[key]

    return make


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python cli.py ARGS` the way a user would, capturing output."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout)
