"""The CPU's instruction set and the INT8 rule that follows from it: detection from /proc/cpuinfo text of several
CPUs, the rule per request, and graphs that really carry it (7-bit weights where the rule says so)."""
from __future__ import annotations

import random

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from nasdeploy.errors import UsageError
from nasdeploy.isa import CpuIsa, int8_rule, mismatch, parse_flags, this_cpu

EPYC_AVX2 = "processor\t: 0\nflags\t\t: fpu vme sse sse2 ssse3 fma avx avx2 bmi2\n"
XEON_VNNI = "flags\t\t: fpu avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16\n"
ALDER_LAKE = "flags\t\t: fpu avx avx2 fma avx_vnni\n"
SAPPHIRE = "flags\t\t: avx2 fma avx512f avx512_vnni amx_bf16 amx_int8 amx_tile\n"
SKYLAKE_SP = "flags\t\t: avx2 fma avx512f avx512bw avx512vl\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd asimddp sve\n"


@pytest.mark.parametrize("text, machine, cls", [
    (EPYC_AVX2, "x86_64", "no-vnni"), (SKYLAKE_SP, "x86_64", "no-vnni"), (XEON_VNNI, "x86_64", "vnni"),
    (ALDER_LAKE, "x86_64", "vnni"), (SAPPHIRE, "x86_64", "vnni"), (GRAVITON, "aarch64", "arm"), ("", "riscv64", "other"),
])
def test_int8_class_from_cpuinfo(text, machine, cls):
    cpu = CpuIsa(machine, parse_flags(text))
    assert cpu.int8_class == cls
    assert ("no VNNI" in cpu.describe()) == (cls == "no-vnni")
    assert cpu.as_dict()["int8_class"] == cls


def test_only_listed_extensions_are_kept():
    assert parse_flags(EPYC_AVX2) == ("avx2", "fma")
    assert parse_flags(SAPPHIRE) == ("avx2", "fma", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")


@pytest.mark.parametrize("cpu_text, asked, target, safe", [
    (EPYC_AVX2, "native", "no-vnni", True), (XEON_VNNI, "native", "vnni", False), (GRAVITON, "native", "arm", False),
    (XEON_VNNI, "portable", "portable", True), (EPYC_AVX2, "vnni", "vnni", False), (XEON_VNNI, "no-vnni", "no-vnni", True),
])
def test_rule_per_request_and_cpu(cpu_text, asked, target, safe):
    machine = "aarch64" if "Features" in cpu_text else "x86_64"
    rule = int8_rule(asked, CpuIsa(machine, parse_flags(cpu_text)))
    assert (rule.target, rule.saturation_safe) == (target, safe)
    assert rule.runs_well_on("no-vnni") == safe and rule.runs_well_on("vnni")


def test_unknown_request_is_refused():
    with pytest.raises(UsageError, match="portable"):
        int8_rule("avx9000")


def test_mismatch_names_both_cpus():
    avx2, vnni = CpuIsa("x86_64", parse_flags(EPYC_AVX2)), CpuIsa("x86_64", parse_flags(XEON_VNNI))
    assert mismatch(avx2.as_dict(), avx2) is None
    why = mismatch(vnni.as_dict(), avx2)
    assert "AVX512-VNNI" in why and "no VNNI" in why
    assert "records no instruction set" in mismatch(None, avx2)


def _int8_weights(path) -> list[int]:
    """The largest |value| of each INT8 weight tensor of a Q/DQ graph."""
    return [int(np.abs(numpy_helper.to_array(i).astype(int)).max()) for i in onnx.load(str(path)).graph.initializer
            if i.data_type == onnx.TensorProto.INT8 and np.prod(i.dims) > 16]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    from nasdeploy.data import BUILTIN_SETTING, SMALL_INPUT_STRIDES
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import get_space
    from nasdeploy.onnxgraph import export_onnx
    from nasdeploy.quantize import QuantOptions, calibration_images

    from .helpers import randomize

    d = tmp_path_factory.mktemp("isa")
    net = randomize(Network(get_space("scarlet").sample(random.Random(4)), "scarlet", 10, SMALL_INPUT_STRIDES), 4)
    return d, export_onnx(net, d / "m.onnx", (1, 3, 28, 28)), calibration_images(BUILTIN_SETTING, None, QuantOptions(images=16))


@pytest.mark.parametrize("quantizer", ["onnxruntime", "nncf"])
def test_portable_graphs_keep_weights_off_the_saturating_range(graph, quantizer):
    """ONNX Runtime's reduce_range: every weight within 7 bits; NNCF's overflow fix: half the range on every
    convolution it applies to (it leaves depthwise ones alone), where its default fixes only the first layer."""
    if quantizer == "nncf":
        pytest.importorskip("nncf")
    from nasdeploy.quantize import Calibration, QuantOptions, quantize_onnx, quantize_onnx_nncf

    d, src, calib = graph
    fn = quantize_onnx if quantizer == "onnxruntime" else quantize_onnx_nncf
    tops = {}
    for isa in ("portable", "vnni"):
        rep = fn(src, d / f"{quantizer}-{isa}.onnx", Calibration(calib.batches, QuantOptions(images=16, isa=isa), "t"))
        assert rep["isa_rule"]["request"] == isa and rep["calibrated_on"] == this_cpu().as_dict()
        tops[isa] = _int8_weights(d / f"{quantizer}-{isa}.onnx")
    assert max(tops["vnni"]) == 127  # the full range where nothing saturates
    if quantizer == "onnxruntime":
        assert max(tops["portable"]) <= 64
    else:
        half = [sum(v <= 64 for v in tops[isa]) for isa in ("portable", "vnni")]
        assert half[0] > half[1] + 10, half


def test_native_follows_this_cpu(graph):
    from nasdeploy.quantize import Calibration, QuantOptions, quantize_onnx

    d, src, calib = graph
    rep = quantize_onnx(src, d / "native.onnx", Calibration(calib.batches, QuantOptions(images=16), "t"))
    assert rep["isa_rule"]["target"] == this_cpu().int8_class
    assert rep["isa_rule"]["saturation_safe"] == (this_cpu().int8_class == "no-vnni")
    assert (max(_int8_weights(d / "native.onnx")) <= 64) == rep["isa_rule"]["saturation_safe"]
