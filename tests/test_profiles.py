"""Where an engine's time goes (benchmarks/profiles.py): every multiply-add and every runtime layer is given a kind
of layer, on both runtimes, for any architecture of either space."""
from __future__ import annotations

import random

import pytest

from benchmarks.profiles import FAMILIES, graph_families, onnxruntime_profile, openvino_profile
from nasdeploy.data import BUILTIN_SETTING
from nasdeploy.fold import fold
from nasdeploy.nas.net import Network, count_macs
from nasdeploy.nas.space import get_space
from nasdeploy.nas.supernet import SPACE_FLAVOUR
from nasdeploy.onnxgraph import export_onnx

HAS_OPENVINO = __import__("importlib").util.find_spec("openvino") is not None
SIZE = BUILTIN_SETTING.size
OTHER = FAMILIES[-1]


def _graph(space: str, seed: int, tmp_path):
    arch = get_space(space).sample(random.Random(seed))
    net = Network(arch, SPACE_FLAVOUR[space], BUILTIN_SETTING.num_classes, list(BUILTIN_SETTING.stride_plan)).eval()
    plain, _ = fold(net, check=False)
    return arch, plain, export_onnx(plain, tmp_path / f"{space}{seed}.onnx", (1, 3, SIZE, SIZE))


@pytest.mark.parametrize("space,seed", [("scarlet", 0), ("scarlet", 7), ("fairnas", 3)])
def test_the_kinds_account_for_every_multiply_add(space, seed, tmp_path):
    arch, plain, path = _graph(space, seed, tmp_path)
    kinds, macs = graph_families(path)
    assert sum(macs.values()) == count_macs(plain, SIZE)
    assert macs["pointwise (1x1)"] > macs["depthwise"] > 0 and macs["stem"] > 0 and macs["classifier"] > 0
    assert ("SE" in macs) == ("se" in str(arch)), (arch, macs)


@pytest.mark.parametrize("runtime", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    not HAS_OPENVINO, reason="OpenVINO is not installed"))])
def test_every_convolution_layer_of_a_runtime_is_given_its_kind(runtime, tmp_path):
    """The runtimes rename what they fuse (ONNX Runtime names a convolution with its activation after the
    activation's output): the convolutions' time must still land in their kinds, not in "other"."""
    arch, _, path = _graph("scarlet", 7, tmp_path)
    kinds, macs = graph_families(path)
    prof = (onnxruntime_profile(path, SIZE, kinds, 1, iterations=5) if runtime == "onnxruntime"
            else openvino_profile(path, SIZE, kinds, 1, iterations=5))
    assert {k for k in macs} <= set(prof), (macs, prof)
    assert prof.get(OTHER, 0.0) < 0.5 * sum(prof.values()), prof
