"""An export folder is the deployable unit: its manifest lists every engine's files and hashes; bench and verify run
exactly those files, refuse changed ones, and re-gate an INT8 engine gated on another instruction set."""
from __future__ import annotations

import json
import random

import pytest

from nasdeploy.data import BUILTIN_SETTING, write_image_folder
from nasdeploy.errors import ArtifactError
from nasdeploy.export.api import ExportOptions, export_model
from nasdeploy.export.manifest import ExportFolder, sha256
from nasdeploy.nas.net import Network
from nasdeploy.nas.space import get_space
from nasdeploy.quantize import QuantOptions
from nasdeploy.zoo import save_checkpoint

from .conftest import run_cli
from .helpers import randomize


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("manifest")
    net = randomize(Network(get_space("scarlet").sample(random.Random(8)), "scarlet", 10,
                            BUILTIN_SETTING.stride_plan), 8)
    save_checkpoint(net, d / "n.pt", setting=BUILTIN_SETTING)
    export_model(str(d / "n.pt"), d / "e", opt=ExportOptions(
        engines=[("onnxruntime", "fp32"), ("onnxruntime", "int8")], parity_images=16, gate_images=200,
        force_accuracy=True, quant=QuantOptions(images=16)))
    return d


def _copy(exported, tmp_path):
    import shutil

    shutil.copytree(exported / "e", tmp_path / "e")
    return tmp_path / "e"


def test_the_manifest_lists_every_engine_with_its_files_hashes_and_setting(exported):
    m = ExportFolder.open(exported / "e")
    assert set(m.engines) == {"onnxruntime:fp32", "onnxruntime:int8"}
    assert m.setting == BUILTIN_SETTING
    for e in m.engines.values():
        for name, digest in e["files"].items():
            assert sha256(exported / "e" / name) == digest
    isa = m.entry("onnxruntime:int8")["isa"]
    assert set(isa) == {"quantized_for", "calibrated_on", "gated_on"}
    assert m.entry("onnxruntime:int8")["gate"]["images"] == 200


def test_bench_of_an_export_times_exactly_its_files(exported, tmp_path):
    out = tmp_path / "b.json"
    r = run_cli("bench", str(exported / "e"), "--batch", "1", "--repeats", "3", "--rounds", "1", "--json", str(out),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = {f"{x['backend']}:{x['dtype']}": x for x in json.loads(out.read_text())["rows"]}
    m = ExportFolder.open(exported / "e")
    for engine in m.engines:
        assert rows[engine]["files"] == m.entry(engine)["files"], engine
    assert rows["torch-eager-fp32:fp32"]["files"] is None


def test_a_changed_file_is_refused(exported, tmp_path):
    e = _copy(exported, tmp_path)
    (e / "model.int8.onnx").write_bytes((e / "model.int8.onnx").read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match="changed after it was exported"):
        ExportFolder.open(e).runner("onnxruntime:int8")
    folder = write_image_folder(tmp_path / "imgs" / "val", "test", per_class=2, size=28).parent
    r = run_cli("verify", str(e), "--engine", "onnxruntime:int8", "--data", str(folder))
    assert r.returncode == 2 and "changed after it was exported" in r.stderr and r.stderr.count("\n") == 1


def test_not_an_export_is_one_line(tmp_path):
    for bad in (tmp_path / "nothing", tmp_path):
        with pytest.raises(ArtifactError):
            ExportFolder.open(bad)
    (tmp_path / "manifest.json").write_text("{trunc")
    with pytest.raises(ArtifactError, match="not readable JSON"):
        ExportFolder.open(tmp_path)


def _other_class(cls: str) -> dict:
    other = "vnni" if cls != "vnni" else "no-vnni"
    return {"machine": "x86_64", "flags": ["avx2", "fma"] + (["avx512_vnni"] if other == "vnni" else []),
            "int8_class": other, "description": f"x86_64 test CPU ({other})"}


def test_an_int8_engine_gated_on_another_instruction_set_is_gated_again(exported, tmp_path):
    """The manifest says the INT8 engine was gated on a CPU of the other INT8 class (faked): verify and bench say
    so in one line and score it again here; an engine gated on this CPU's class is not re-gated."""
    from nasdeploy.isa import this_cpu

    e = _copy(exported, tmp_path)
    m = json.loads((e / "manifest.json").read_text())
    m["engines"]["onnxruntime:int8"]["isa"]["gated_on"] = _other_class(this_cpu().int8_class)
    (e / "manifest.json").write_text(json.dumps(m))
    folder = write_image_folder(tmp_path / "imgs" / "val", "test", per_class=3, size=28).parent
    out = tmp_path / "v.json"
    # a folder of test images only: the gate decides, so it does not score them, and says so
    r = run_cli("verify", str(e), "--engine", "onnxruntime:int8", "--data", str(folder), "--json", str(out),
                "--no-progress")
    assert r.returncode == 0 and "could not run here" in r.stdout and "train/" in r.stdout, r.stdout
    assert json.loads(out.read_text())["gate"]["passed"] is None
    write_image_folder(folder / "train", "train", per_class=10, size=28)  # 100 images: 20 carved for the gate
    r = run_cli("verify", str(e), "--engine", "onnxruntime:int8", "--data", str(folder), "--json", str(out),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    v = json.loads(out.read_text())
    assert "gate was run again" in v["isa_note"] and "this CPU is" in v["isa_note"]
    assert (v["gate"]["images"], v["gate"]["split"], v["images"]) == (20, "search_val", 30)
    assert "gate was run again" in r.stdout and "search-val images" in r.stdout
    r = run_cli("verify", str(e), "--engine", "onnxruntime:fp32", "--data", str(folder), "--json", str(out),
                "--no-progress")
    assert json.loads(out.read_text())["isa_note"] is None  # float32: no instruction-set question
    b = tmp_path / "b.json"
    r = run_cli("bench", str(e), "--batch", "1", "--repeats", "3", "--rounds", "1", "--json", str(b), "--no-progress")
    d = json.loads(b.read_text())
    assert r.returncode == 0 and any("run again on this CPU" in n for n in d["isa_notes"])
    rows = {f"{x['backend']}:{x['dtype']}": x for x in d["rows"]}
    assert rows["onnxruntime:int8"]["accuracy"] is not None  # re-gated here
    r = run_cli("bench", str(exported / "e"), "--batch", "1", "--repeats", "3", "--rounds", "1", "--json", str(b),
                "--no-progress")
    assert json.loads(b.read_text())["isa_notes"] == []  # gated on this CPU's class: nothing to redo


def test_verify_uses_the_preprocessing_the_model_records(tmp_path):
    """A 28 px network of the built-in set, scored on a folder of the same images as PNGs: the recorded
    preprocessing (Fashion-MNIST statistics, no crop) turns every PNG back into exactly the tensor the network
    trains on, and verify's top-1 is the network's own on those tensors."""
    import hashlib

    import torch

    from nasdeploy.data import dataset, fashion_mnist
    from nasdeploy.verify import VerifyOptions, verify

    net = randomize(Network(get_space("fairnas").sample(random.Random(3)), "fairnas", 10,
                            BUILTIN_SETTING.stride_plan), 3)
    save_checkpoint(net, tmp_path / "n.pt", setting=BUILTIN_SETTING)
    root = write_image_folder(tmp_path / "imgs" / "val", "test", per_class=20, size=28).parent
    r = verify(str(tmp_path / "n.pt"), str(root), VerifyOptions(progress=False, workers=0))
    assert r.preprocessing["mean"] == list(BUILTIN_SETTING.mean)
    ds = dataset(str(root), "test", BUILTIN_SETTING)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.tensor([ds[i][1] for i in range(len(ds))])

    def rows(t):
        return {hashlib.sha1(v.numpy().tobytes()).hexdigest() for v in t}

    assert rows(x) <= rows(fashion_mnist("test").tensors[0])  # the very tensors the network is trained on
    with torch.no_grad():
        out = net(x)
    assert float((out - out.mean(0)).abs().max()) > 1e-3  # predictions that depend on the image
    expected = 100.0 * float((out.topk(1, 1).indices[:, 0] == y).float().mean())
    assert r.images == 200 and r.top1 == pytest.approx(expected)


def test_bench_runs_the_exported_file_not_a_rebuild(exported, tmp_path):
    """The export's model.onnx replaced by another network's graph (and the manifest's hash updated to it): bench
    must time and compare that file, so its row no longer matches the export's model.pt; a bench that rebuilt the
    engine from model.pt would show no difference."""
    from nasdeploy.onnxgraph import export_onnx

    e = _copy(exported, tmp_path)
    other = randomize(Network(get_space("scarlet").sample(random.Random(99)), "scarlet", 10,
                              BUILTIN_SETTING.stride_plan), 99)
    export_onnx(other, e / "model.onnx", (1, 3, 28, 28))
    m = json.loads((e / "manifest.json").read_text())
    m["engines"]["onnxruntime:fp32"]["files"]["model.onnx"] = sha256(e / "model.onnx")
    (e / "manifest.json").write_text(json.dumps(m))
    out = tmp_path / "b.json"
    r = run_cli("bench", str(e), "--backends", "onnxruntime", "--dtype", "fp32", "--batch", "1", "--repeats", "3",
                "--rounds", "1", "--json", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    row = next(x for x in json.loads(out.read_text())["rows"] if x["backend"] == "onnxruntime")
    assert row["files"]["model.onnx"] == sha256(e / "model.onnx")
    assert row["parity"]["max_rel"] > 1e-2  # another network's logits: the file itself ran


@pytest.mark.parametrize("threads", [1, 2])
def test_an_engine_ships_and_is_benched_with_the_threads_it_names(exported, tmp_path, threads):
    """An engine that names its threads (onnxruntime:fp32@N) is listed under that name with them in the manifest;
    the export folder's runner and `nasdeploy bench` of the folder run it with them, beside plain ONNX Runtime at
    the runtime's default threads (the reference every engine must beat)."""
    from nasdeploy.backends import Engine
    from nasdeploy.backends.base import runtime_threads

    name = f"onnxruntime:fp32@{threads}"
    export_model(str(exported / "n.pt"), tmp_path / "e", opt=ExportOptions(
        engines=[Engine("onnxruntime", "fp32", threads)], parity_images=8))
    m = ExportFolder.open(tmp_path / "e")
    assert list(m.engines) == [name] and m.entry(name)["threads"] == threads
    assert m.engine(name) == Engine("onnxruntime", "fp32", threads)
    assert m.runner(name).session.get_session_options().intra_op_num_threads == threads
    out = tmp_path / "b.json"
    r = run_cli("bench", str(tmp_path / "e"), "--batch", "1", "--repeats", "3", "--rounds", "1", "--json", str(out),
                "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    mine = next(x for x in rows if x["engine_threads"] == threads)
    assert mine["threads"] == threads and mine["files"] == m.entry(name)["files"]
    ref = [x for x in rows if x["backend"] == "onnxruntime" and x["engine_threads"] is None]
    if threads == runtime_threads():  # the engine is the reference as a user runs it: no second row
        assert not ref and mine["vs_reference"] == 1.0
    else:  # the reference, built for the run, as a user runs it
        assert ref[0]["threads"] == runtime_threads() and ref[0]["files"] is None and mine["vs_reference"]


@pytest.mark.parametrize("edit, says", [
    (lambda e: e.__setitem__("threads", 0), "threads must be a whole number"),
    (lambda e: e.__setitem__("threads", "2"), "threads must be a whole number"),
    (lambda e: e.__setitem__("threads", 3), "the name must say what it runs"),
])
def test_a_manifest_whose_threads_are_wrong_is_refused_in_one_line(exported, tmp_path, edit, says):
    e = _copy(exported, tmp_path)
    m = json.loads((e / "manifest.json").read_text())
    edit(m["engines"]["onnxruntime:fp32"])
    (e / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match=says) as err:
        ExportFolder.open(e)
    assert "\n" not in str(err.value)


def test_bench_times_every_engine_at_the_thread_counts_asked(exported, tmp_path):
    """`bench --threads 1`: every engine of the folder also at one thread, as ENGINE@1 rows of the same files; the
    JSON names the batch-1 serving layout that serves the most images on this machine's cores."""
    from nasdeploy.backends.base import runtime_threads

    out = tmp_path / "b.json"
    r = run_cli("bench", str(exported / "e"), "--batch", "1", "--repeats", "3", "--rounds", "1", "--threads", "1",
                "--json", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    rows = {(x["backend"], x["dtype"], x["engine_threads"]): x for x in res["rows"]}
    m = ExportFolder.open(exported / "e")
    for name in m.engines:
        e = m.engine(name)
        assert rows[(e.backend, e.dtype, None)]["threads"] == runtime_threads()
        if runtime_threads() > 1:
            one = rows[(e.backend, e.dtype, 1)]
            assert one["threads"] == 1 and one["files"] == m.entry(name)["files"]
    serving = res["serving"]
    assert serving and serving[0]["images_per_s"] == max(s["images_per_s"] for s in serving)
    assert all(s["instances"] * s["threads"] <= res["environment"]["cores"] for s in serving)
    assert "most images/s at batch 1" in r.stdout
    bad = run_cli("bench", str(exported / "e"), "--threads", "one")
    assert bad.returncode == 2 and "--threads takes a comma list" in bad.stderr
