"""Data: ImageNet-layout folders, the built-in Fashion-MNIST subset, and the official transforms."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .errors import DataError

ASSETS = Path(__file__).resolve().parent / "assets"
FASHION_MNIST = ASSETS / "fashion_mnist_24k.npz"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
# 24,000 real Fashion-MNIST images (2,400 per class, a fixed seeded subset of the 70k):
# the first 20,000 train, the last 4,000 are held out.
FASHION_TRAIN = 20_000
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff", ".JPEG")
BUILTIN = "fashion-mnist"


@dataclass(frozen=True)
class DataInfo:
    name: str
    num_classes: int
    input_size: int
    classes: tuple[str, ...]


def _fashion_arrays() -> tuple[np.ndarray, np.ndarray]:
    if not FASHION_MNIST.exists():
        raise DataError(f"the built-in data set is missing ({FASHION_MNIST}): reinstall nasdeploy")
    with np.load(FASHION_MNIST) as z:
        return z["images"], z["labels"]


def fashion_mnist(split: str = "train", limit: int | None = None) -> TensorDataset:
    """The built-in set as 3-channel normalised 28x28 tensors (the stem expects RGB)."""
    images, labels = _fashion_arrays()
    sl = slice(0, FASHION_TRAIN) if split == "train" else slice(FASHION_TRAIN, None)
    x, y = images[sl], labels[sl]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    t = torch.from_numpy(x).float().div_(255.0).sub_(FASHION_MEAN).div_(FASHION_STD)
    t = t.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return TensorDataset(t, torch.from_numpy(y.astype(np.int64)))


def fashion_mnist_images(split: str = "val", limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 images and labels of the built-in set (to write image folders or feed official transforms)."""
    images, labels = _fashion_arrays()
    sl = slice(0, FASHION_TRAIN) if split == "train" else slice(FASHION_TRAIN, None)
    x, y = images[sl], labels[sl]
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def official_eval_transform(size: int = 224):
    """Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize(ImageNet), as both official verify scripts."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(int(round(size * 256 / 224))),
        transforms.CenterCrop(size),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def train_transform(size: int = 224):
    from torchvision import transforms

    return transforms.Compose([
        transforms.RandomResizedCrop(size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


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
    return classes


def image_folder(root: str | Path, transform=None) -> Dataset:
    from torchvision.datasets import ImageFolder

    check_image_folder(root)
    return ImageFolder(str(root), transform=transform)


def resolve_split(data: str | Path, split: str) -> Path:
    """``DIR/train`` or ``DIR/val`` of an ImageNet-layout root (``DIR`` itself if it is already a class folder set)."""
    root = Path(data)
    if not root.exists():
        raise DataError(f"data folder {root} does not exist: give an ImageNet-layout folder or '{BUILTIN}'")
    sub = root / split
    if sub.is_dir():
        return sub
    if (root / "train").is_dir() or (root / "val").is_dir():
        raise DataError(f"data folder {root} has no '{split}/' subfolder")
    return root


def write_image_folder(out: str | Path, split: str = "val", per_class: int = 10, size: int = 64) -> Path:
    """Write built-in images as an ImageNet-layout folder of PNGs (tests, demos of `verify`)."""
    from PIL import Image

    out = Path(out)
    images, labels = fashion_mnist_images(split)
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
