"""`verify` (nasdeploy/verify.py): top-1 equal to an independent evaluation with the official preprocessing, through
PyTorch, ONNX Runtime and an AOTInductor package alike; mismatched classes and bad folders refused in one line."""
import pytest
import torch
from PIL import Image

import nasdeploy
from nasdeploy.data import write_image_folder
from nasdeploy.errors import DataError
from nasdeploy.verify import VerifyOptions, verify

from .conftest import run_cli

MODEL = "fairnas_b_se_transfer"  # 10 classes, like the built-in data


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("imgs") / "val", per_class=3, size=40)


def _official_predictions(model, files) -> list[int]:
    """Independent of nasdeploy's evaluation: the official preprocessing and model, image by image."""
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with torch.no_grad():
        return [int(model(tf(Image.open(f).convert("RGB")).unsqueeze(0)).argmax(1)) for f in files]


@pytest.fixture(scope="module")
def oracle(folder, official_ckpt, tmp_path_factory):
    """The 30 images filed under the class the stand-in model predicts for each (one image moved into each class
    it never predicts, a miss): top-1 then follows the predictions image by image, so an evaluation that scored
    other inputs (a blank, a stale batch, another order) cannot reach it by the chance that random weights have
    of matching real labels. Returns (folder, checkpoint, expected top-1, largest share of one class)."""
    import shutil

    ck = official_ckpt(MODEL, 0)
    model = nasdeploy.create_model(MODEL, weights=ck).eval()
    classes = sorted(p.name for p in folder.iterdir())
    files = sorted(folder.rglob("*.png"))
    preds = _official_predictions(model, files)
    assert len(set(preds)) >= 2, "the stand-in weights must give predictions that depend on the image"
    by_class: dict[int, list] = {c: [] for c in range(len(classes))}
    for f, p in zip(files, preds):
        by_class[p].append(f)
    for c in by_class:
        if not by_class[c]:
            by_class[c].append(by_class[max(by_class, key=lambda k: len(by_class[k]))].pop())
    root = tmp_path_factory.mktemp("oracle") / "val"
    for c, fs in by_class.items():
        (root / classes[c]).mkdir(parents=True)
        for f in fs:
            shutil.copy(f, root / classes[c] / f"{f.parent.name}_{f.name}")
    ordered = sorted(root.rglob("*.png"))
    labels = [classes.index(f.parent.name) for f in ordered]
    hits = sum(p == y for p, y in zip(_official_predictions(model, ordered), labels))
    share = max(labels.count(c) for c in set(labels)) / len(labels)
    return root, ck, 100.0 * hits / len(labels), 100.0 * share


def test_verify_top1_equals_an_independent_official_evaluation(oracle):
    root, ck, expected, share = oracle
    assert expected > share + 10  # far above what one constant prediction would score on this folder
    r = verify(MODEL, str(root), VerifyOptions(str(ck), progress=False, workers=0))
    assert r.images == 30 and r.top1 == pytest.approx(expected)
    assert r.reference_top1 == 98.08 and r.passed is False  # random stand-in weights are not the published model


def test_verify_through_onnxruntime_matches_torch(oracle):
    root, ck, expected, _ = oracle
    a = verify(MODEL, str(root), VerifyOptions(str(ck), progress=False, workers=0))
    b = verify(MODEL, str(root), VerifyOptions(str(ck), backend="onnxruntime", progress=False, workers=0, batch_size=8))
    assert a.top1 == b.top1 == pytest.approx(expected) and a.top5 == b.top5


def test_verify_refuses_mismatched_classes_and_bad_folders(folder, tmp_path):
    with pytest.raises(DataError, match="10 classes, but fairnas_a predicts 1000"):
        verify("fairnas_a", str(folder), VerifyOptions(progress=False))
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "x.png")
    r = run_cli("verify", MODEL, "--data", str(flat))
    assert r.returncode == 2 and "one subfolder per class" in r.stderr and r.stderr.count("\n") == 1


def test_verify_through_an_aoti_package_on_the_cpu_matches_torch(oracle):
    """30 images in batches of 8: the package takes the ragged last batch of 6 (dynamic batch 1..8)."""
    root, ck, expected, _ = oracle
    a = verify(MODEL, str(root), VerifyOptions(str(ck), progress=False, workers=0))
    b = verify(MODEL, str(root), VerifyOptions(str(ck), backend="aoti", progress=False, workers=0, batch_size=8))
    assert b.images == a.images == 30 and b.top1 == a.top1 == pytest.approx(expected) and b.top5 == a.top5
