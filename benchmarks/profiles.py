"""Where an engine's time goes, by kind of layer, and how many multiply-adds each kind does.

* ``graph_families(onnx)``: every node of a float ONNX graph by kind (stem, depthwise, pointwise, SE, other
  convolutions, classifier, other) with its multiply-adds at batch 1 (from ONNX shape inference);
* ``openvino_profile(file, size, ...)``: OpenVINO's per-layer performance counters, milliseconds per inference by
  kind (a compiled layer is named after the ONNX node it came from);
* ``onnxruntime_profile(file, size, ...)``: ONNX Runtime's per-node profile the same way.

Both profiles run the engine with its counters on, which adds a little time per layer: they say where the time
goes, the timings beside them say how long it takes.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

FAMILIES = ("stem", "pointwise (1x1)", "depthwise", "SE", "other convolutions", "classifier",
            "other (quantize, reorder, pooling, activations, adds)")


ACTIVATIONS = ("Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid")


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.i if a.type == a.INT else list(a.ints)
    return default


def node_family(node, first_conv: str | None) -> str:
    n = node.name.lower()
    if node.op_type == "Conv":
        if "mid_se" in n or "/se/" in n or ".se." in n:
            return "SE"
        if node.name == first_conv:
            return "stem"
        if _attr(node, "group", 1) > 1:
            return "depthwise"
        return "pointwise (1x1)" if _attr(node, "kernel_shape", [1, 1]) == [1, 1] else "other convolutions"
    if node.op_type in ("Gemm", "MatMul"):
        return "classifier"
    return FAMILIES[-1]


def graph_families(path: str | Path) -> tuple[dict[str, str], dict[str, int]]:
    """(node or output name -> kind, kind -> multiply-adds at batch 1) for a float ONNX graph; an activation that
    runtimes fuse into the layer before it counts as that layer."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    if dims and not dims[0].dim_value:
        dims[0].dim_value = 1  # batch 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    first = convs[0].name if convs else None
    kinds: dict[str, str] = {}
    macs = {f: 0 for f in FAMILIES}
    for node in model.graph.node:
        kind = node_family(node, first)
        if node.op_type in ACTIVATIONS and node.input[0] in kinds:
            kind = kinds[node.input[0]]  # fused into the layer before it (ONNX Runtime names it by this output)
        kinds[node.name] = kind
        if kind != FAMILIES[-1]:
            kinds.update({t: kind for t in node.output})
        if node.op_type == "Conv":
            w = inits.get(node.input[1])
            out = shapes.get(node.output[0])
            if w and out:  # out elements x (C_in / group) x kh x kw
                macs[kind] += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            w = inits.get(node.input[1])
            if w:
                macs[kind] += int(np.prod(w))
    return kinds, {k: v for k, v in macs.items() if v}


def _kind_of(name: str, kinds: dict[str, str]) -> str:
    """The kind of a runtime layer named after an ONNX node (OpenVINO appends '/WithoutBiases' and the like; fused
    layers carry the name of the node they were fused into)."""
    for key in (name, name.removesuffix("_nchwc")):
        if key in kinds:
            return kinds[key]
    best = max((k for k in kinds if k and name.startswith(k)), key=len, default=None)
    return kinds[best] if best else FAMILIES[-1]


def openvino_profile(path: str | Path, size: int, kinds: dict[str, str], threads: int, dtype: str = "fp32",
                     iterations: int = 200) -> dict[str, float]:
    """OpenVINO's per-layer counters at batch 1 on nasdeploy's runner (``dtype``: fp32, bf16 or int8, the file
    being the INT8 graph for int8), milliseconds per inference by kind."""
    from nasdeploy.backends.openvino import OvRunner

    req = OvRunner(path, dtype, (1, 1), (3, size, size), threads, {"PERF_COUNT": True}).request
    x = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    for _ in range(20):
        req.infer({0: x})
    total = {f: 0.0 for f in FAMILIES}
    for _ in range(iterations):
        req.infer({0: x})
        for p in req.get_profiling_info():
            if p.status == p.Status.EXECUTED:
                total[_kind_of(p.node_name, kinds)] += p.real_time.total_seconds() * 1e3
    return {k: v / iterations for k, v in total.items() if v}


def onnxruntime_profile(path: str | Path, size: int, kinds: dict[str, str], threads: int,
                        iterations: int = 200) -> dict[str, float]:
    """ONNX Runtime's per-node profile at batch 1 on nasdeploy's session (all graph optimisations), milliseconds per
    inference by kind (the warm-up runs are in the profile too, and counted)."""
    from nasdeploy.backends.onnxruntime import ort_session

    warmup = 20
    with tempfile.TemporaryDirectory(prefix="nasdeploy-prof-") as tmp:
        sess = ort_session(path, threads, profile_prefix=str(Path(tmp) / "ort"))
        feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 3, size, size),
                                                                                       dtype=np.float32)}
        for _ in range(warmup + iterations):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    total = {f: 0.0 for f in FAMILIES}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            total[_kind_of(e["name"][: -len("_kernel_time")], kinds)] += e["dur"] / 1e3
    return {k: v / (warmup + iterations) for k, v in total.items() if v}


def profile(engine: str, path: str | Path, size: int, kinds: dict[str, str], threads: int) -> dict[str, float]:
    """The per-layer profile by kind of an engine (``backend:dtype``) on its file."""
    backend, dtype = engine.split(":")
    if backend == "openvino":
        return openvino_profile(path, size, kinds, threads, dtype)
    return onnxruntime_profile(path, size, kinds, threads)
