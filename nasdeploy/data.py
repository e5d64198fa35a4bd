"""Data: a model's input setting, the built-in Fashion-MNIST subset, ImageNet-layout folders, and the three splits.

Every model and every data set meets in an ``InputSetting``: image size, stride plan, classes and preprocessing.
The small-input rule (images under 64 px take a stride plan of total stride 16) lives here and nowhere else.

Three splits, always: ``train`` (training, INT8 calibration), ``search_val`` (carved from the training images by
a fixed seed, or a folder's ``search_val/``: BN recalibration, every supernet estimate and every choice a search
makes) and ``test`` (a folder's ``val/``, the built-in set's last 4,000 images: every reported figure, the accuracy
gate, ``verify``). Nothing that chooses reads the test split.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .errors import DataError

ASSETS = Path(__file__).resolve().parent / "assets"
FASHION_MNIST = ASSETS / "fashion_mnist_24k.npz"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
# 24,000 real Fashion-MNIST images (2,400 per class, a fixed seeded subset of the 70k): the first 20,000 are the
# training images (of which SEARCH_VAL_FRACTION is the search-validation split), the last 4,000 the test split.
FASHION_TRAIN = 20_000
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff", ".JPEG")
BUILTIN = "fashion-mnist"
SPLITS = ("train", "search_val", "test", "train_all")  # train_all: every training image (train and search_val)
SEARCH_VAL_FRACTION = 0.2  # of the training images, at most SEARCH_VAL_MAX (FairNAS: 50,000 of ImageNet's)
SEARCH_VAL_MAX = 10_000
SPLIT_SEED = 0
SMALL_INPUT_LIMIT = 64  # images smaller than this (in px) take the small-input stride plan
# The small-input stride plan (the first stride of each of the six stages): total stride 16 instead of 32 (28 -> 14
# -> 7 -> 4 -> 2 px); the 224 plan would shrink 28 px to 1 px before the last stage.
SMALL_INPUT_STRIDES: tuple[int, ...] = (2, 2, 1, 1, 2, 1)


# ------------------------------------------------------------------ the input setting

@dataclass(frozen=True)
class InputSetting:
    """What a model takes: image size, stride plan, classes and preprocessing (timm's pretrained_cfg in spirit).

    Evaluation preprocessing: Resize(size / crop_pct) -> CenterCrop(size) -> ToTensor -> Normalize(mean, std);
    the official FairNAS/SCARLET one is the default (224 px, crop 0.875, ImageNet statistics)."""

    size: int = 224
    num_classes: int = 1000
    stride_plan: tuple[int, ...] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875

    @classmethod
    def for_images(cls, size: int, num_classes: int, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> "InputSetting":
        """The setting for ``size`` px images: the small-input stride plan and no crop under SMALL_INPUT_LIMIT."""
        if size < 8:
            raise DataError(f"an input size of {size} px is too small: give at least 8")
        small = size < SMALL_INPUT_LIMIT
        return cls(size, num_classes, tuple(SMALL_INPUT_STRIDES) if small else None, tuple(mean), tuple(std),
                   1.0 if small else 0.875)

    @classmethod
    def default_for(cls, size: int, num_classes: int | None = None) -> "InputSetting":
        """``size`` px images of ``num_classes`` classes (default: 10 for small images, as the built-in set; 1000
        otherwise, as ImageNet)."""
        return cls.for_images(size, num_classes or (10 if size < SMALL_INPUT_LIMIT else 1000))

    @property
    def small(self) -> bool:
        return self.stride_plan is not None

    def describe(self) -> str:
        plan = f", strides {list(self.stride_plan)}" if self.stride_plan else ""
        return f"{self.size} px, {self.num_classes} classes{plan}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["stride_plan"] = list(self.stride_plan) if self.stride_plan else None
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "InputSetting":
        try:
            return cls(int(d["size"]), int(d["num_classes"]), tuple(d["stride_plan"]) if d.get("stride_plan") else None,
                       tuple(float(v) for v in d.get("mean", IMAGENET_MEAN)),
                       tuple(float(v) for v in d.get("std", IMAGENET_STD)), float(d.get("crop_pct", 0.875)))
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"malformed input setting {d!r} ({e}): rewrite the file with this nasdeploy") from None

    def eval_transform(self):
        from torchvision import transforms

        return transforms.Compose([
            transforms.Resize(int(round(self.size / self.crop_pct))),
            transforms.CenterCrop(self.size),
            transforms.ToTensor(),
            transforms.Normalize(self.mean, self.std),
        ])

    def train_transform(self):
        from torchvision import transforms

        if self.small:  # a random-resized crop of a 32 px image keeps too little of it
            crop = [transforms.Resize(self.size), transforms.RandomCrop(self.size, padding=max(1, self.size // 8))]
        else:
            crop = [transforms.RandomResizedCrop(self.size)]
        return transforms.Compose([*crop, transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                   transforms.Normalize(self.mean, self.std)])


# the built-in images: 28 px grey, replicated to the three channels the stem expects, Fashion-MNIST statistics
BUILTIN_SETTING = InputSetting(28, len(FASHION_CLASSES), tuple(SMALL_INPUT_STRIDES), (FASHION_MEAN,) * 3,
                               (FASHION_STD,) * 3, 1.0)
IMAGENET_SETTING = InputSetting()


def official_eval_transform(size: int = 224):
    """Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet), as both official verify scripts."""
    return InputSetting(size).eval_transform()


# ------------------------------------------------------------------ the built-in data set

@lru_cache(maxsize=1)
def _fashion_arrays() -> tuple[np.ndarray, np.ndarray]:
    if not FASHION_MNIST.exists():
        raise DataError(f"the built-in data set is missing ({FASHION_MNIST}): reinstall nasdeploy")
    with np.load(FASHION_MNIST) as z:
        return z["images"], z["labels"]


def search_val_count(n_train: int) -> int:
    return min(SEARCH_VAL_MAX, max(1, int(round(SEARCH_VAL_FRACTION * n_train))))


@lru_cache(maxsize=16)
def carve(n_train: int, seed: int = SPLIT_SEED) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(train indices, search-validation indices) of ``n_train`` training images, both sorted: a fixed seeded part
    becomes the search-validation split."""
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(10_007 + seed)).tolist()
    k = search_val_count(n_train)
    return tuple(sorted(perm[k:])), tuple(sorted(perm[:k]))


def indices_hash(idx: Sequence[int]) -> str:
    """A short hash of image indices (a split's identity, recorded with every run that used it)."""
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


def builtin_indices(split: str) -> np.ndarray:
    """The built-in set's image indices of ``split`` (train, search_val, test, train_all)."""
    if split == "test":
        return np.arange(FASHION_TRAIN, len(_fashion_arrays()[1]))
    if split == "train_all":
        return np.arange(FASHION_TRAIN)
    train, val = carve(FASHION_TRAIN)
    return np.asarray(train if split == "train" else val)


def _check_split(split: str) -> str:
    split = "test" if split == "val" else split
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}': choose one of {', '.join(SPLITS)}")
    return split


def fashion_mnist(split: str = "train", limit: int | None = None) -> TensorDataset:
    """The built-in set as 3-channel normalised 28x28 tensors (the stem expects RGB): the BUILTIN_SETTING."""
    images, labels = fashion_mnist_images(split, limit)
    t = torch.from_numpy(images).float().div_(255.0).sub_(FASHION_MEAN).div_(FASHION_STD)
    t = t.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return TensorDataset(t, torch.from_numpy(labels.astype(np.int64)))


def fashion_mnist_images(split: str = "test", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 images and labels of a split of the built-in set (to write image folders or feed transforms)."""
    images, labels = _fashion_arrays()
    idx = builtin_indices(_check_split(split))
    if limit is not None:
        idx = idx[:limit]
    return images[idx], labels[idx]


class _Transformed(Dataset):
    """Built-in images through a setting's transform (a 224 px model shown the built-in images)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i]).convert("RGB")), int(self.labels[i])


# ------------------------------------------------------------------ image folders

def check_image_folder(root: str | Path) -> list[str]:
    """The class names of an ImageNet-layout folder (one subfolder per class), or a DataError saying what is wrong."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data folder {root} is a file, not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        loose = [p for p in root.iterdir() if p.suffix in IMAGE_EXTENSIONS]
        what = "images directly inside it" if loose else "nothing usable"
        raise DataError(f"data folder {root} has {what}: it needs one subfolder per class holding that class's images")
    empty = [c for c in classes if not any(f.suffix in IMAGE_EXTENSIONS for f in (root / c).iterdir())]
    if empty:
        raise DataError(f"data folder {root}: class folder(s) {', '.join(empty[:5])} hold no images")
    if len(classes) < 2:
        raise DataError(f"{root} has 1 class: a classifier needs at least 2 (one subfolder per class)")
    return classes


def _loader(path: str):
    """PIL's loader as torchvision's, with a file that is not an image named in one line."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path} is not a readable image ({type(e).__name__}): remove it or replace it") from None


# ------------------------------------------------------------------ loading in worker processes

def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, a container's CPU set), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def loader_workers(requested: int) -> int:
    """Data-loading worker processes for ``requested``: never more than the usable cores (more would only compete
    with each other and with training, and PyTorch warns about them)."""
    return max(0, min(requested, usable_cores()))


class _Unreadable:
    """An item that could not be read, carried out of a worker process as a value: an exception raised there comes
    back with the worker's whole traceback in its message."""

    def __init__(self, message: str) -> None:
        self.message = message


class _Reported(Dataset):
    """``dataset`` with the DataError of an item (an unreadable image) returned as an ``_Unreadable``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset[i]
        except DataError as e:
            return _Unreadable(str(e))


def _collate(samples: list):
    from torch.utils.data import default_collate

    bad = next((s for s in samples if isinstance(s, _Unreadable)), None)
    return bad if bad is not None else default_collate(samples)


class Loader:
    """A ``DataLoader`` over ``dataset`` with ``loader_workers(workers)`` worker processes (kept alive between
    epochs with ``persistent``), whose unreadable image ends the iteration with the one-line DataError that names
    it, in this process, wherever the image was read. Other keywords go to ``DataLoader``."""

    def __init__(self, dataset: Dataset, workers: int = 0, persistent: bool = False, **kw) -> None:
        self.workers = loader_workers(workers)
        self.loader = DataLoader(_Reported(dataset), num_workers=self.workers, collate_fn=_collate,
                                 persistent_workers=persistent and self.workers > 0, **kw)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            if isinstance(batch, _Unreadable):
                raise DataError(batch.message)
            yield batch


def class_files(class_dir: str | Path, root: str | Path) -> list[str]:
    """The image files of one class folder of ``root``, its subfolders included. A linked folder is followed when
    it leads out of ``root`` (each real folder once); one that leads back into ``root`` (to the class folder, one
    above it, or another class's images) would count images twice or under the wrong class, and is refused."""
    class_real, root_real = os.path.realpath(class_dir), os.path.realpath(root)
    out: list[str] = []
    seen: set[str] = set()

    def inside(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder + os.sep)

    def walk(d: str) -> None:
        real = os.path.realpath(d)
        if real in seen:
            return
        seen.add(real)
        for e in sorted(os.scandir(d), key=lambda e: e.name):
            if e.is_dir():
                target = os.path.realpath(e.path)
                if e.is_symlink() and (inside(class_real, target) or inside(target, root_real)):
                    raise DataError(f"{e.path} is a link to {target}, which is inside the data folder {root}: its "
                                    "images would be counted again or under the wrong class; remove the link")
                walk(e.path)
            elif e.name.endswith(IMAGE_EXTENSIONS):
                out.append(e.path)

    walk(str(class_dir))
    return out


def image_folder(root: str | Path, transform=None) -> Dataset:
    from torchvision.datasets import ImageFolder

    class _Folder(ImageFolder):
        @staticmethod
        def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            return [(f, idx) for c, idx in sorted(class_to_idx.items())
                    for f in class_files(Path(directory) / c, directory)]

    check_image_folder(root)
    return _Folder(str(root), transform=transform, loader=_loader)


def resolve_split(data: str | Path, split: str) -> Path:
    """``DIR/train``, ``DIR/search_val`` or ``DIR/val`` (the test split) of an ImageNet-layout root (``DIR`` itself
    if it is already a class folder set)."""
    root = Path(data)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist: give an ImageNet-layout folder or '{BUILTIN}'")
    sub = root / {"test": "val", "val": "val"}.get(split, split)
    if sub.is_dir():
        return sub
    if (root / "train").is_dir() or (root / "val").is_dir():
        raise DataError(f"data folder {root} has no '{sub.name}/' subfolder")
    return root


def _folder_split(data: str, split: str, transform) -> Dataset:
    """A split of a user's folder: train/ minus the search-validation part, that part (or search_val/), val/."""
    root = Path(data)
    if split == "test":
        return image_folder(resolve_split(data, "test"), transform)
    if split == "search_val" and (root / "search_val").is_dir():
        return image_folder(root / "search_val", transform)
    ds = image_folder(resolve_split(data, "train"), transform)
    if split == "train_all" or (root / "search_val").is_dir():  # a search_val/ folder: train/ is all training
        return ds
    train, val = carve(len(ds))
    return Subset(ds, list(train if split == "train" else val))


def dataset(data: str, split: str, setting: InputSetting, augment: bool = False) -> Dataset:
    """One split of ``data`` (the built-in set or an ImageNet-layout folder), preprocessed for ``setting``
    (``augment``: the training transform, for training on a folder)."""
    split = _check_split(split)
    if data == BUILTIN:
        if setting.size == BUILTIN_SETTING.size and setting.mean == BUILTIN_SETTING.mean:
            return fashion_mnist(split)
        images, labels = fashion_mnist_images(split)
        return _Transformed(images, labels, setting.eval_transform())
    return _folder_split(data, split, setting.train_transform() if augment else setting.eval_transform())


def data_record(data: str) -> str:
    """``data`` as a run records it: the built-in name as it is, a folder as its absolute path (a relative one would
    name another folder, or none, when the run is read from another directory)."""
    return data if data == BUILTIN else str(Path(data).resolve())


def num_classes(data: str) -> int:
    if data == BUILTIN:
        return len(FASHION_CLASSES)
    return len(check_image_folder(resolve_split(data, "train")))


def split_record(data: str) -> dict:
    """What a run's splits were: sizes, the seed, and a hash of the search-validation indices."""
    if data == BUILTIN:
        n_train, n_test = FASHION_TRAIN, len(_fashion_arrays()[1]) - FASHION_TRAIN
        has_own = False
    else:
        root = Path(data)
        has_own = (root / "search_val").is_dir()
        n_train = sum(1 for _ in _image_files(resolve_split(data, "train")))
        n_test = sum(1 for _ in _image_files(resolve_split(data, "test")))
    if has_own:
        n_val = sum(1 for _ in _image_files(Path(data) / "search_val"))
        return {"train": n_train, "search_val": n_val, "test": n_test, "seed": None,
                "search_val_source": "the folder's search_val/", "search_val_hash": None}
    train, val = carve(n_train)
    return {"train": len(train), "search_val": len(val), "test": n_test, "seed": SPLIT_SEED,
            "search_val_source": "carved from the training images", "search_val_hash": indices_hash(val)}


def _image_files(root: Path):
    return (p for c in sorted(root.iterdir()) if c.is_dir() for p in c.iterdir() if p.suffix in IMAGE_EXTENSIONS)


def labelled_batches(data: str | None, split: str, setting: InputSetting, images: int, batch: int = 64,
                     start: int = 0) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """Images ``start .. start + images`` of a split with their labels, preprocessed for ``setting``, in batches;
    and the number of classes of the data. ``data`` None: the built-in set."""
    data = data or BUILTIN
    ds = dataset(data, split, setting)
    sub = Subset(ds, list(range(min(start, len(ds)), min(start + images, len(ds)))))
    return [(x, y) for x, y, *_ in DataLoader(sub, batch_size=batch)], _classes(ds)


def _classes(ds: Dataset) -> int:
    while isinstance(ds, Subset):
        ds = ds.dataset
    return len(ds.classes) if hasattr(ds, "classes") else len(FASHION_CLASSES)


def real_batches(data: str | None, split: str, setting: InputSetting, images: int = 256,
                 batch: int = 64) -> list[torch.Tensor]:
    """Real images of a split preprocessed for ``setting`` (labels dropped)."""
    return [x for x, _ in labelled_batches(data, split, setting, images, batch)[0]]


def write_image_folder(out: str | Path, split: str = "test", per_class: int = 10, size: int = 64) -> Path:
    """Write built-in images as an ImageNet-layout folder of PNGs (tests, demos of `verify`)."""
    from PIL import Image

    out = Path(out)
    images, labels = fashion_mnist_images("test" if split == "val" else split)
    counts = {c: 0 for c in range(len(FASHION_CLASSES))}
    for img, lab in zip(images, labels):
        c = int(lab)
        if counts[c] >= per_class:
            continue
        d = out / f"{c:02d}_{FASHION_CLASSES[c].replace('/', '_').replace(' ', '_')}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).convert("RGB").resize((size, size), Image.BILINEAR).save(d / f"{counts[c]:05d}.png")
        counts[c] += 1
        if all(v >= per_class for v in counts.values()):
            break
    return out
