"""Three splits, always: train, search-validation (carved from the training images by a fixed seed, or a folder's
search_val/) and test (val/), disjoint; nothing that chooses ever reads the test split."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from nasdeploy import data as D


def _rows(x: torch.Tensor) -> set[str]:
    return {hashlib.sha1(r.numpy().tobytes()).hexdigest() for r in x.reshape(len(x), -1)}


def test_builtin_splits_are_disjoint_and_cover_the_set():
    parts = {s: D.builtin_indices(s) for s in ("train", "search_val", "test")}
    assert [len(parts[s]) for s in ("train", "search_val", "test")] == [16_000, 4_000, 4_000]
    allidx = np.concatenate(list(parts.values()))
    assert len(set(allidx.tolist())) == len(allidx) == 24_000
    train_all = set(D.builtin_indices("train_all").tolist())
    assert train_all == set(parts["train"].tolist()) | set(parts["search_val"].tolist())
    rec = D.split_record(D.BUILTIN)
    assert (rec["train"], rec["search_val"], rec["test"], rec["seed"]) == (16_000, 4_000, 4_000, 0)
    assert rec["search_val_hash"] == D.indices_hash(parts["search_val"])


@pytest.mark.parametrize("n", [10, 137, 20_000, 90_000])
def test_carving_is_fixed_sized_and_disjoint_for_any_size(n):
    train, val = D.carve(n)
    assert len(val) == D.search_val_count(n) and len(train) + len(val) == n
    assert not set(train) & set(val) and D.carve(n) == (train, val)  # the same every time
    assert len(val) <= D.SEARCH_VAL_MAX


def _folder(root, per_class: int, with_search_val: bool = False):
    D.write_image_folder(root / "train", "train", per_class=per_class, size=28)
    D.write_image_folder(root / "val", "test", per_class=3, size=28)
    if with_search_val:
        D.write_image_folder(root / "search_val", "search_val", per_class=2, size=28)
    return root


def test_a_folders_search_validation_is_a_fixed_part_of_train(tmp_path):
    root = str(_folder(tmp_path / "imgs", per_class=5))
    s = D.BUILTIN_SETTING
    tr, sv, te = (D.dataset(root, k, s) for k in ("train", "search_val", "test"))
    assert (len(tr), len(sv), len(te)) == (40, 10, 30)
    files = {k: {ds.dataset.samples[i][0] for i in ds.indices} for k, ds in (("train", tr), ("search_val", sv))}
    assert not files["train"] & files["search_val"]
    assert D.split_record(root)["search_val_source"] == "carved from the training images"


def test_a_folders_own_search_val_is_used(tmp_path):
    root = str(_folder(tmp_path / "imgs", per_class=5, with_search_val=True))
    assert len(D.dataset(root, "search_val", D.BUILTIN_SETTING)) == 20
    assert len(D.dataset(root, "train", D.BUILTIN_SETTING)) == 50  # all of train/: the folder says what is what
    assert D.split_record(root)["search_val_source"] == "the folder's search_val/"


def test_an_unreadable_image_is_named_in_one_line(tmp_path):
    from .conftest import run_cli

    root = _folder(tmp_path / "imgs", per_class=2)
    bad = next((root / "val").iterdir()) / "broken.png"
    bad.write_bytes(b"not an image at all")
    r = run_cli("export", "fairnas_b_se_transfer", "--data", str(root), "--parity-images", "100", "--out",
                str(tmp_path / "o"))
    assert r.returncode == 2 and "broken.png is not a readable image" in r.stderr and r.stderr.count("\n") == 1, \
        r.stderr


def test_the_search_reads_no_test_image(tmp_path, monkeypatch):
    """A search on a real (tiny) supernet: every split it asks for, and every image its evaluator scores, is
    checked against the test split."""
    from nasdeploy.latency import LatencyTable, Settings, measure_table
    from nasdeploy.nas.train import TrainConfig, train_supernet
    from nasdeploy.search import SearchConfig, SearchInputs, search

    sn = train_supernet(TrainConfig(space="fairnas", steps=2, batch_size=8, ckpt_every=10, device="cpu"),
                        tmp_path / "sn", progress=False).path
    lut = tmp_path / "lut.json"
    measure_table(Settings.for_input("fairnas", "cpu", "onnxruntime", 1, "fp32", D.BUILTIN_SETTING, warmup=1,
                                     repeats=2, rounds=1), lut, progress=False)
    asked: list[str] = []
    real = D.dataset

    def spy(data, split, setting, augment=False):
        asked.append(split)
        return real(data, split, setting, augment)

    monkeypatch.setattr(D, "dataset", spy)
    seen: list[torch.Tensor] = []
    from nasdeploy.search import estimate as E

    real_estimate = E.estimate

    def spy_estimate(net, batches, device="cpu"):
        seen.extend(x for x, _ in batches)
        return real_estimate(net, batches, device)

    monkeypatch.setattr("nasdeploy.search.job.estimate", spy_estimate)
    target = 1.5 * LatencyTable.load(lut).fastest()[1]
    search(SearchInputs(supernet=str(sn), lut=str(lut)), SearchConfig(
        target_ms=target, population=2, evaluations=2, calib_batches=1, eval_images=200, finalists=2, race_images=300,
        race_calib_images=64, time_rounds=1, time_repeats=5),
           tmp_path / "s", progress=False)
    monkeypatch.undo()
    assert asked and "test" not in asked and "search_val" in asked, asked
    test_images = _rows(D.fashion_mnist("test").tensors[0])
    assert seen and not _rows(torch.cat(seen)) & test_images


def test_the_accuracy_gate_reads_no_test_image(tmp_path, monkeypatch):
    """Export's and bench's accuracy gates choose which engine ships: every image they judge is checked against the
    test split (they read the first images of search-validation, and say so in their record)."""
    import random

    from nasdeploy import gate as G
    from nasdeploy.bench.run import BenchOptions, GateSpec, bench
    from nasdeploy.export.api import ExportOptions, export_model
    from nasdeploy.nas.net import Network
    from nasdeploy.nas.space import get_space
    from nasdeploy.quantize import QuantOptions
    from nasdeploy.zoo import save_checkpoint

    from .helpers import randomize

    net = randomize(Network(get_space("fairnas").sample(random.Random(3)), "fairnas", 10, D.SMALL_INPUT_STRIDES), 3)
    save_checkpoint(net, tmp_path / "n.pt")
    seen: list[torch.Tensor] = []
    splits: list[str] = []
    real = G.gate_of

    def spy(run, held, batch_range, budget):
        seen.extend(held.images)
        splits.append(held.split)
        return real(run, held, batch_range, budget)

    monkeypatch.setattr(G, "gate_of", spy)
    r = export_model(str(tmp_path / "n.pt"), tmp_path / "e", opt=ExportOptions(
        parity_images=8, gate_images=300, budget=100.0, engines=[("onnxruntime", "int8")],
        quant=QuantOptions(images=16)))
    bench([str(tmp_path / "n.pt")], BenchOptions("cpu", ["onnxruntime"], [1], dtypes=["fp32", "int8"], repeats=2,
                                                 rounds=1, progress=False, gate=GateSpec(images=200, budget=100.0),
                                                 quant=QuantOptions(images=16)))
    monkeypatch.undo()
    assert splits and set(splits) == {"search_val"}, splits
    assert r.gates["onnxruntime:int8"]["split"] == "search_val"
    assert len(seen) and not _rows(torch.cat(seen)) & _rows(D.fashion_mnist("test").tensors[0])
