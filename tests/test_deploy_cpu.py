"""Deployment paths that run on the CPU: AOTInductor and torch.compile first-class, the users' commands as
written, fixed batches never fed another size, and no backend ever changing the caller's model."""
from __future__ import annotations

import random

import pytest
import torch

from nasdeploy.backends import RunnerSpec, dtype_reason, make_runner, unavailable_reason
from nasdeploy.backends.aoti import AotiRunner, example_batch, export_aoti
from nasdeploy.backends.compile import CompileRunner
from nasdeploy.backends.onnxruntime import OrtRunner
from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.errors import NasDeployError
from nasdeploy.export.api import ExportOptions, default_out, export_model
from nasdeploy.export.parity import check_parity
from nasdeploy.nas.net import Network
from nasdeploy.nas.space import get_space
from nasdeploy.onnxgraph import to_onnx_bytes
from nasdeploy.zoo import save_checkpoint

from .conftest import HAS_CUDA, run_cli
from .helpers import randomize, spread


def small_net(seed: int, space: str = "scarlet") -> Network:
    arch = get_space(space).sample(random.Random(seed))
    return randomize(Network(arch, space, 10, SMALL_INPUT_STRIDES), seed=seed).eval()


def _state(m: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(m: torch.nn.Module, before: dict) -> bool:
    after = m.state_dict()
    return all(after[k].dtype == v.dtype and after[k].device == v.device and torch.equal(after[k], v)
               for k, v in before.items())


# ----------------------------------------------------------------- the users' commands as written

def test_export_trt_as_written_gives_one_line_and_writes_nothing(tmp_path):
    if not unavailable_reason("tensorrt", "cuda" if HAS_CUDA else "cpu") is None:
        r = run_cli("export", "fairnas_a", "--trt", cwd=tmp_path)
        assert r.returncode == 2 and "TensorRT" in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert "--out" not in r.stderr and not (tmp_path / "exports").exists()


def test_search_with_only_a_target_says_what_to_do_next(tmp_path):
    r = run_cli("search", "--latency-target", "5ms", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "train-supernet" in r.stderr and "--accuracy-proxy" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(HAS_CUDA, reason="has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_bench_on_cuda_without_a_gpu_is_one_line(tmp_path, device):
    r = run_cli("bench", "fairnas_a", "--device", device, cwd=tmp_path)
    assert r.returncode == 2 and "no CUDA device" in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("spec, expected", [("fairnas_a", "exports/fairnas_a"), ("runs/x/best.toml", "exports/best"),
                                            ("FairNasA.pth.tar", "exports/FairNasA"), ("w/sub.pt", "exports/sub")])
def test_default_export_folder(spec, expected):
    assert default_out(spec).as_posix() == expected


def test_export_without_out_writes_exports_model(tmp_path):
    save_checkpoint(small_net(1), tmp_path / "sub.pt")
    r = run_cli("export", str(tmp_path / "sub.pt"), "--parity-images", "16", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "exports" / "sub" / "model.onnx").exists()
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["sub"]  # no work folder left beside it


# ----------------------------------------------------------------- fixed batches


def test_example_batch_never_specialises_a_dynamic_dimension():
    for lo, hi in [(1, 4), (1, 2), (2, 8), (3, 3 + 5)]:
        for b in range(lo, hi + 1):
            e = example_batch(b, lo, hi)
            assert lo <= e <= hi and e >= 2


@pytest.mark.extended  # verify through a dynamic-batch package (tests/test_verify.py) covers the common path
def test_aoti_on_the_cpu_static_and_dynamic_batches(tmp_path):
    net = small_net(3)
    x = torch.randn(6, 3, 28, 28)
    with torch.no_grad():
        ref = net(x)
    assert spread(ref) > 1e-3
    before = _state(net)
    dyn = export_aoti(net, tmp_path / "dyn.pt2", (1, 3, 28, 28), "cpu", "fp32", (1, 4))  # example batch 1 -> 2
    r = AotiRunner(str(dyn), "cpu", torch.float32, (1, 4))
    for b in (1, 3, 4):
        assert (r(x[:b]) - ref[:b]).abs().max() / ref.abs().max() < 1e-4
    with pytest.raises(NasDeployError, match="outside"):
        r(x[:5])
    p = check_parity(net, r, "aoti", "fp32", 28, [x[:5]], max_batch=4)
    assert p.images == 5 and p.top1_agreement == 100.0 and p.real.max_rel < 1e-4
    assert _same(net, before)


def test_export_aoti_cli_on_the_cpu_static_batch_larger_than_the_parity_images(tmp_path):
    save_checkpoint(small_net(4), tmp_path / "sub.pt")
    r = run_cli("export", str(tmp_path / "sub.pt"), "--aoti", "--device", "cpu", "--batch", "8", "--parity-images",
                "5", "--out", str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    import json

    par = {p["backend"]: p for p in json.loads((tmp_path / "e" / "parity.json").read_text())["parity"]}
    assert par["aoti"]["images"] == 5 and par["aoti"]["top1_agreement"] == 100.0  # padded to 8, 5 scored
    assert par["aoti"]["real"]["max_rel"] < 1e-4


# ----------------------------------------------------------------- torch.compile never runs eager in disguise

@pytest.mark.extended  # test_bench_compile_rows_ran_compiled_code checks every bench row compiled
def test_compiled_runners_each_compile_across_many_models_and_batches():
    """Dynamo's recompile limit (8 per code object) used to turn the 5th model on into silent eager."""
    for seed in range(6):  # two graphs each (batch 1, then a dynamic batch): 12 entries, over the limit of 8
        net = small_net(seed, "fairnas")
        r = CompileRunner(net, "cpu", torch.float32, backend="eager")
        for b in (1, 2, 3):
            x = torch.randn(b, 3, 28, 28)
            with torch.no_grad():
                assert torch.allclose(r(x), net(x), atol=1e-5)
        assert r.graphs >= 1, seed


def test_bench_compile_rows_ran_compiled_code(tmp_path):
    from nasdeploy.bench.run import BenchOptions, bench

    rows = []
    # both spaces and two batches, one compilation each (each costs about 20 s on 2 cores)
    for seed, space, batch in ((6, "fairnas", 1), (7, "scarlet", 2)):
        save_checkpoint(small_net(seed, space), tmp_path / f"m{seed}.pt")
        res = bench([str(tmp_path / f"m{seed}.pt")], BenchOptions("cpu", ["compile"], [batch], repeats=3, rounds=1,
                                                                  progress=False))
        rows += [r for r in res.rows if r.backend == "compile" and r.batch == batch]
        assert len(rows) == (1 if batch == 1 else 2), res.skipped
    assert all("graph(s) compiled" in r.note and not r.note.startswith(", 0") for r in rows)
    assert all(int(r.note.split(" graph(s)")[0].rsplit(", ", 1)[1]) >= 1 for r in rows)


# ----------------------------------------------------------------- the caller's model is never changed

def test_backends_and_exports_leave_the_callers_model_as_it_was():
    net = small_net(5).double()
    before = _state(net)
    to_onnx_bytes(net, (1, 3, 28, 28), dtype=torch.float16)
    make_runner(RunnerSpec("torch", (1, 3, 28, 28)), net)
    OrtRunner(to_onnx_bytes(net, (1, 3, 28, 28)))
    check_parity(net, lambda x: net.float()(x) if False else torch.zeros(len(x), 10), "x", "fp32", 28,
                 [torch.randn(2, 3, 28, 28)])
    assert _same(net, before)


def test_precision_rules_are_one_table():
    assert dtype_reason("tensorrt", "bf16", "cuda")  # never an fp32 engine labelled bf16
    assert dtype_reason("onnxruntime", "fp16", "cuda")
    assert dtype_reason("torch", "fp16", "cpu")
    assert dtype_reason("aoti", "fp16", "cuda") is None and dtype_reason("torch", "fp32", "cpu") is None


def test_export_refuses_before_writing_when_aoti_cannot_build(tmp_path):
    opt = ExportOptions(engines=[("aoti", "fp16")], device="cpu")
    with pytest.raises(NasDeployError, match="fp32"):
        export_model("fairnas_a", tmp_path / "o", opt=opt)
    assert list(tmp_path.iterdir()) == []


def test_compile_latency_table_on_the_cpu(tmp_path):
    from nasdeploy.latency import Settings, measure_table

    s = Settings("fairnas", "cpu", "compile", 1, "fp32", 28, list(SMALL_INPUT_STRIDES), 10, warmup=2, repeats=5,
                 rounds=1)
    t = measure_table(s, tmp_path / "lut.json", positions=[18], progress=False)
    assert len(t.layers[18]) == 6 and all(e["median"] > 0 for e in t.layers[18].values())
    assert t.stem["median"] > 0 and t.head["median"] > 0
