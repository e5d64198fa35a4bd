"""ONNX export (named input/output, dynamic batch, checker): the graph every ONNX-based backend starts from."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import ExportError

# Opset 17: HardSwish/HardSigmoid (h-swish, h-sigmoid) are native ops since 14; Clip carries ReLU6.
OPSET = 17
INPUT, OUTPUT = "input", "logits"


def to_onnx_bytes(model: nn.Module, input_shape: tuple[int, ...], dynamic_batch: bool = True,
                  opset: int = OPSET, dtype: torch.dtype = torch.float32) -> bytes:
    """A copy of the model (eval mode, CPU, in ``dtype``: float32, or float16 for strongly typed TensorRT) as an
    ONNX ModelProto, checked by onnx.checker. The caller's module is left as it was."""
    import copy

    import onnx

    model = copy.deepcopy(model).eval().cpu().to(dtype)
    x = torch.zeros(*input_shape, dtype=dtype)
    f = io.BytesIO()
    axes = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: a clean graph (Conv, HardSwish, HardSigmoid, Clip, GlobalAveragePool,
        # Gemm) in well under a second; the dynamo exporter gives the same graph in ~20 s.
        torch.onnx.export(model, (x,), f, input_names=[INPUT], output_names=[OUTPUT], dynamic_axes=axes,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    data = f.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except onnx.checker.ValidationError as e:  # pragma: no cover - would be a bug
        raise ExportError(f"onnx.checker rejected the exported graph: {str(e).splitlines()[0]}") from None
    return data


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...], dynamic_batch: bool = True,
                opset: int = OPSET, dtype: torch.dtype = torch.float32) -> Path:
    from .io import write_atomic

    data = to_onnx_bytes(model, input_shape, dynamic_batch, opset, dtype)
    return write_atomic(path, lambda p: p.write_bytes(data))


def onnx_ops(model: bytes | str | Path) -> list[str]:
    import onnx

    m = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    return [n.op_type for n in m.graph.node]


def float16_graph(model, opset: int = 19):
    """A copy of an ONNX model (an INT8 Q/DQ graph included) whose float tensors are float16: initializers,
    Constant values, inputs, outputs and value infos; INT8 weights and zero points stay as they are. Opset 19 is
    the first whose QuantizeLinear/DequantizeLinear take float16 scales."""
    import copy

    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    m = copy.deepcopy(model)
    for imp in m.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version < opset:
            imp.version = opset

    def half(t):
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))

    for init in m.graph.initializer:
        half(init)
    for node in m.graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                half(a.t)
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(m)
    return m
