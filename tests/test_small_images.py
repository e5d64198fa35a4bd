"""A user's folder of small images (32 px, ten classes) goes through every command with one input setting, recorded
once (by train-supernet) and agreeing at every step; the small-input stride plan applies to folders too."""
from __future__ import annotations

import json

import torch

from nasdeploy.data import InputSetting, write_image_folder

from .conftest import run_cli


def test_a_32px_folder_goes_through_every_command(tmp_path):
    root = tmp_path / "imgs"
    write_image_folder(root / "train", "train", per_class=12, size=32)
    write_image_folder(root / "val", "test", per_class=4, size=32)
    setting = InputSetting.for_images(32, 10)
    assert setting.stride_plan is not None  # the small-input plan, as for the built-in 28 px images

    r = run_cli("train-supernet", "--space", "fairnas", "--data", str(root), "--input-size", "32", "--steps", "2",
                "--batch-size", "8", "--workers", "0", "--out", str(tmp_path / "sn"), "--no-progress")
    assert r.returncode == 0, r.stderr
    ck = torch.load(tmp_path / "sn" / "supernet.pt", weights_only=False, map_location="cpu")
    recorded = InputSetting.from_dict(ck["input"])
    assert recorded == setting and ck["config"]["stride_plan"] == list(setting.stride_plan)
    assert ck["splits"]["search_val"] == 24 and ck["splits"]["train"] == 96

    lut = tmp_path / "lut.json"
    r = run_cli("latency-table", "--space", "fairnas", "--input-size", "32", "--num-classes", "10", "--repeats", "2",
                "--warmup", "1", "--rounds", "1", "--out", str(lut), "--no-progress")
    assert r.returncode == 0, r.stderr
    t = json.loads(lut.read_text())
    assert (t["input_size"], t["stride_plan"], t["num_classes"]) == (32, list(setting.stride_plan), 10)

    from nasdeploy.latency import LatencyTable

    target = f"{1.6 * LatencyTable.load(lut).fastest()[1]:.4f}ms"
    r = run_cli("search", "--supernet", str(tmp_path / "sn" / "supernet.pt"), "--lut", str(lut), "--latency-target",
                target, "--population", "2", "--evaluations", "2", "--calib-batches", "1", "--eval-images", "20",
                "--out", str(tmp_path / "s"), "--no-progress")
    assert r.returncode == 0, r.stderr + r.stdout
    from nasdeploy.zoo import Card

    card = Card.read(tmp_path / "s" / "best.toml")
    assert card.setting() == setting

    r = run_cli("export", str(tmp_path / "s" / "best.toml"), "--data", str(root), "--parity-images", "16", "--out",
                str(tmp_path / "e"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert InputSetting.from_dict(m["input"]) == setting

    out = tmp_path / "v.json"
    r = run_cli("verify", str(tmp_path / "e"), "--data", str(root), "--json", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    v = json.loads(out.read_text())
    assert v["images"] == 40 and InputSetting.from_dict(v["preprocessing"]) == setting

    r = run_cli("bench", str(tmp_path / "e"), "--batch", "1", "--repeats", "3", "--rounds", "1", "--no-progress",
                "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {x["backend"] for x in rows} >= {"torch-eager-fp32", "onnxruntime"}
