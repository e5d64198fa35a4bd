"""The ONNX graph every ONNX backend starts from (nasdeploy/onnxgraph.py): it reproduces the official float64 logits,
is clean (no BatchNormalization) and takes any batch."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

import nasdeploy
from nasdeploy.backends.onnxruntime import OrtRunner
from nasdeploy.fold import fold
from nasdeploy.onnxgraph import onnx_ops, to_onnx_bytes

from .conftest import needs_shared


@needs_shared
@pytest.mark.parametrize("model", nasdeploy.list_models())
def test_exported_onnx_reproduces_the_official_float64_logits(model, official_ckpt, refweights):
    m = nasdeploy.create_model(model, weights=official_ckpt(model, 0))
    plain, _ = fold(m, check=False)
    x = refweights.make_input(model, 0)
    y = OrtRunner(to_onnx_bytes(plain, tuple(x.shape)))(x).double().numpy()
    ref = refweights.expected_logits(model, 0)
    tol = 1e-3 if model.startswith("scarlet") else 1e-4
    assert np.abs(y - ref).max() / np.abs(ref).max() <= tol


def test_onnx_graph_is_clean_and_batch_is_dynamic():
    m = nasdeploy.create_model("scarlet_a")
    data = to_onnx_bytes(fold(m, check=False)[0], (1, 3, 224, 224))
    g = onnx.load_from_string(data).graph
    assert g.input[0].name == "input" and g.output[0].name == "logits"
    assert g.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    ops = set(onnx_ops(data))
    assert {"HardSwish", "HardSigmoid", "Conv"} <= ops and "BatchNormalization" not in ops
    r = OrtRunner(data)
    assert tuple(r(torch.randn(3, 3, 224, 224)).shape) == (3, 1000)
