"""Tiny on-disk datasets for the data tests: image folders, IDX (Fashion-MNIST) files, CIFAR batches."""
import gzip
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, size=(12, 10), color=(200, 30, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> Path:
    """IDX file: magic (0, 0, type 0x08 = uint8, ndim), big-endian dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


def make_fashion_mnist(root: Path, n_train=20, n_test=10, gz=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, (n,), dtype=np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", x, gz)
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", y, gz)
        out[split] = (x, y)
    return out


def make_cifar(root: Path, num_classes=10, n_per_batch=4, seed=0) -> dict:
    """The python-batches folder: pickled dicts with a (N, 3072) uint8 'data' array and labels."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-10-batches-py" if num_classes == 10 else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]} if num_classes == 10 \
        else {"train": ["train"], "test": ["test"]}
    key = "labels" if num_classes == 10 else "fine_labels"
    out = {}
    for split, files in names.items():
        xs, ys = [], []
        for name in files:
            x = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
            y = rng.integers(0, num_classes, n_per_batch).tolist()
            with open(folder / name, "wb") as f:
                pickle.dump({"data": x, key: y, "batch_label": name}, f)
            xs.append(x.reshape(-1, 3, 32, 32))
            ys += y
        out[split] = (np.concatenate(xs), np.array(ys))
    return out


def make_image_folder(root: Path, splits=("train", "val"), classes=("cat", "dog"), n=3, size=(12, 10)) -> Path:
    colors = [(250, 10, 10), (10, 250, 10), (10, 10, 250)]
    for split in splits:
        for ci, c in enumerate(classes):
            for i in range(n):
                write_image(root / split / c / f"{i}.png", size=size, color=colors[ci % 3])
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "imgs")


@pytest.fixture
def fakes():
    """The writers above, for tests to build their own tiny datasets."""
    return SimpleNamespace(write_image=write_image, write_idx=write_idx, make_fashion_mnist=make_fashion_mnist,
                           make_cifar=make_cifar, make_image_folder=make_image_folder)
