"""The command line (nasdeploy/cli/): options each run as a user would with their effect checked, and errors as one
line with a non-zero exit code, never a traceback."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from nasdeploy.data import SMALL_INPUT_STRIDES, write_image_folder
from nasdeploy.nas.supernet_checkpoint import load_checkpoint
from nasdeploy.zoo import load_network, save_checkpoint

from .conftest import run_cli
from .helpers import spread


def test_zoo_and_info_as_json_and_tables():
    r = run_cli("zoo", "--json")
    assert r.returncode == 0, r.stderr
    zoo = json.loads(r.stdout)
    assert len(zoo) == 18 and {z["name"] for z in zoo} >= {"fairnas_a", "scarlet_b", "fairnas_c_se_0.5_transfer"}
    r = run_cli("zoo")
    assert r.returncode == 0 and "326.85" in r.stdout  # the SCARLET-B note: its definition counts 326.85M MACs
    r = run_cli("info", "fairnas_a", "--json")
    info = json.loads(r.stdout)
    assert r.returncode == 0 and info["params"] == 4651352 and info["macs"] == 388122848
    assert run_cli("info", "scarlet_c").returncode == 0


@pytest.fixture()
def stabilized(tmp_path):
    """A SCARLET subnet with stabilizers on its skips, some pushed through residual blocks (so folding inverts
    them), and input-dependent outputs."""
    from .test_fold import ARCH_PUSH, stabilized as make

    net = make(ARCH_PUSH, seed=3)
    save_checkpoint(net, tmp_path / "sub.pt")
    return net, tmp_path / "sub.pt"


def test_fold_command_writes_the_same_function_and_honours_max_condition(stabilized, tmp_path):
    net, path = stabilized
    r = run_cli("fold", str(path), str(tmp_path / "plain.pt"))
    assert r.returncode == 0, r.stderr
    plain = load_network(tmp_path / "plain.pt")
    x = torch.randn(4, 3, 28, 28)
    with torch.no_grad():
        ref, out = net(x), plain(x)
    assert spread(ref) > 1e-3 and float((out - ref).abs().max() / ref.abs().max()) < 1e-4
    assert getattr(plain, "folded", False)
    r = run_cli("fold", str(path), str(tmp_path / "refused.pt"), "--max-condition", "1.0000001")
    assert r.returncode == 2 and "condition" in r.stderr and not (tmp_path / "refused.pt").exists(), r.stderr


def test_fold_weights_option_loads_them_into_the_zoo_model(tmp_path, official_ckpt):
    r = run_cli("fold", "fairnas_a", str(tmp_path / "a.pt"), "--weights", str(official_ckpt("fairnas_a", 1)))
    assert r.returncode == 0, r.stderr
    import nasdeploy

    ref = nasdeploy.create_model("fairnas_a", weights=official_ckpt("fairnas_a", 1))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert float((load_network(tmp_path / "a.pt")(x) - ref(x)).abs().max() / ref(x).abs().max()) < 1e-3


def test_export_no_fold_and_data(stabilized, tmp_path):
    import onnx

    _, path = stabilized
    images = write_image_folder(tmp_path / "imgs" / "val", "val", per_class=2, size=28).parent
    r = run_cli("export", str(path), "--no-fold", "--data", str(images), "--parity-images", "12",
                "--out", str(tmp_path / "raw"))
    assert r.returncode == 0, r.stderr
    assert run_cli("export", str(path), "--parity-images", "12", "--out", str(tmp_path / "fold")).returncode == 0
    raw = json.loads((tmp_path / "raw" / "parity.json").read_text())
    assert raw["folded"] is False and raw["fold"] is None
    assert raw["parity"][0]["images"] == 12  # 2 per class of the folder, 10 classes, capped at 12

    def convs(d):
        return [n.op_type for n in onnx.load(str(tmp_path / d / "model.onnx")).graph.node].count("Conv")
    assert convs("raw") > convs("fold")  # the stabilizers' 1x1 convolutions are still there


def test_verify_limit_json_and_tolerance(tmp_path):
    folder = write_image_folder(tmp_path / "val", "val", per_class=3, size=64)
    r = run_cli("verify", "fairnas_a_se_transfer", "--data", str(folder), "--limit", "7", "--json", str(tmp_path / "v.json"),
                "--tolerance", "100", "--no-progress")
    out = json.loads((tmp_path / "v.json").read_text())
    assert out["images"] == 7 and out["tolerance"] == 100.0
    assert r.returncode == (0 if out["passed"] in (True, None) else 1), r.stderr
    if out["reference_top1"] is not None:
        assert out["passed"]  # any top-1 is within 100 points


def test_train_supernet_options_reach_the_run(tmp_path):
    out = tmp_path / "run"
    r = run_cli("train-supernet", "--space", "scarlet", "--steps", "2", "--batch-size", "4", "--lr", "0.02",
                "--weight-decay", "0.0001", "--label-smoothing", "0.05", "--sampler", "uniform",
                "--path-batches", "separate", "--grad-mode", "visits", "--no-zero-init-residual", "--grad-clip", "2",
                "--stabilizer-bn", "--warm-start", "0", "--seed", "5", "--no-progress", "--out", str(out))
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(out / "supernet.pt")
    tc = ck["train_config"]
    assert (tc["lr"], tc["weight_decay"], tc["label_smoothing"], tc["sampler"], tc["path_batches"], tc["grad_mode"],
            tc["zero_init_residual"], tc["grad_clip"], tc["stabilizer_bn"], tc["seed"]) == \
        (0.02, 0.0001, 0.05, "uniform", "separate", "visits", False, 2.0, True, 5)
    assert ck["step"] == 2 and len(ck["history"]) == 2
    assert any("stabilizer" in k and ".bn." in k for k in ck["model"]), "no BN after the stabilizers"


def test_latency_validate_seed_chooses_the_architectures(tmp_path):
    from nasdeploy.latency import Settings, measure_table

    lut = tmp_path / "lut.json"
    measure_table(Settings("fairnas", "cpu", "onnxruntime", 1, "fp32", 28, list(SMALL_INPUT_STRIDES), 10, warmup=1,
                           repeats=2, rounds=1), lut, progress=False)
    archs = []
    for seed in ("1", "2"):
        r = run_cli("latency-table", "validate", str(lut), "--archs", "3", "--seed", seed, "--rounds", "1",
                    "--no-progress")
        assert r.returncode == 0, r.stderr
        archs.append(json.loads((tmp_path / "lut.validation.json").read_text())["archs"][:3])
    assert archs[0] != archs[1]


def test_pipeline_out_option_overrides_the_config(tmp_path):
    from .test_pipeline import tiny

    cfg = tiny(tmp_path, [], "cfg")
    r = run_cli("pipeline", "--config", str(cfg), "--out", str(tmp_path / "elsewhere"), "--stop-after", "supernet",
                "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "elsewhere" / "stage_supernet.json").exists() and not (tmp_path / "cfg").exists()
    assert not (tmp_path / "elsewhere" / "stage_latency.json").exists()  # --stop-after


def test_cli_errors_are_one_line():
    cases = [("info", "nope"), ("bogus-command",), ("info",)]
    for args in cases:
        r = run_cli(*args)
        assert r.returncode != 0, args
        lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
        assert len(lines) == 1 and "Traceback" not in r.stderr, (args, r.stderr)


def test_cli_malformed_arch_is_one_line(tmp_path):
    card = tmp_path / "bad.toml"
    card.write_text('format_version = 1\nname = "x"\nspace = "fairnas"\nflavour = "fairnas"\narch = "k7e3-k9e9"\n')
    r = run_cli("info", str(card))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "layer 1" in r.stderr


# ----------------------------------------------------------------- bad input, tried as a new user would

def _image_folder(root, classes: int = 10):
    """DIR/train and DIR/val of tiny images (2 per class, 28 px), ``classes`` classes."""
    for split in ("train", "val"):
        write_image_folder(root / split, split, per_class=2, size=28)
        for extra in sorted((root / split).iterdir())[classes:]:
            shutil.rmtree(extra)
    return root


def _manifest(folder, **change):
    """A manifest as `nasdeploy export` writes one, with ``change`` applied (``engine_KEY``: its engine's KEY)."""
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.export.manifest import FORMAT, FORMAT_VERSION

    engine = {"backend": "onnxruntime", "precision": "fp32", "device": "cpu", "files": {"model.onnx": "0" * 64},
              "batch_range": [1, None]}
    m = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": "n.pt", "name": "n",
         "input": BUILTIN_SETTING.as_dict(), "folded": True, "pytorch": {"file": "model.pt", "sha256": "0" * 64},
         "engines": {"onnxruntime:fp32": engine}}
    for key, value in change.items():
        if key.startswith("engine_"):
            engine[key[len("engine_"):]] = value
        else:
            m[key] = value
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


def _corrupt_png(t):
    root = _image_folder(t / "imgs")
    for cls in sorted((root / "train").iterdir()):  # one broken file per class: the one batch (16) reads some
        (cls / "00000.png").write_bytes(b"not a png")
    return (["train-supernet", "--space", "fairnas", "--data", root, "--out", t / "run", "--steps", "1",
             "--batch-size", "16", "--input-size", "28", "--no-progress"],
            f"{root}/train/", "is not a readable image (UnidentifiedImageError): remove it or replace it")


def _relative_data_recorded(t):
    _image_folder(t / "fm32")
    r = run_cli("train-supernet", "--space", "fairnas", "--data", "fm32", "--out", "sn", "--steps", "1",
                "--batch-size", "4", "--input-size", "28", "--workers", "0", "--no-progress", cwd=t)
    assert r.returncode == 0, r.stderr
    recorded = load_checkpoint(t / "sn" / "supernet.pt")["train_config"]["data"]
    assert recorded == str((t / "fm32").resolve())  # so that a search from any directory finds it
    (t / "fm32").rename(t / "moved")
    (t / "elsewhere").mkdir()
    return (["search", "--supernet", "../sn/supernet.pt", "--latency-target", "5ms", "--out", "s", "--no-progress"],
            f"data folder {recorded} does not exist: the supernet ../sn/supernet.pt records it", "pass --data",
            "elsewhere")


def _truncated_checkpoint(t):
    torch.save({"w": torch.zeros(1000)}, t / "n.pt")
    (t / "n.pt").write_bytes((t / "n.pt").read_bytes()[:300])
    return ["export", t / "n.pt", "--out", t / "e"], f"{t / 'n.pt'} is not a readable PyTorch checkpoint"


def _text_as_checkpoint(t):
    (t / "n.pt").write_text("garbage\n")
    return ["bench", t / "n.pt", "--no-progress"], f"{t / 'n.pt'} is not a readable PyTorch checkpoint (neither"


def _bad_arch_token(t):
    (t / "bad.toml").write_text('format_version = 1\nname = "x"\nspace = "fairnas"\nflavour = "fairnas"\n'
                                'arch = "k7e3-k9e9"\n')
    return ["export", t / "bad.toml", "--out", t / "e"], "layer 1 (32->32, stride 1): 'k9e9' is not allowed"


def _small_net(t):
    """A 10-class network for 28 px images, saved as a nasdeploy checkpoint."""
    import random

    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import get_space

    net = Network(get_space("fairnas").sample(random.Random(1)), "fairnas", 10, SMALL_INPUT_STRIDES)
    save_checkpoint(net.eval(), t / "n.pt")
    return t / "n.pt"


def _symlink_loop(t):
    root = _image_folder(t / "imgs")
    cls = sorted((root / "val").iterdir())[0]
    (cls / "loop").symlink_to("..")
    return (["verify", _small_net(t), "--data", root, "--no-progress"],
            f"{cls / 'loop'} is a link to {(root / 'val').resolve()}, which is inside the data folder")


def _card(t, extra: str = "", name: str = "c.toml"):
    (t / name).write_text('format_version = 1\nname = "c"\nspace = "fairnas"\nflavour = "fairnas"\n'
                          f'arch = "{"-".join(["k3e3"] * 19)}"\n' + extra)
    return t / name


def _table(t, median, space: str = "fairnas"):
    """A complete latency table of 28 px fairnas blocks, one entry's median set to ``median``."""
    from nasdeploy.data import BUILTIN_SETTING
    from nasdeploy.latency.table import FORMAT, FORMAT_VERSION
    from nasdeploy.nas.space import get_space

    sp = get_space(space)
    entry = {"median": 0.01, "p10": 0.01, "p90": 0.01, "p95": 0.01, "p99": 0.01, "mean": 0.01, "repeats": 5}
    layers = [{c.token: dict(entry) for c in sp.choices_at(i)} for i in range(sp.num_layers)]
    first = next(iter(layers[3]))
    layers[3][first]["median"] = median
    d = {"format": FORMAT, "format_version": FORMAT_VERSION, "space": space, "device": "cpu",
         "backend": "onnxruntime", "batch": 1, "dtype": "fp32", "input_size": 28,
         "stride_plan": list(BUILTIN_SETTING.stride_plan), "num_classes": 10, "stem": dict(entry),
         "head": dict(entry), "layers": layers, "calibration": None}
    (t / "lut.json").write_text(json.dumps(d).replace("NaN", "NaN"))
    return t / "lut.json", f"layer 3 {first}"


def _bad_median(t, median, command):
    lut, where = _table(t, median)
    args = (["search", "--accuracy-proxy", "--lut", lut, "--latency-target", "5ms", "--input-size", "28",
             "--space", "fairnas", "--out", t / "s", "--no-progress"] if command == "search"
            else ["latency-table", "validate", lut, "--no-progress"])
    return args, f"latency table {lut}: {where} has a median of {median!r}"


def _altered_export(t):
    e = _manifest(t / "e")
    (e / "model.pt").write_bytes(b"not what was exported")
    (e / "model.onnx").write_bytes(b"not what was exported")
    return ["bench", e, "--no-progress"], f"{e / 'model.onnx'} changed after it was exported"


def _resume_past_steps(t):
    r = run_cli("train-supernet", "--space", "fairnas", "--out", t / "sn", "--steps", "2", "--batch-size", "4",
                "--ckpt-every", "1", "--no-progress")
    assert r.returncode == 0, r.stderr
    return (["train-supernet", "--space", "fairnas", "--out", t / "sn", "--steps", "1", "--resume", "--no-progress"],
            f"{t / 'sn' / 'checkpoint.pt'} is at step 2, beyond --steps 1")


def _negative_toml_steps(t):
    (t / "p.toml").write_text("[supernet]\nsteps = -5\n")
    return ["pipeline", "--config", t / "p.toml", "--no-progress"], "supernet.steps must be at least 1, got -5"


def _export_into_a_file(t):
    (t / "f").write_text("a file")
    return ["export", "fairnas_a", "--onnx", "--out", t / "f"], f"--out {t / 'f'} is a file, not a folder"


def _file_as_folder(t):
    (t / "f").write_text("a file")
    return ["bench", "fairnas_a", "--json", t / "f" / "b.json", "--no-progress"], \
        f"--json {t / 'f' / 'b.json'}: {t / 'f'} is a file, so nothing can be written under it"


def _outside_manifest(t, how: str):
    """An export folder whose manifest names a file outside it: by '..', by an absolute path, or by a link."""
    (t / "ex").mkdir()
    (t / "ex" / "model.onnx").write_bytes(b"elsewhere")
    if how == "link":
        e = _manifest(t / "e")
        (e / "model.pt").write_bytes(b"x")
        (e / "model.onnx").symlink_to(t / "ex" / "model.onnx")
        from nasdeploy.export.manifest import sha256

        m = json.loads((e / "manifest.json").read_text())
        m["pytorch"]["sha256"] = sha256(e / "model.pt")
        m["engines"]["onnxruntime:fp32"]["files"] = {"model.onnx": sha256(t / "ex" / "model.onnx")}
        (e / "manifest.json").write_text(json.dumps(m))
        return e, f"{e / 'model.onnx'} leads out of the export folder"
    name = "../ex/model.onnx" if how == "dotdot" else str(t / "ex" / "model.onnx")
    e = _manifest(t / "e", engine_files={name: "0" * 64})
    return e, f"{e}/manifest.json is not a nasdeploy export manifest: engine onnxruntime:fp32 names the file " \
              f"'{name}': an export's files are inside its folder"


BAD_INPUT = {
    # each: tmp_path -> (arguments, the message's first words, [more it must say], [the folder it runs from])
    "corrupt png in a training folder": _corrupt_png,
    "manifest engines a list": lambda t: (["bench", _manifest(t / "e", engines=[]), "--no-progress"],
                                          f"{t / 'e'}/manifest.json is not a nasdeploy export manifest: engines must "
                                          "be a table of", "; export again"),
    "manifest engine a string": lambda t: (["bench", _manifest(t / "e", engines={"onnxruntime:fp32": "model.onnx"})],
                                           f"{t / 'e'}/manifest.json is not a nasdeploy export manifest: engine "
                                           "onnxruntime:fp32 must be a table"),
    "manifest files a list": lambda t: (["verify", _manifest(t / "e", engine_files=["model.onnx"]), "--data", t],
                                        f"{t / 'e'}/manifest.json is not a nasdeploy export manifest: engine "
                                        "onnxruntime:fp32: files must be a table"),
    "bench a folder without manifest": lambda t: (["bench", t, "--no-progress"],
                                                  f"{t} is a folder but not an export (no manifest.json): export a "
                                                  "model into it with `nasdeploy export`"),
    "verify a folder without manifest": lambda t: (["verify", t, "--data", t],
                                                   f"{t} is a folder but not an export (no manifest.json)"),
    "supernet data recorded relative": _relative_data_recorded,
    "one-class folder": lambda t: (["train-supernet", "--data", _image_folder(t / "one", classes=1), "--out",
                                    t / "run", "--steps", "1", "--input-size", "28", "--no-progress"],
                                   f"{t / 'one' / 'train'} has 1 class: a classifier needs at least 2"),
    "missing data folder": lambda t: (["train-supernet", "--data", t / "nope", "--out", t / "run", "--no-progress"],
                                      f"data folder {t / 'nope'} does not exist"),
    "latency target without units": lambda t: (["search", "--accuracy-proxy", "--latency-target", "5", "--out",
                                                t / "s", "--no-progress"], "latency target '5' needs a unit"),
    "truncated checkpoint": _truncated_checkpoint,
    "text file as checkpoint": _text_as_checkpoint,
    "architecture with a bad token": _bad_arch_token,
    "cuda without a gpu": lambda t: (["train-supernet", "--device", "cuda", "--out", t / "run", "--no-progress"],
                                     "--device cuda but no CUDA device is visible here: use --device cpu"),
    # round four: nothing silently wrong, nothing outside an export folder, output paths checked first
    "a link back into the data folder": _symlink_loop,
    "card whose weights file is missing": lambda t: (
        ["export", _card(t, '[checkpoint]\nfile = "w.pt"\n'), "--out", t / "e"],
        f"card {t / 'c.toml'} names its weights w.pt, which is not beside it"),
    "bench an export whose files were altered": _altered_export,
    "latency table with a negative median": lambda t: _bad_median(t, -0.1, "search"),
    "latency table with a NaN median": lambda t: _bad_median(t, float("nan"), "validate"),
    "latency table with a string median": lambda t: _bad_median(t, "fast", "search"),
    "card with a stride plan no input takes": lambda t: (
        ["info", _card(t, "stride_plan = [3, 2, 2, 2, 1, 2]\n")],
        f"{t / 'c.toml'}: stride_plan [3, 2, 2, 2, 1, 2] is not the plan 224 px inputs take"),
    "negative learning rate": lambda t: (["train-supernet", "--out", t / "r", "--lr=-1", "--no-progress"],
                                         "--lr must be positive, got -1.0"),
    "label smoothing of 2": lambda t: (["train-supernet", "--out", t / "r", "--label-smoothing", "2",
                                        "--no-progress"], "--label-smoothing must be at least 0 and below 1, got 2.0"),
    "negative weight decay": lambda t: (["train-supernet", "--out", t / "r", "--weight-decay=-1", "--no-progress"],
                                        "--weight-decay must be 0 or more, got -1.0"),
    "verify the built-in images with a 1000-class model": lambda t: (
        ["verify", "fairnas_a", "--data", "fashion-mnist", "--no-progress"],
        "the built-in fashion-mnist test images: 10 classes, but fairnas_a predicts 1000"),
    "tensorrt on the cpu": lambda t: (["latency-table", "--backend", "tensorrt", "--device", "cpu", "--out",
                                       t / "l.json"], "backend tensorrt cannot run fp32 on cpu here: the tensorrt "
                                                      "backend runs on cuda, not cpu"),
    "a model name as the paper writes it": lambda t: (["bench", "FairNAS-A", "--no-progress"],
                                                      "unknown model 'FairNAS-A': did you mean fairnas_a?"),
    "export of an export folder": lambda t: (["export", _manifest(t / "e"), "--out", t / "o"],
                                             f"{t / 'e'} is an export folder (bench or verify it"),
    "info of a data folder": lambda t: (["info", _image_folder(t / "imgs")], f"{t / 'imgs'} is a data folder, "
                                                                              "not a model"),
    "negative steps in a pipeline config": _negative_toml_steps,
    "resume past the steps asked": _resume_past_steps,
    "export into a file": _export_into_a_file,
    "a 300-character output name": lambda t: (["fold", "scarlet_a", t / ("n" * 300 + ".pt")],
                                              "OUTPUT: the name nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn... is 303 bytes long"),
    "bench json under a file": _file_as_folder,
    "bench plot onto a folder": lambda t: (["bench", "fairnas_a", "--plot", t, "--no-progress"],
                                           f"--plot {t} is a folder: give a file name"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_corpus(case, tmp_path):
    """Bad input a new user would try: one line on stderr that says what is wrong (and what to do), exit code 2,
    no traceback and no warning."""
    import warnings

    if case == "cuda without a gpu" and torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: there is no missing GPU to report")
    args, start, *more = BAD_INPUT[case](tmp_path)
    cwd = tmp_path / more.pop() if len(more) == 2 else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = run_cli(*args, cwd=cwd)
    command = str(args[0])
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.stderr.startswith(f"nasdeploy {command}: error: {start}"), r.stderr
    assert all(m in r.stderr for m in more), r.stderr
    assert not [w for w in caught if "worker" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.parametrize("command", ["bench", "verify"])
@pytest.mark.parametrize("how", ["dotdot", "absolute", "link"])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused(command, how, tmp_path):
    """An export folder is exactly its files: a manifest that names one by '..', by an absolute path or through a
    link leading out of the folder is refused in one line, exit 2, before anything runs."""
    e, start = _outside_manifest(tmp_path, how)
    args = ["bench", e, "--no-progress"] if command == "bench" else ["verify", e, "--data", "fashion-mnist",
                                                                      "--no-progress"]
    r = run_cli(*args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"nasdeploy {command}: error: {start}"), r.stderr
