"""The dataset registry: one :class:`DatasetSpec` per dataset, registered here.

A new dataset is one :func:`register_dataset` call: a ``read(root, split)`` that returns uint8 images
``(N, C, H, W)`` and labels for "train" and "test", its class names, default image size, channels, mean/std,
default path and (optionally) a download function. :class:`~convvit.data.ImageDataModule` reads everything
it needs about a dataset from its spec.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from convvit.data.readers import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    FASHION_MNIST_CLASSES,
    find_cifar_dir,
    find_fashion_mnist_dir,
    read_cifar,
    read_fashion_mnist,
)

__all__ = ["DatasetSpec", "get_dataset", "list_datasets", "register_dataset"]

Reader = Callable[[Path, str], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class DatasetSpec:
    """What the data module needs to know about a dataset.

    ``kind`` is "tensors" (``read(root, split)`` gives uint8 images (N, C, H, W) and int labels of the "train"
    and "test" splits, held in memory), "folder" (image files laid out ``ROOT/SPLIT/CLASS/*``, classes found on
    disk) or "synthetic" (generated, classes ``class_0 ...``). ``mean``/``std`` None means ImageNet's.
    ``download(root)`` fetches the files into ``root`` when they are missing; ``download_path`` is the root
    used instead of ``path`` when downloading and ``path`` does not exist.
    """

    name: str
    kind: str = "tensors"
    read: Reader | None = None
    class_names: Sequence[str] | None = None
    img_size: int = 224
    in_chans: int = 3
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    path: str | None = None
    download: Callable[[Path], None] | None = None
    download_path: str | None = None
    aliases: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in ("tensors", "folder", "synthetic"):
            raise ValueError(f"kind must be 'tensors', 'folder' or 'synthetic', got {self.kind!r}")
        if self.kind == "tensors" and (self.read is None or self.class_names is None):
            raise ValueError(f"dataset {self.name!r}: a 'tensors' dataset needs read and class_names")


_DATASETS: dict[str, DatasetSpec] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (``--data.dataset NAME`` then selects it); returns it."""
    if spec.name in _DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _DATASETS[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[_key(alias)] = spec.name
    return spec


def list_datasets() -> list[str]:
    """Registered dataset names, in registration order."""
    return list(_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """The spec of dataset ``name`` (case, ``-``/``_`` and aliases such as "fashion-mnist" accepted)."""
    key = _key(name)
    key = _ALIASES.get(key, key)
    if key not in _DATASETS:
        close = difflib.get_close_matches(key, list(_DATASETS), n=1)
        raise ValueError(
            f"unknown dataset '{name}'" + (f" (did you mean '{close[0]}'?)" if close else "")
            + f". Valid datasets: {', '.join(_DATASETS)}."
        )
    return _DATASETS[key]


# ---------------------------------------------------------------------------------------------------- downloads
def _download_fashion_mnist(root: Path) -> None:
    try:
        find_fashion_mnist_dir(root)
    except FileNotFoundError:
        import torchvision.datasets as tvd

        for train in (True, False):
            tvd.FashionMNIST(str(root), train=train, download=True)  # into root/FashionMNIST/raw


def _download_cifar(root: Path, num_classes: int) -> None:
    try:
        find_cifar_dir(root, num_classes)
    except FileNotFoundError:
        import torchvision.datasets as tvd

        parent = root.parent if root.name.startswith("cifar-") else root
        (tvd.CIFAR10 if num_classes == 10 else tvd.CIFAR100)(str(parent), train=True, download=True)


# ---------------------------------------------------------------------------------------------------- the datasets
# Per-channel statistics of the training images: Fashion-MNIST computed from the files, CIFAR the usual figures.
register_dataset(DatasetSpec("imagefolder", kind="folder", aliases=("image_folder",)))
register_dataset(DatasetSpec(
    "fashion_mnist", read=read_fashion_mnist, class_names=FASHION_MNIST_CLASSES, img_size=28, in_chans=1,
    mean=(0.2860,), std=(0.3530,),
    path="/usr/share/datasets/fashion-mnist",  # Debian package dataset-fashion-mnist
    download=_download_fashion_mnist, download_path="./data", aliases=("fashionmnist",),
))
register_dataset(DatasetSpec(
    "cifar10", read=partial(read_cifar, num_classes=10), class_names=CIFAR10_CLASSES, img_size=32,
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    path="./data/cifar-10-batches-py", download=partial(_download_cifar, num_classes=10), aliases=("cifar_10",),
))
register_dataset(DatasetSpec(
    "cifar100", read=partial(read_cifar, num_classes=100), class_names=CIFAR100_CLASSES, img_size=32,
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
    path="./data/cifar-100-python", download=partial(_download_cifar, num_classes=100), aliases=("cifar_100",),
))
register_dataset(DatasetSpec("synthetic", kind="synthetic", img_size=32))
