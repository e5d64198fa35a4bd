"""Atomic writes and provenance (nasdeploy/io.py): files land whole or not at all, JSON is laid out for people,
and every artefact says who wrote it."""
from __future__ import annotations

import json

import pytest

from nasdeploy.io import atomic_path, provenance, write_json, write_text


def test_atomic_writes_land_whole_and_leave_no_temp(tmp_path):
    p = write_json(tmp_path / "sub" / "a.json", {"x": [1, 2], "p": tmp_path})
    assert json.loads(p.read_text()) == {"x": [1, 2], "p": str(tmp_path)} and p.read_text().endswith("\n")
    assert write_text(tmp_path / "t.txt", "hello").read_text() == "hello"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not (tmp_path / "b.bin").exists()
    assert sorted(q.name for q in tmp_path.iterdir()) == ["sub", "t.txt"]
    assert [q.name for q in (tmp_path / "sub").iterdir()] == ["a.json"]


def test_json_is_indented_in_insertion_order(tmp_path):
    """Reports and tables are read by people: two-space indent, keys in the order the code wrote them."""
    p = write_json(tmp_path / "a.json", {"z": 1, "a": [1]})
    assert p.read_text() == '{\n  "z": 1,\n  "a": [\n    1\n  ]\n}\n'


def test_provenance_default_command_is_the_command_line(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/nasdeploy", "export", "fairnas_a", "--trt"])
    assert provenance()["command"] == "nasdeploy export fairnas_a --trt"


def test_provenance_says_who_wrote_it():
    p = provenance("nasdeploy export x")
    assert p["command"] == "nasdeploy export x"
    for k in ("written", "nasdeploy", "python", "torch", "host", "cpu"):
        assert p[k], k
    assert "T" in p["written"] and p["written"].endswith("+00:00")
    assert provenance()["command"]  # default: the running command line
