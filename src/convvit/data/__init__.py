"""Data for convvit: a registry of datasets (image folders, Fashion-MNIST, CIFAR-10/100, synthetic), one
LightningDataModule over them, plus the image loading and transforms that prediction uses.

The names below load on first use (PEP 562), so that :mod:`convvit.data.settings` (standard library only) can be
read by the fast option check without importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_SOURCES = {
    "ImageDataModule": "datamodule",
    "ImageFileDataset": "datasets", "TensorImageDataset": "datasets", "make_synthetic": "datasets",
    "IMG_EXTENSIONS": "images", "BadImageError": "images", "convert_image": "images", "list_images": "images",
    "load_image": "images",
    "DatasetSpec": "registry", "get_dataset": "registry", "list_datasets": "registry", "register_dataset": "registry",
    "RepeatAugSampler": "samplers",
    "Augmentation": "settings",
    "BatchTrainTransform": "transforms", "build_eval_transform": "transforms", "build_train_transform": "transforms",
}


def __getattr__(name: str) -> Any:
    if name in _SOURCES:
        return getattr(importlib.import_module(f"convvit.data.{_SOURCES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])


__all__ = sorted(_SOURCES)
