"""The INT8 graph nasdeploy builds TensorRT engines from, checked on the CPU against every Q/DQ rule TensorRT 10's ONNX
parser states (TensorRT itself cannot be installed here): DequantizeLinear only on INT8, zero points of 0,
per-channel scales along the weights' output axis, opset 13+ (19 for float16 scales); and its float layers in
float16, still the same network."""
from __future__ import annotations

import random

import numpy as np
import onnx
import pytest
import torch

from nasdeploy.backends import Sources
from nasdeploy.backends.tensorrt import qdq_problems
from nasdeploy.data import BUILTIN_SETTING
from nasdeploy.nas.net import Network
from nasdeploy.nas.space import get_space
from nasdeploy.quantize import QuantOptions, calibration_images

from .helpers import randomize


@pytest.fixture(scope="module", params=["scarlet", "fairnas"])
def sources(request, tmp_path_factory):
    space = request.param
    net = randomize(Network(get_space(space).sample(random.Random(5)), space, 10, BUILTIN_SETTING.stride_plan), 5)
    return Sources(net, tmp_path_factory.mktemp(space), (3, 28, 28),
                   calibration_images(BUILTIN_SETTING, None, QuantOptions(images=16)))


def test_the_symmetric_graph_keeps_the_parsers_rules(sources):
    g = onnx.load(str(sources.onnx("int8", symmetric=True)))
    assert qdq_problems(g) == []
    inits = {i.name: i for i in g.graph.initializer}
    dq = [n for n in g.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert dq and all(inits[n.input[0]].data_type == onnx.TensorProto.INT8 for n in dq)
    convs = [n for n in g.graph.node if n.op_type == "Conv"]
    assert all(len(c.input) < 3 or c.input[2] in inits and inits[c.input[2]].data_type == onnx.TensorProto.FLOAT
               for c in convs)  # biases in float, as ModelOpt leaves them


def test_the_rules_catch_the_graph_that_could_never_build(sources, tmp_path):
    """ONNX Runtime's default (QuantizeBias) turns every bias into an INT32 DequantizeLinear: refused."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from nasdeploy.quantize import CalibrationReader

    src = sources.onnx("fp32")
    out = tmp_path / "old.onnx"
    quantize_static(str(src), str(out), CalibrationReader("input", sources.calibration.batches),
                    quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": True})
    problems = qdq_problems(onnx.load(str(out)))
    assert problems and any("DequantizeLinear of INT32" in p for p in problems), problems


def test_the_rules_catch_zero_points_axes_and_opsets(sources):
    g = onnx.load(str(sources.onnx("int8")))  # ONNX Runtime's own graph: UINT8 activations with zero points
    assert any("zero point" in p for p in qdq_problems(g))
    g = onnx.load(str(sources.onnx("int8", symmetric=True)))
    for imp in g.opset_import:
        imp.version = 12
    assert any("opset 12" in p for p in qdq_problems(g))


def test_float_layers_in_fp16_and_still_the_same_network(sources):
    import onnxruntime as ort

    half = onnx.load(str(sources.onnx("int8-fp16")))
    assert qdq_problems(half) == []
    assert max(i.version for i in half.opset_import if i.domain in ("", "ai.onnx")) >= 19
    assert not [i.name for i in half.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    x = torch.randn(32, 3, 28, 28, generator=torch.Generator().manual_seed(0)).numpy()
    ref = ort.InferenceSession(str(sources.onnx("fp32"))).run(None, {"input": x})[0]
    y = ort.InferenceSession(str(sources.onnx("int8-fp16"))).run(None, {"input": x.astype(np.float16)})[0]
    a, b = ref - ref.mean(1, keepdims=True), y.astype(np.float32) - y.astype(np.float32).mean(1, keepdims=True)
    # random weights carry much INT8 noise (tests/test_quantize_zoo.py); an unrelated network correlates near 0
    assert np.isfinite(y).all() and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.3
