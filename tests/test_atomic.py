"""Failures injected after work has started never leave a half-written artefact where a user would read it."""
from __future__ import annotations

import json

import pytest
import torch

import nasdeploy.export.api as export_api
import nasdeploy.latency.measure as measure
from nasdeploy.data import SMALL_INPUT_STRIDES
from nasdeploy.errors import NasDeployError
from nasdeploy.export.api import ExportOptions, export_model
from nasdeploy.io import write_atomic, write_json
from nasdeploy.latency import Settings, measure_table
from nasdeploy.latency.table import LatencyTable
from nasdeploy.nas.net import Network
from nasdeploy.zoo import load_network, save_checkpoint

ARCH = "k3e3-k5e6-k3e3-k7e3-k3e6-k5e3-k3e3-k7e6-k3e3-k5e3-k3e6-k3e3-k5e6-k3e3-k7e3-k3e3-k3e6-k5e3-k3e3"


class Injected(RuntimeError):
    pass


def _boom(*a, **k):
    raise Injected("injected failure")


def _leftovers(folder, name):
    return [p.name for p in folder.iterdir() if p.name.startswith(f".{name}")]


def test_a_failed_write_keeps_the_previous_file_and_no_temp(tmp_path):
    p = tmp_path / "a.json"
    write_json(p, {"v": 1})

    def partial(tmp):
        tmp.write_text('{"v": ')
        raise Injected

    with pytest.raises(Injected):
        write_atomic(p, partial)
    assert json.loads(p.read_text()) == {"v": 1} and _leftovers(tmp_path, "a.json") == []


@pytest.mark.parametrize("existing", [False, True])
def test_export_failing_after_its_artefacts_are_written_leaves_nothing(tmp_path, monkeypatch, existing):
    net = Network(ARCH, "fairnas", 10, SMALL_INPUT_STRIDES).eval()
    save_checkpoint(net, tmp_path / "m.pt")
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "model.onnx").write_text("the previous export")
    monkeypatch.setattr(export_api, "_write_manifest", _boom)  # after model.pt, model.onnx, parity.json
    with pytest.raises(Injected):
        export_model(str(tmp_path / "m.pt"), out, opt=ExportOptions(parity_images=8, force=existing))
    assert _leftovers(tmp_path, "out") == []
    if existing:  # --force replaces only once the new export is complete
        assert (out / "model.onnx").read_text() == "the previous export"
    else:
        assert not out.exists()


def test_fold_cli_failing_while_saving_leaves_no_output(tmp_path, monkeypatch):
    from nasdeploy.cli import main

    net = Network(ARCH, "fairnas", 10, SMALL_INPUT_STRIDES).eval()
    save_checkpoint(net, tmp_path / "m.pt")

    def half_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half")
        raise Injected

    monkeypatch.setattr(torch, "save", half_save)
    assert main(["fold", str(tmp_path / "m.pt"), str(tmp_path / "plain.pt")]) == 3  # an internal error, one line
    assert not (tmp_path / "plain.pt").exists() and _leftovers(tmp_path, "plain.pt") == []


def test_latency_table_killed_mid_way_keeps_its_entries_and_resumes_to_the_full_table(tmp_path, monkeypatch):
    s = Settings("fairnas", "cpu", "onnxruntime", 1, "fp32", 28, list(SMALL_INPUT_STRIDES), 10, warmup=1,
                 repeats=3, rounds=1)
    real = measure.time_module
    calls = {"n": 0}

    def dies_on_the_fourth(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Injected
        return real(*a, **k)

    monkeypatch.setattr(measure, "time_module", dies_on_the_fourth)
    with pytest.raises(Injected):
        measure_table(s, tmp_path / "lut.json", positions=[17, 18], progress=False)
    partial = LatencyTable.load(tmp_path / "lut.json")  # what is on disk is a complete, loadable table
    assert partial.stem is not None and len(partial.layers[17]) == 2
    monkeypatch.setattr(measure, "time_module", real)
    t = measure_table(s, tmp_path / "lut.json", positions=[17, 18], progress=False)
    assert set(t.layers[17]) == set(t.layers[18]) == {"k3e3", "k3e6", "k5e3", "k5e6", "k7e3", "k7e6"}
    assert t.layers[17]["k3e3"] == partial.layers[17]["k3e3"]  # entries already measured are kept, not redone
    assert _leftovers(tmp_path, "lut.json") == []


def test_a_truncated_checkpoint_is_refused_not_read(tmp_path):
    net = Network(ARCH, "fairnas", 10, SMALL_INPUT_STRIDES).eval()
    p = save_checkpoint(net, tmp_path / "m.pt")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(NasDeployError):
        load_network(p)
