from __future__ import annotations

import importlib.util
import os
import subprocess
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


if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one thread each for PyTorch, ONNX Runtime and OpenVINO
    # (subprocesses inherit it), so the workers do not fight over the cores
    os.environ.setdefault("NASDEPLOY_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)


def pytest_sessionstart(session) -> None:
    """On CI a missing ../shared is a broken checkout, not a reason to skip half the suite."""
    if REFWEIGHTS is None and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        raise pytest.UsageError(f"CI is set but the reference data is missing ({SHARED_REF}): "
                                "check out ../shared beside the repository or set NASDEPLOY_SHARED")

EXTENDED = os.environ.get("NASDEPLOY_EXTENDED", "").lower() in ("1", "true", "yes")
# The heaviest files first: the two workers then end together instead of one waiting on a long file started late.
_FIRST = ("test_pipeline", "test_distributed", "test_workers", "test_quantize", "test_verify", "test_train",
          "test_deploy_cpu", "test_bench", "test_manifest", "test_recipe")


def pytest_collection_modifyitems(config, items) -> None:
    """``extended`` tests (longer variants of scenarios the suite covers) run with NASDEPLOY_EXTENDED=1
    (`make test-all`); the heaviest files are scheduled first."""
    if not EXTENDED:
        skip = pytest.mark.skip(reason="extended: a longer variant of a covered scenario (make test-all runs it)")
        for item in items:
            if "extended" in item.keywords:
                item.add_marker(skip)

    def rank(item) -> int:
        name = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        return _FIRST.index(name) if name in _FIRST else len(_FIRST)

    items.sort(key=rank)


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


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the command line `nasdeploy ARGS` (``nasdeploy.cli.main``, argument parsing and error handling
    included) in this process from ``cwd``, capturing what a user sees on stdout and stderr and the exit code.

    In-process saves the 2-3 s of a fresh interpreter importing torch per call; tests about processes (a
    SIGKILL, torchrun, a hidden package) start ``python cli.py`` themselves."""
    import contextlib
    import io

    from nasdeploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        os.chdir(cwd or ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([str(a) for a in args])
            except SystemExit as e:  # argparse's own usage errors and --help
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tiny_tables(tmp_path_factory, worker_id):
    """Calibrated latency tables of the tiny pipelines' two candidate engines (SCARLET, built-in setting, ONNX
    Runtime fp32 and INT8), measured once per test run with few repeats: the first worker that needs them measures
    them, the others wait on the lock and read them (the pattern of pytest-xdist's documentation; a file is
    written whole or not at all, and "done" marks the pair complete)."""
    from filelock import FileLock

    from nasdeploy.backends import dtype_reason
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.latency import LatencyTable, Settings, measure_table, validate_table

    root = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    d = root / "tiny_tables"
    out = [d / f"lut_{dtype}.json" for dtype in ("fp32", "int8")]
    with FileLock(str(root / "tiny_tables.lock")):
        if not (d / "done").exists():
            d.mkdir(exist_ok=True)
            for dtype, p in zip(("fp32", "int8"), out):
                assert dtype_reason("onnxruntime", dtype, "cpu") is None
                measure_table(Settings.for_input("scarlet", "cpu", "onnxruntime", 1, dtype, BUILTIN_SETTING,
                                                 warmup=1, repeats=3, rounds=1), p, progress=False)
                validate_table(LatencyTable.load(p), 3, progress=False, repeats=3, rounds=1)
            (d / "done").write_text("")
    return out


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL cluster from the installed binaries (``benchmarks.postgres.postgres_cluster``). Without
    the binaries the tests that need it skip, except on CI (CI=true), where that is a failure."""
    from benchmarks.postgres import pg_binary, postgres_cluster

    if not (pg_binary("initdb") and pg_binary("pg_ctl")):
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI needs PostgreSQL's initdb and pg_ctl (Debian: apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed here (initdb, pg_ctl): apt-get install postgresql")
    with postgres_cluster() as url:
        yield url
