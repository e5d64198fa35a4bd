"""The backend registry: every backend is one module, found by the registry, and every stage takes it by name."""
from __future__ import annotations

import pkgutil
import random
import sys
import textwrap

import pytest

import nasdeploy.backends as B
from nasdeploy.backends import (DTYPES, Engine, RunnerSpec, backend_names, get_backend, make_runner, parse_engines,
                                unavailable_reason)
from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.errors import UsageError
from nasdeploy.nas.net import Network
from nasdeploy.nas.space import get_space
from nasdeploy.zoo import save_checkpoint

from .helpers import randomize


def test_every_module_is_one_registered_backend_with_known_precisions():
    modules = [m.name for m in pkgutil.iter_modules(B.__path__) if m.name != "base"]
    names = backend_names()
    assert len(names) == len(modules) == len(set(names))
    assert {"torch", "compile", "onnxruntime", "openvino", "aoti", "tensorrt"} <= set(names)
    for n in names:
        b = get_backend(n)
        assert set(b.dtypes) <= {"cpu", "cuda"} and b.dtypes
        assert all(set(d) <= set(DTYPES) for d in b.dtypes.values()), n
        for kind, runs in b.dtypes.items():
            for dt in DTYPES:
                why = b.precision_reason(dt, kind)
                assert (why is None) == (dt in runs) or (dt == "bf16" and n == "openvino"), (n, kind, dt, why)


def test_engine_names_parse_with_a_default_precision_and_optional_threads():
    assert parse_engines("onnxruntime, openvino:int8, openvino:bf16@1, onnxruntime@2") == [
        Engine("onnxruntime", "fp32"), Engine("openvino", "int8"), Engine("openvino", "bf16", 1),
        Engine("onnxruntime", "fp32", 2)]
    for bad, frag in (("tvm", "unknown backend"), ("onnxruntime:int3", "unknown precision"), (",", "no engine"),
                      ("openvino:bf16@0", "at least 1"), ("openvino:bf16@two", "BACKEND"),
                      ("openvino:bf16@", "BACKEND"), ("torch:fp32@1", "PyTorch threads")):
        with pytest.raises(UsageError, match=frag):
            parse_engines(bad)


@pytest.mark.parametrize("engine", [Engine("onnxruntime", "fp32"), Engine("openvino", "bf16", 1),
                                    Engine("onnxruntime", "int8", 3), Engine("aoti", "fp16")])
def test_an_engines_name_reads_back_as_the_same_engine(engine):
    assert Engine.parse(engine.name) == engine and str(engine) == engine.name
    assert ("@" in engine.name) == (engine.threads is not None)


def test_an_engine_ships_naming_the_threads_it_ran_with():
    """What ships names the threads it was timed with where its runtime sets its own; an engine that names none
    is the same engine as one naming the runtime's default."""
    from nasdeploy.backends import pinned, same_engine
    from nasdeploy.backends.base import runtime_threads

    ort, ov1 = Engine("onnxruntime", "fp32"), Engine("openvino", "bf16", 1)
    assert pinned(ort, 2) == Engine("onnxruntime", "fp32", 2) and pinned(ov1, 2) == ov1  # named: kept
    assert pinned(Engine("torch", "fp32"), 2) == Engine("torch", "fp32")  # PyTorch's threads are the process's
    assert pinned(ort, None) == ort
    assert same_engine(ort, Engine("onnxruntime", "fp32", runtime_threads()))
    assert not same_engine(ort, Engine("onnxruntime", "fp32", runtime_threads() + 1))
    assert not same_engine(ort, Engine("onnxruntime", "int8"))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("threads", [1, 2])
def test_a_runner_runs_with_the_threads_its_engine_names(backend, threads):
    """What an engine names is what its runtime is given (not NASDEPLOY_THREADS, not the usable cores)."""
    import torch
    from torch import nn

    if unavailable_reason(backend, "cpu"):
        pytest.skip(unavailable_reason(backend, "cpu"))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).eval()
    r = make_runner(RunnerSpec(backend, (1, 3, 8, 8), "cpu", "fp32", threads=threads), model)
    assert r.threads == threads and f"{threads} thread(s)" in r.notes()
    told = r.session.get_session_options().intra_op_num_threads if backend == "onnxruntime" else \
        int(r.compiled.get_property("INFERENCE_NUM_THREADS"))
    assert told == threads  # what the runtime itself holds
    assert r(torch.randn(1, 3, 8, 8)).shape == (1, 144)


PLUGIN = '''
"""A backend added as one file: the folded model in float64 on the CPU."""
import torch
from nasdeploy.backends.base import Backend, Runner


class Fp64Runner(Runner):
    name = "fp64"

    def __init__(self, model):
        super().__init__("cpu", torch.float32)
        self.model = model.double().eval()

    @torch.no_grad()
    def __call__(self, x):
        return self.model(x.double()).float()


class Fp64(Backend):
    name = "fp64"
    dtypes = {"cpu": ("fp32",)}

    def build(self, src, target):
        return None

    def load(self, src, path, target):
        return Fp64Runner(self.private_model(src))


BACKEND = Fp64()
'''


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "fp64.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.setattr(B, "__path__", [*B.__path__, str(d)])
    B.refresh_registry()
    yield "fp64"
    B.refresh_registry()
    sys.modules.pop("nasdeploy.backends.fp64", None)


def test_adding_a_backend_is_adding_one_file(plugin, tmp_path):
    from nasdeploy.bench.run import BenchOptions, bench
    from nasdeploy.export.api import ExportOptions, export_model

    assert plugin in backend_names()
    net = randomize(Network(get_space("scarlet").sample(random.Random(8)), "scarlet", 10, SMALL_INPUT_STRIDES), 8)
    save_checkpoint(net, tmp_path / "n.pt")
    res = bench([str(tmp_path / "n.pt")], BenchOptions("cpu", [plugin], [1], repeats=3, rounds=1, progress=False))
    row = next(r for r in res.rows if r.backend == plugin)
    assert row.throughput > 0 and row.parity["max_rel"] < 1e-4  # against the float32 baseline
    r = export_model(str(tmp_path / "n.pt"), tmp_path / "e",
                     opt=ExportOptions(engines=[(plugin, "fp32")], parity_images=16))
    assert r.parity[0].backend == plugin and r.parity[0].real.max_rel < 1e-4  # float32 against float64
    from nasdeploy.latency import Settings

    Settings("scarlet", "cpu", plugin, 1, "fp32", 28, list(SMALL_INPUT_STRIDES), 10).check()


def _cpu_engines() -> list[tuple[str, str]]:
    from nasdeploy.backends import dtype_reason, unavailable_reason

    return [(b, d) for b in backend_names() for d in DTYPES
            if not unavailable_reason(b, "cpu") and not dtype_reason(b, d, "cpu") and b not in ("aoti", "compile")]


@pytest.mark.parametrize("backend, dtype", _cpu_engines())
def test_every_backend_keeps_the_runner_contract(backend, dtype, tmp_path):
    """The same checks for every registered backend that runs here: the call and the timed call compute the same,
    the declared batch range is kept, the caller's model is left as it was, and what the runner declares (threads,
    notes) is there without probing. The two Inductor backends (compile, aoti) take the same checks in
    tests/test_deploy_cpu.py, where their CPU compiles (half a minute each) are shared with other checks."""
    import torch

    from nasdeploy.backends import Runner, RunnerSpec, make_runner
    from nasdeploy.quantize import random_calibration

    net = randomize(Network(get_space("fairnas").sample(random.Random(3)), "fairnas", 10, SMALL_INPUT_STRIDES), 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calib = random_calibration((4, 3, 28, 28), n=16) if dtype == "int8" else None
    r = make_runner(RunnerSpec(backend, (4, 3, 28, 28), "cpu", dtype), net, calibration=calib, workdir=tmp_path)
    assert isinstance(r, Runner)
    x = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    y = r(x)
    assert y.shape == (4, 10) and torch.isfinite(y).all()
    fn = r.timed(x)
    fn()
    lo, hi = r.batch_range
    assert lo >= 1 and (hi is None or hi >= 4)
    assert isinstance(r.notes(), list) and (r.threads is None or r.threads >= 1)
    r.check_ran()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # the caller's model unchanged
    if dtype == "fp32":
        with torch.no_grad():
            assert (y - net(x)).abs().max() / net(x).abs().max() < 1e-4


FAILING = '''
"""A backend whose runner builds and runs once, then fails while it is timed."""
import torch
from nasdeploy.backends.base import Backend, Runner


class Flaky(Runner):
    name = "flaky"

    def __init__(self):
        super().__init__("cpu", torch.float32)

    def __call__(self, x):
        return torch.zeros(len(x), 10)

    def timed(self, x):
        def run():
            raise RuntimeError("the device went away while it was timed")
        return run


class FlakyBackend(Backend):
    name = "flaky"
    dtypes = {"cpu": ("fp32",)}

    def build(self, src, target):
        return None

    def load(self, src, path, target):
        return Flaky()


BACKEND = FlakyBackend()
'''


def _bench_with_plugin(tmp_path, monkeypatch, name: str, source: str, seed: int):
    """`nasdeploy bench` of a small network on onnxruntime and on backend ``name``, defined by ``source`` in a
    plugin folder (NASDEPLOY_BACKENDS): what the bench and every process of its own find."""
    from .conftest import run_cli

    d = tmp_path / "plugins"
    d.mkdir()
    (d / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.setenv(B.PLUGINS, str(d))
    B.refresh_registry()
    try:
        net = randomize(Network(get_space("fairnas").sample(random.Random(seed)), "fairnas", 10,
                                SMALL_INPUT_STRIDES), seed)
        save_checkpoint(net, tmp_path / "n.pt")
        return run_cli("bench", str(tmp_path / "n.pt"), "--backends", f"onnxruntime,{name}", "--batch", "1",
                       "--repeats", "3", "--rounds", "2", "--json", str(tmp_path / "b.json"), "--no-progress")
    finally:
        monkeypatch.delenv(B.PLUGINS)
        B.refresh_registry()
        sys.modules.pop(f"nasdeploy.backends.{name}", None)


def test_a_row_that_fails_while_timed_is_a_failure_and_the_json_written(tmp_path, monkeypatch):
    import json

    r = _bench_with_plugin(tmp_path, monkeypatch, "flaky", FAILING, seed=2)
    assert r.returncode == 1, r.stderr  # the other rows are timed and written; the exit code says a row failed
    assert "failed flaky fp32 batch 1: " in r.stdout and "went away while it was timed" in r.stdout
    res = json.loads((tmp_path / "b.json").read_text())
    assert {x["backend"] for x in res["rows"]} == {"torch-eager-fp32", "onnxruntime"}
    failed = [s for s in res["failed"] if s.get("backend") == "flaky"]
    assert failed and "went away while it was timed" in failed[0]["reason"]
    assert not [s for s in res["skipped"] if s.get("backend") == "flaky"]  # a failure is not a skip


CRASHING = '''
"""A native runtime that takes its process down while it loads (as an AOTInductor package did on a GPU)."""
import os
import signal

from nasdeploy.backends.base import Backend


class CrashingBackend(Backend):
    name = "crashing"
    dtypes = {"cpu": ("fp32",)}
    isolated = True

    def build(self, src, target):
        return None

    def load(self, src, path, target):
        os.kill(os.getpid(), signal.SIGSEGV)


BACKEND = CrashingBackend()
'''


def test_an_engine_that_crashes_its_process_costs_its_row_not_the_run(tmp_path, monkeypatch):
    """A backend that kills its own process while loading: its row says so ("crashed: SIGSEGV while building"), the
    other rows are timed and written, and the exit code says a row failed. Its file is found by the bench and by
    the row's own process alike (NASDEPLOY_BACKENDS)."""
    import json

    r = _bench_with_plugin(tmp_path, monkeypatch, "crashing", CRASHING, seed=3)
    assert r.returncode == 1, r.stderr
    res = json.loads((tmp_path / "b.json").read_text())
    assert {x["backend"] for x in res["rows"]} == {"torch-eager-fp32", "onnxruntime"}
    assert res["failed"] == [{"model": str(tmp_path / "n.pt"), "backend": "crashing", "dtype": "fp32", "batch": 1,
                              "reason": "crashed: SIGSEGV while building"}]
    assert "failed crashing fp32 batch 1: crashed: SIGSEGV while building" in r.stdout
