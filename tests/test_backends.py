"""The backend registry: every backend is one module, found by the registry, and every stage takes it by name."""
from __future__ import annotations

import pkgutil
import random
import sys
import textwrap

import pytest

import nasdeploy.backends as B
from nasdeploy.backends import DTYPES, backend_names, get_backend, parse_engines
from nasdeploy.errors import UsageError
from nasdeploy.net import Network
from nasdeploy.space import SMALL_INPUT_STRIDES, get_space
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


def test_engine_names_parse_with_a_default_precision():
    assert parse_engines("onnxruntime, openvino:int8") == [("onnxruntime", "fp32"), ("openvino", "int8")]
    for bad, frag in (("tvm", "unknown backend"), ("onnxruntime:int3", "unknown precision"), (",", "no engine")):
        with pytest.raises(UsageError, match=frag):
            parse_engines(bad)


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
    B._registry.cache_clear()
    yield "fp64"
    B._registry.cache_clear()
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
