"""Readers for the on-disk dataset formats: IDX (Fashion-MNIST), CIFAR python batches, image folders.

Each reader returns plain tensors or path lists and raises an error that names the missing file and the fix.
"""
from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from convvit.data.images import IMG_EXTENSIONS, walk_images

__all__ = [
    "CIFAR10_CLASSES", "CIFAR100_CLASSES", "FASHION_MNIST_CLASSES",
    "find_cifar_dir", "find_fashion_mnist_dir", "find_image_classes", "read_cifar", "read_fashion_mnist",
    "read_idx", "scan_image_folder",
]

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()

_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_DIRS = {10: "cifar-10-batches-py", 100: "cifar-100-python"}
_CIFAR_FILES = {
    10: {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    100: {"train": ["train"], "test": ["test"]},
}
# IDX element type codes (third byte of the magic number).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---------------------------------------------------------------------------------------------------- IDX / MNIST
def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an IDX file (gzipped or not, as in the (Fashion-)MNIST distributions) into a tensor."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise OSError(f"cannot read IDX file '{path}': {e}. Fix: download the file again.") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"'{path}' is not an IDX file (bad magic number). Fix: download the file again.")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(
            f"IDX file '{path}' is truncated or corrupt: header says shape {shape} ({expected} bytes), "
            f"file holds {len(data) - offset} bytes. Fix: download the file again."
        )
    arr = np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)
    return torch.from_numpy(arr.astype(arr.dtype.newbyteorder("=")))


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):  # torchvision / Debian / some mirrors
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist_dir(path: str | os.PathLike) -> Path:
    """The folder holding the Fashion-MNIST IDX files: ``path`` itself, ``path/FashionMNIST/raw`` (torchvision's
    layout) or ``path/raw``."""
    path = Path(path)
    candidates = [path, path / "FashionMNIST" / "raw", path / "raw", path / "fashion-mnist"]
    for folder in candidates:
        if all(_find_file(folder, stem) for pair in _FMNIST_FILES.values() for stem in pair):
            return folder
    wanted = ", ".join(f"{s}.gz" for pair in _FMNIST_FILES.values() for s in pair)
    raise FileNotFoundError(
        f"Fashion-MNIST not found under '{path}' (looked in {', '.join(str(c) for c in candidates)} for {wanted}). "
        "Fix: install the Debian package (apt-get install dataset-fashion-mnist, files in "
        "/usr/share/datasets/fashion-mnist), point --data.path at the folder holding the IDX files, or "
        "download them with --data.download true."
    )


def read_fashion_mnist(path: str | os.PathLike, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, 28, 28) uint8 and labels (N,) int64 of the 'train' or 'test' split."""
    folder = find_fashion_mnist_dir(path)
    image_stem, label_stem = _FMNIST_FILES[split]
    images = read_idx(_find_file(folder, image_stem))
    labels = read_idx(_find_file(folder, label_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split} files in '{folder}' do not match: images {tuple(images.shape)}, "
            f"labels {tuple(labels.shape)}. Fix: download the files again."
        )
    return images.unsqueeze(1).contiguous(), labels.long()


# ---------------------------------------------------------------------------------------------------- CIFAR
def find_cifar_dir(path: str | os.PathLike, num_classes: int) -> Path:
    """The CIFAR python-batches folder: ``path`` itself or its child ``cifar-10-batches-py`` /
    ``cifar-100-python``."""
    path = Path(path)
    files = _CIFAR_FILES[num_classes]["train"] + _CIFAR_FILES[num_classes]["test"]
    for folder in (path, path / _CIFAR_DIRS[num_classes]):
        if all((folder / f).is_file() for f in files):
            return folder
    raise FileNotFoundError(
        f"CIFAR-{num_classes} not found at '{path}' (looked for {', '.join(files)} in it and in "
        f"'{path / _CIFAR_DIRS[num_classes]}'). Fix: point --data.path at the extracted "
        f"'{_CIFAR_DIRS[num_classes]}' folder (or its parent), or download it with --data.download true."
    )


def read_cifar(path: str | os.PathLike, split: str, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of CIFAR-10/100 'train' or 'test'.

    The batches are Python pickles (the official format): only read files from a source you trust.
    """
    folder = find_cifar_dir(path, num_classes)
    label_key = "labels" if num_classes == 10 else "fine_labels"
    images, labels = [], []
    for name in _CIFAR_FILES[num_classes][split]:
        try:
            with open(folder / name, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry[label_key], dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
            raise ValueError(
                f"CIFAR-{num_classes} batch '{folder / name}' is corrupt or not a CIFAR-{num_classes} batch ({e!r}). "
                "Fix: download and extract the python version of the dataset again."
            ) from e
    x, y = torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))
    if len(x) != len(y) or (len(y) and (y.min() < 0 or y.max() >= num_classes)):
        raise ValueError(f"CIFAR-{num_classes} {split} batches in '{folder}' have inconsistent labels.")
    return x, y


# ---------------------------------------------------------------------------------------------------- image folders
def find_image_classes(folder: str | os.PathLike) -> list[str]:
    """Sorted class-folder names directly under ``folder`` (hidden folders ignored)."""
    folder = Path(folder)
    if folder.is_file():
        raise NotADirectoryError(f"image folder '{folder}' is a file; a folder is needed. Fix: give the folder "
                                 "that holds one sub-folder of images per class")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder '{folder}' does not exist. Fix: create it with one sub-folder of images per class "
            "(ROOT/train/CLASS/*.jpg, ROOT/val/CLASS/*.jpg), or point --data.path at the right ROOT."
        )
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(
            f"image folder '{folder}' has no class sub-folders. Fix: put the images of each class in their own "
            f"sub-folder, e.g. '{folder / 'cat'}/1.jpg', '{folder / 'dog'}/2.jpg'."
        )
    return classes


def scan_image_folder(folder: str | os.PathLike, classes: list[str] | None = None) -> tuple[list[Path], list[int]]:
    """All images (recursive) under each class folder of ``folder`` and their labels (index into ``classes``).

    ``classes`` defaults to the folder's own classes; a folder whose class set differs from ``classes``, or a
    class folder without images, raises ValueError naming them.
    """
    folder = Path(folder)
    found = find_image_classes(folder)
    if classes is None:
        classes = found
    elif found != sorted(classes):
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        problems = ([f"missing {missing}"] if missing else []) + ([f"not in training {extra}"] if extra else [])
        raise ValueError(
            f"the classes in '{folder}' differ from the training classes: {'; '.join(problems)}. "
            "Fix: every split must have the same class folders (an empty folder is not allowed either)."
        )
    index = {c: i for i, c in enumerate(classes)}
    paths, labels, empty = [], [], []
    for c in found:
        files = sorted(walk_images(folder / c))
        if not files:
            empty.append(c)
        paths += files
        labels += [index[c]] * len(files)
    if empty:
        raise ValueError(
            f"class folder(s) without images in '{folder}': {', '.join(empty)} "
            f"(looked for {' '.join(IMG_EXTENSIONS)}). Fix: add images to them or remove the folders."
        )
    return paths, labels
