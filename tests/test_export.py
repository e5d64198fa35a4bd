"""The export command (nasdeploy/export/): folded exports without stabilizer nodes, the card written beside them, bad
input refused in one line leaving nothing, the GPU engines' parity."""
import importlib.util

import pytest
import torch

import nasdeploy
from nasdeploy.backends.onnxruntime import OrtRunner
from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.export.api import ExportOptions, export_model
from nasdeploy.fold import fold
from nasdeploy.nas.net import Network
from nasdeploy.nas.supernet import Supernet
from nasdeploy.onnxgraph import onnx_ops, to_onnx_bytes
from nasdeploy.zoo import save_checkpoint

from .conftest import HAS_CUDA, needs_cuda, run_cli
from .helpers import randomize, spread

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_scarlet_subnet_exports_folded_without_stabilizer_nodes(tmp_path):
    torch.manual_seed(0)
    sn = randomize(Supernet("scarlet", 10, SMALL_INPUT_STRIDES), seed=4)
    arch = "k3e3-skip-k5e3-skip-skip-k3e6se-k7e3-skip-k5e6-k3e3se-k3e6-skip-k5e3-k7e6-k3e3-skip-skip-k5e6se-k7e6"
    sub = sn.extract(arch).eval()
    with torch.no_grad():
        assert spread(sub(torch.randn(4, 3, 28, 28))) > 1e-3
    assert sum(getattr(b, "stabilizer", None) is not None for b in sub.mb_module) == 7
    save_checkpoint(sub, tmp_path / "sub.pt")
    r = export_model(str(tmp_path / "sub.pt"), tmp_path / "exp", opt=ExportOptions(parity_images=64))
    data = (tmp_path / "exp" / "model.onnx").read_bytes()
    plain_arch_convs = onnx_ops(to_onnx_bytes(fold(Network(arch, "scarlet", 10, SMALL_INPUT_STRIDES).eval(),
                                                   check=False)[0], (1, 3, 28, 28))).count("Conv")
    assert onnx_ops(data).count("Conv") == plain_arch_convs  # no 1x1 stabilizer conv left
    x = torch.randn(5, 3, 28, 28)
    with torch.no_grad():
        ref = sub(x)
    y = OrtRunner(data)(x)
    assert (y - ref).abs().max() / ref.abs().max() < 1e-4
    p = r.parity[0]
    assert p.top1_agreement == 100.0 and p.real.max_rel < 1e-4 and p.images == 64


def test_export_writes_a_card_that_loads(tmp_path):
    ref = randomize(nasdeploy.create_model("fairnas_c"), seed=3)
    save_checkpoint(ref, tmp_path / "w.pt")
    export_model("fairnas_c", tmp_path / "e", weights=str(tmp_path / "w.pt"), opt=ExportOptions(parity_images=16))
    m = nasdeploy.create_model(str(tmp_path / "e" / "card.toml"))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = m(x), ref(x)
    assert spread(b) > 1e-3 and (a - b).abs().max() / b.abs().max() < 1e-4


def _no_partial(tmp_path, name):
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith((name, f".{name}"))]
    assert left == [], left


@pytest.mark.parametrize("extra, fragment", [
    (["--weights", "__WRONG__"], "does not fit this model"),
    (["--trt"], "TensorRT"),
    pytest.param(["--aoti", "--device", "cuda"], "no CUDA device", marks=pytest.mark.skipif(HAS_CUDA, reason="has CUDA")),
    (["--aoti", "--fp16", "--device", "cpu"], "use fp32"),
    (["--device", "gpu"], "unknown device"),
    (["--dynamic-batch", "8:4:2"], "MIN <= OPT <= MAX"),
    (["--parity-images", "0"], "--parity-images must be at least 1"),
])
def test_bad_export_input_is_one_line_and_leaves_nothing(tmp_path, refweights, extra, fragment):
    if HAS_TRT and extra == ["--trt"]:
        pytest.skip("TensorRT is installed")
    wrong = tmp_path / "wrong.pth"
    torch.save(refweights.make_checkpoint("scarlet_a", 0), wrong)
    extra = [str(wrong) if e == "__WRONG__" else e for e in extra]
    r = run_cli("export", "fairnas_a", "--out", str(tmp_path / "out"), *extra)
    assert r.returncode == 2 and fragment in r.stderr and r.stderr.count("\n") == 1, r.stderr
    _no_partial(tmp_path, "out")


def test_existing_output_needs_force(tmp_path):
    (tmp_path / "out").mkdir()
    r = run_cli("export", "fairnas_a", "--out", str(tmp_path / "out"))
    assert r.returncode == 2 and "--force" in r.stderr
    r = run_cli("export", "nope_model", "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "unknown model" in r.stderr
    _no_partial(tmp_path, "o2")


@needs_cuda
def test_aoti_fp16_agrees_with_pytorch(tmp_path):
    r = export_model("fairnas_a", tmp_path / "a", opt=ExportOptions(engines=[("aoti", "fp16")],
                                                                    batch=(8, 8, 8), parity_images=64))
    # the zoo's initial weights give logits a few hundredths apart, which fp16 can reorder on an image or two:
    # the error relative to the largest logit is the check (fp16 keeps about 3 digits)
    assert r.parity[0].real.max_rel < 2e-2 and r.parity[0].top1_agreement >= 95.0


@pytest.mark.skipif(not (HAS_TRT and HAS_CUDA), reason="needs TensorRT and CUDA")
def test_tensorrt_engine_parity(tmp_path):
    r = export_model("fairnas_a", tmp_path / "t", opt=ExportOptions(engines=[("onnxruntime", "fp32"), ("tensorrt", "fp32")], batch=(1, 4, 8), dynamic=True,
                                                                    parity_images=64))
    trt = [p for p in r.parity if p.backend == "tensorrt"][0]
    assert trt.real.max_rel < 1e-3 and (tmp_path / "t" / "model.timing-cache").exists()
