"""Input settings (nasdeploy/data.py): the small-input rule and its strides, the settings' records, the built-in
setting; the splits themselves are tested in tests/test_splits.py."""
from __future__ import annotations

import json

import pytest

from nasdeploy.data import (BUILTIN, BUILTIN_SETTING, IMAGENET_SETTING, SMALL_INPUT_LIMIT, SMALL_INPUT_STRIDES,
                            InputSetting, data_record, loader_workers, num_classes, usable_cores)
from nasdeploy.errors import DataError


@pytest.mark.parametrize("size", [8, 28, 32, SMALL_INPUT_LIMIT - 1, SMALL_INPUT_LIMIT, 224])
def test_the_small_input_rule(size):
    """Under 64 px: total stride 16 (the small-input plan) and no crop; from 64 px: the official plan and crop."""
    s = InputSetting.for_images(size, 10)
    small = size < SMALL_INPUT_LIMIT
    assert s.small is small and s.size == size
    assert s.stride_plan == (SMALL_INPUT_STRIDES if small else None)
    assert s.crop_pct == (1.0 if small else 0.875)


def test_the_small_plan_keeps_a_28px_image_at_2px_before_pooling():
    """Total stride 16 instead of 32: the official plan would shrink 28 px to 1 px before the last stages."""
    import torch

    from nasdeploy.nas.net import Network

    arch = "-".join(["k3e3"] * 19)
    x = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        assert Network(arch, "fairnas", 10, BUILTIN_SETTING.stride_plan).eval().features(x).shape[-2:] == (2, 2)
        assert Network(arch, "fairnas", 10).eval().features(x).shape[-2:] == (1, 1)
    assert BUILTIN_SETTING.stride_plan == SMALL_INPUT_STRIDES and BUILTIN_SETTING.size == 28


def test_a_setting_round_trips_through_its_record():
    for s in (BUILTIN_SETTING, IMAGENET_SETTING, InputSetting.for_images(32, 100), InputSetting.default_for(28)):
        assert InputSetting.from_dict(json.loads(json.dumps(s.as_dict()))) == s
    assert BUILTIN_SETTING.describe() == "28 px, 10 classes, strides [2, 2, 1, 1, 2, 1]"
    assert IMAGENET_SETTING.describe() == "224 px, 1000 classes"


def test_the_default_classes_follow_the_size():
    assert InputSetting.default_for(28).num_classes == 10 and InputSetting.default_for(224).num_classes == 1000
    assert InputSetting.default_for(224, 37).num_classes == 37
    assert num_classes("fashion-mnist") == 10


@pytest.mark.parametrize("bad", [{"size": "big", "num_classes": 10}, {"num_classes": 10}, {"size": 28}, "28px"])
def test_too_small_images_and_malformed_records_are_refused(bad):
    with pytest.raises(DataError, match="an input size of 7 px is too small: give at least 8"):
        InputSetting.for_images(7, 10)
    with pytest.raises(DataError, match="malformed input setting"):
        InputSetting.from_dict(bad)


def test_loader_workers_never_exceed_the_usable_cores():
    """More worker processes than the cores this process may use only compete (and PyTorch warns about them)."""
    import os

    assert usable_cores() == len(os.sched_getaffinity(0))
    assert loader_workers(1000) == usable_cores() and loader_workers(0) == 0 and loader_workers(1) == 1


def test_a_folder_is_recorded_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data_record("fm32") == str(tmp_path.resolve() / "fm32")
    assert data_record(BUILTIN) == BUILTIN
