"""The dataset registry: a new dataset is one register_dataset call."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from convvit.data import DatasetSpec, ImageDataModule, get_dataset, list_datasets, register_dataset, registry


@pytest.fixture
def toy(monkeypatch):
    """A registered 'toy' dataset: 3 classes of 12x12 gray images; removed after the test."""
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    calls = {"read": [], "download": []}

    def read(root: Path, split: str):
        calls["read"].append((root, split))
        n = 12 if split == "train" else 6
        g = torch.Generator().manual_seed(len(split))
        return torch.randint(0, 256, (n, 1, 12, 12), dtype=torch.uint8, generator=g), torch.arange(n) % 3

    spec = register_dataset(DatasetSpec(
        "toy", read=read, class_names=["a", "b", "c"], img_size=12, in_chans=1, mean=(0.5,), std=(0.25,),
        path="/nonexistent/toy", download=lambda root: calls["download"].append(root), aliases=("toy-set",),
    ))
    return spec, calls


def test_builtin_datasets_registered():
    assert list_datasets()[:5] == ["imagefolder", "fashion_mnist", "cifar10", "cifar100", "synthetic"]
    fm = get_dataset("Fashion-MNIST")
    assert (fm.name, fm.img_size, fm.in_chans, fm.path) == ("fashion_mnist", 28, 1, "/usr/share/datasets/fashion-mnist")
    assert get_dataset("FashionMNIST") is fm and get_dataset("CIFAR-100").name == "cifar100"
    assert get_dataset("image_folder").kind == "folder" and get_dataset("synthetic").kind == "synthetic"


def test_one_registration_is_a_usable_dataset(toy):
    spec, calls = toy
    assert get_dataset("TOY-SET") is spec and "toy" in list_datasets()
    dm = ImageDataModule("toy-set", batch_size=4, num_workers=0, download=True)
    assert (dm.dataset, dm.num_classes, dm.class_names, dm.in_chans, dm.img_size) == ("toy", 3, ["a", "b", "c"], 1, 12)
    assert (dm.mean, dm.std, dm.root, dm.has_test) == ((0.5,), (0.25,), Path("/nonexistent/toy"), True)
    dm.prepare_data()
    assert calls["download"] == [Path("/nonexistent/toy")]
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 12, 12) and y.dtype == torch.long
    assert len(dm.val_set) == 6 and dm.val_split == "test"
    assert sorted(split for _, split in calls["read"]) == ["test", "train"]
    rgb = ImageDataModule("toy", in_chans=3, num_workers=0)
    assert rgb.mean == (0.5,) * 3 and rgb.std == (0.25,) * 3


def test_registration_is_checked(toy):
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(DatasetSpec("toy", kind="synthetic"))
    with pytest.raises(ValueError, match="needs read and class_names"):
        DatasetSpec("half", read=lambda root, split: None)
    with pytest.raises(ValueError, match="kind must be"):
        DatasetSpec("odd", kind="stream")
