import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from convvit.data import ImageDataModule, RepeatAugSampler

SMALL = dict(batch_size=4, num_workers=0)


def batches(dm, loader, train=False):
    """The loader's batches as the training process sees them (image folders deliver unfinished batches)."""
    return [tuple(t.clone() for t in dm.finish_batch(b, train)) for b in loader]


def first(dm, split="train"):
    loader = getattr(dm, f"{split}_dataloader")()
    return dm.finish_batch(next(iter(loader)), split == "train")


# ------------------------------------------------------------------------------------------------ image folders
def test_imagefolder_classes_known_after_init(image_folder):
    dm = ImageDataModule("imagefolder", str(image_folder), img_size=16, **SMALL)
    assert dm.num_classes == 2 and dm.class_names == ["cat", "dog"]
    assert (dm.in_chans, dm.img_size, dm.mean, dm.std) == (3, 16, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert dm.hparams.dataset == "imagefolder" and dm.hparams.path == str(image_folder)  # saved for checkpoints


def test_imagefolder_loaders(image_folder):
    dm = ImageDataModule("imagefolder", str(image_folder), img_size=16, auto_augment="rand-m9-mstd0.5-inc1",
                         re_prob=0.25, **SMALL)
    dm.setup("fit")
    x, y = first(dm)
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.long
    val = batches(dm, dm.val_dataloader())
    vx, vy = torch.cat([b[0] for b in val]), torch.cat([b[1] for b in val])
    assert vx.shape == (6, 3, 16, 16) and vy.tolist() == [0, 0, 0, 1, 1, 1]
    # class 0 images are red, class 1 green: the eval transform keeps that
    assert vx[0, 0].mean() > vx[0, 1].mean() and vx[5, 1].mean() > vx[5, 0].mean()
    assert len(dm.train_dataloader()) == 1  # drop_last: 6 images, batch 4


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK", "1", "LA"])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_imagefolder_any_mode(tmp_path, fakes, mode, in_chans):
    from PIL import Image

    root = fakes.make_image_folder(tmp_path, n=2)
    img = Image.new("RGB", (9, 7), (1, 2, 3))
    img = Image.fromarray(np.full((7, 9), 30000, np.uint16)) if mode == "I;16" else img.convert(mode)
    ext = "jpg" if mode == "CMYK" else "png"
    img.save(root / "train" / "cat" / f"odd.{ext}")
    dm = ImageDataModule("imagefolder", str(root), img_size=8, in_chans=in_chans, batch_size=8, num_workers=0)
    x, _ = first(dm)
    assert x.shape == (5, in_chans, 8, 8)


def test_imagefolder_test_split_and_fallback(tmp_path, fakes):
    root = fakes.make_image_folder(tmp_path, splits=("train", "val", "test"), n=1)
    dm = ImageDataModule("imagefolder", str(root), img_size=8, **SMALL)
    dm.setup("test")
    assert len(dm.test_set) == 2 and dm.test_split == "test" and dm.has_test
    assert dm.batch_size == 4
    root2 = fakes.make_image_folder(tmp_path / "b", n=1)
    dm = ImageDataModule("imagefolder", str(root2), img_size=8, **SMALL)
    assert not dm.has_test
    with pytest.warns(UserWarning, match="testing on the validation split"):
        dm.setup("test")
    assert dm.test_split == "val" and len(dm.test_set) == 2


def test_imagefolder_flat_layout_with_val_fraction(tmp_path, fakes):
    for c in ("a", "b", "c"):
        for i in range(10):
            fakes.write_image(tmp_path / "flat" / c / f"{i}.png")
    dm = ImageDataModule("imagefolder", str(tmp_path / "flat"), img_size=8, val_fraction=0.2, **SMALL)
    assert dm.class_names == ["a", "b", "c"]
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), dm.val_split) == (24, 6, "train-holdout")
    train, val = set(dm.train_set.paths), set(dm.val_set.paths)
    assert not train & val
    dm2 = ImageDataModule("imagefolder", str(tmp_path / "flat"), img_size=8, val_fraction=0.2, **SMALL)
    dm2.setup("fit")
    assert set(dm2.val_set.paths) == val  # seeded


def test_imagefolder_bad_layouts(tmp_path, fakes):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _ = ImageDataModule("imagefolder", str(tmp_path / "missing")).num_classes
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="'.*a.png' is a file; it needs a folder"):
        _ = ImageDataModule("imagefolder", str(tmp_path / "a.png")).num_classes
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no 'train' sub-folder.*empty.*val_fraction"):
        _ = ImageDataModule("imagefolder", str(tmp_path / "empty")).num_classes
    (tmp_path / "empty" / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        _ = ImageDataModule("imagefolder", str(tmp_path / "empty")).num_classes
    with pytest.raises(ValueError, match="needs a path"):
        ImageDataModule("imagefolder")
    # val class set differs
    root = fakes.make_image_folder(tmp_path / "r", n=1)
    fakes.write_image(root / "val" / "bird" / "0.png")
    with pytest.raises(ValueError, match=r"not in training \['bird'\]"):
        ImageDataModule("imagefolder", str(root), **SMALL).setup("fit")
    # class folder without images
    root = fakes.make_image_folder(tmp_path / "s", n=1)
    (root / "train" / "zebra").mkdir()
    (root / "val" / "zebra").mkdir()
    with pytest.raises(ValueError, match="without images.*zebra"):
        ImageDataModule("imagefolder", str(root), **SMALL).setup("fit")
    # no val split
    root = fakes.make_image_folder(tmp_path / "t", splits=("train",), n=1)
    with pytest.raises(FileNotFoundError, match="no validation split.*val_fraction"):
        ImageDataModule("imagefolder", str(root), **SMALL).setup("fit")


def _corrupt(root):
    bad = root / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a full jpeg")
    (root / "val" / "cat" / "trunc.png").write_bytes((root / "val" / "cat" / "0.png").read_bytes()[:40])
    return bad


def test_corrupt_image_error_names_file(image_folder):
    bad = _corrupt(image_folder)
    dm = ImageDataModule("imagefolder", str(image_folder), img_size=8, batch_size=7, num_workers=0)
    with pytest.raises(OSError, match=f"{bad.name}.*skip_bad_images"):
        first(dm)


def test_skip_bad_images_counts(image_folder, caplog):
    _corrupt(image_folder)
    dm = ImageDataModule("imagefolder", str(image_folder), img_size=8, batch_size=7, num_workers=0,
                         skip_bad_images=True)
    with caplog.at_level(logging.WARNING, logger="convvit.data"):
        for _ in range(2):  # a file is counted once however often it is met
            (x, y), = batches(dm, dm.train_dataloader(), train=True)
            assert len(x) == 7  # training batches stay full: the bad image is replaced
        vx, _ = torch.cat([b[0] for b in batches(dm, dm.val_dataloader())]), None
    assert len(vx) == 6  # evaluation drops it (7 files, 1 unreadable)
    assert dm.num_bad_images == 2 and [p.name for p in dm.bad_images] == ["broken.jpg", "trunc.png"]
    assert "broken.jpg" in caplog.text and "trunc.png" in caplog.text
    with pytest.warns(UserWarning, match="skipped 2 unreadable"):
        dm.teardown("fit")


def test_skip_bad_images_counted_in_worker_processes(image_folder):
    _corrupt(image_folder)
    dm = ImageDataModule("imagefolder", str(image_folder), img_size=8, batch_size=7, num_workers=1,
                         skip_bad_images=True, persistent_workers=False)
    batches(dm, dm.train_dataloader(), train=True)
    assert dm.num_bad_images == 1  # seen by the worker, read by the main process


# ------------------------------------------------------------------------------------------------ in-memory datasets
def test_fashion_mnist_from_idx(tmp_path, fakes):
    data = fakes.make_fashion_mnist(tmp_path, n_train=20, n_test=10)
    dm = ImageDataModule("fashion_mnist", str(tmp_path), batch_size=8, num_workers=0)
    assert (dm.num_classes, dm.in_chans, dm.img_size, dm.mean, dm.std) == (10, 1, 28, (0.286,), (0.353,))
    assert dm.class_names[0] == "T-shirt/top"
    dm.setup("fit")
    assert dm.val_split == "test" and len(dm.val_set) == 10  # test split doubles as validation
    x, y = first(dm)
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32
    vx, vy = first(dm, "val")
    ref = (torch.from_numpy(data["test"][0][:8]).float() / 255 - 0.286) / 0.353
    torch.testing.assert_close(vx[:, 0], ref)
    assert vy.tolist() == data["test"][1][:8].tolist()


def test_fashion_mnist_val_fraction_and_rgb(tmp_path, fakes):
    fakes.make_fashion_mnist(tmp_path, n_train=20, n_test=10)
    dm = ImageDataModule("fashion-mnist", str(tmp_path), in_chans=3, img_size=32, val_fraction=0.25, **SMALL)
    assert dm.mean == (0.286,) * 3
    dm.setup(None)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 10)
    x, _ = first(dm)
    assert x.shape == (4, 3, 32, 32) and torch.equal(x[:, 0], x[:, 2])


def test_fashion_mnist_auto_augment_per_image_path(tmp_path, fakes):
    fakes.make_fashion_mnist(tmp_path, n_train=8, n_test=4)
    dm = ImageDataModule("fashion_mnist", str(tmp_path), auto_augment="rand-m9-mstd0.5-inc1", **SMALL)
    dm.setup("fit")
    assert dm.train_set.batch_transform.color is not None  # RandAugment per image inside the batch pipeline
    assert first(dm)[0].shape == (4, 1, 28, 28)


def test_fashion_mnist_missing_mentions_fix(tmp_path):
    dm = ImageDataModule("fashion_mnist", str(tmp_path / "none"), **SMALL)
    assert dm.num_classes == 10  # known without the files
    with pytest.raises(FileNotFoundError, match="download"):
        dm.setup("fit")


@pytest.mark.parametrize("name,num", [("cifar10", 10), ("cifar100", 100)])
def test_cifar(tmp_path, fakes, name, num):
    fakes.make_cifar(tmp_path, num)
    dm = ImageDataModule(name, str(tmp_path), **SMALL)
    assert dm.num_classes == num and dm.img_size == 32 and len(dm.mean) == 3
    dm.setup("fit")
    x, _ = first(dm)
    assert x.shape == (4, 3, 32, 32)
    gray = ImageDataModule(name, str(tmp_path), in_chans=1, **SMALL)
    assert len(gray.mean) == 1
    assert first(gray, "val")[0].shape == (4, 1, 32, 32)


def test_synthetic_deterministic_and_learnable_signal():
    a = ImageDataModule("synthetic", synthetic_num_classes=3, synthetic_size=60, img_size=16, **SMALL)
    b = ImageDataModule("synthetic", synthetic_num_classes=3, synthetic_size=60, img_size=16, **SMALL)
    assert a.num_classes == 3 and a.class_names == ["class_0", "class_1", "class_2"]
    a.setup("fit"), b.setup("fit")
    assert torch.equal(a.train_set.images, b.train_set.images) and len(a.val_set) == 15
    assert not torch.equal(a.train_set.images[:15], a.val_set.images)
    # class means differ much more than the noise of a class mean: the labels are learnable
    means = torch.stack([a.train_set.images[a.train_set.labels == c].float().mean(0) for c in range(3)])
    assert (means[0] - means[1]).abs().mean() > 10
    c = ImageDataModule("synthetic", seed=1, synthetic_size=60, **SMALL)
    c.setup("fit")
    assert not torch.equal(c.train_set.images, a.train_set.images)


def test_unknown_dataset_lists_valid_ones():
    with pytest.raises(ValueError, match="did you mean 'cifar10'.*imagefolder, fashion_mnist, cifar10, cifar100"):
        ImageDataModule("cifar")
    with pytest.raises(ValueError, match="one value per channel"):
        ImageDataModule("synthetic", mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="in_chans"):
        ImageDataModule("synthetic", in_chans=2)


def test_repeated_aug_sampler():
    dm = ImageDataModule("synthetic", synthetic_size=40, repeated_aug=3, batch_size=5, num_workers=0)
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, RepeatAugSampler)
    assert isinstance(loader.sampler, torch.utils.data.DistributedSampler)  # so Lightning does not wrap it again
    # two ranks together see every sample 3 times (timm's sampler, DeiT's repeated augmentation)
    ranks = [list(RepeatAugSampler(dm.train_set, 3, num_replicas=2, rank=r, shuffle=True)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 20
    s = RepeatAugSampler(dm.train_set, 3, num_replicas=1, rank=0)
    s.set_epoch(1)
    assert list(s) != list(RepeatAugSampler(dm.train_set, 3, num_replicas=1, rank=0))


class _Tiny(L.LightningModule):
    def __init__(self, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    def training_step(self, batch, _):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_fit_records_hparams(tmp_path):
    dm = ImageDataModule("synthetic", synthetic_size=64, img_size=8, batch_size=16, num_workers=0)
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(_Tiny(dm.num_classes), datamodule=dm)
    ckpt = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=False)
    assert ckpt["datamodule_hyper_parameters"]["dataset"] == "synthetic"
    assert ckpt["datamodule_hyper_parameters"]["img_size"] == 8


def test_download_uses_torchvision_only_when_files_are_missing(tmp_path, fakes, monkeypatch):
    import torchvision.datasets as tvd

    calls = []

    def fake_fashion_mnist(root, train, download):  # stands in for the network: writes torchvision's layout
        calls.append((root, train, download))
        fakes.make_fashion_mnist(Path(root) / "FashionMNIST" / "raw", gz=False)

    def fake_cifar10(root, train, download):
        calls.append((root, train, download))
        fakes.make_cifar(Path(root), 10)

    monkeypatch.setattr(tvd, "FashionMNIST", fake_fashion_mnist)
    monkeypatch.setattr(tvd, "CIFAR10", fake_cifar10)
    dm = ImageDataModule("fashion_mnist", str(tmp_path / "fm"), download=True, **SMALL)
    dm.prepare_data()
    assert [c[1:] for c in calls] == [(True, True), (False, True)]
    dm.setup("fit")
    assert len(dm.train_set) == 20
    ImageDataModule("fashion_mnist", str(tmp_path / "fm"), download=True, **SMALL).prepare_data()
    assert len(calls) == 2  # files present: nothing downloaded
    ImageDataModule("fashion_mnist", str(tmp_path / "fm"), **SMALL).prepare_data()
    assert len(calls) == 2
    # CIFAR: path may name the batches folder; torchvision is given its parent
    calls.clear()
    dm = ImageDataModule("cifar10", str(tmp_path / "c" / "cifar-10-batches-py"), download=True, **SMALL)
    dm.prepare_data()
    assert calls == [(str(tmp_path / "c"), True, True)]
    dm.setup("fit")
    assert len(dm.train_set) == 20


def test_state_dict_records_bad_images(image_folder):
    _corrupt(image_folder)
    dm = ImageDataModule("imagefolder", str(image_folder), img_size=8, batch_size=7, num_workers=0,
                         skip_bad_images=True)
    assert dm.state_dict() == {}
    batches(dm, dm.train_dataloader(), train=True)
    assert [Path(p).name for p in dm.state_dict()["bad_images"]] == ["broken.jpg"]
    dm.load_state_dict(dm.state_dict())


def test_val_fraction_is_stratified_and_warns_of_lonely_classes(tmp_path, fakes):
    counts = {"a": 10, "b": 2, "c": 1}  # a random 30% of 13 images often took b's or c's only training images
    for c, n in counts.items():
        for i in range(n):
            fakes.write_image(tmp_path / "flat" / c / f"{i}.png")
    dm = ImageDataModule("imagefolder", str(tmp_path / "flat"), img_size=8, val_fraction=0.3, **SMALL)
    with pytest.warns(UserWarning, match=r"fewer than 2 images.*: c\. Fix"):
        dm.setup("fit")

    def per_class(dataset):
        return {c: sum(p.parent.name == c for p in dataset.paths) for c in counts}

    assert per_class(dm.val_set) == {"a": 3, "b": 1, "c": 0}  # round(0.3 * 13) = 4, by largest remainder
    assert per_class(dm.train_set) == {"a": 7, "b": 1, "c": 1}  # every class keeps a training image


def test_val_fraction_of_tensor_datasets_is_stratified():
    dm = ImageDataModule("synthetic", img_size=8, synthetic_size=64, synthetic_num_classes=4, val_fraction=0.25,
                         **SMALL)
    dm.setup("fit")
    assert torch.bincount(dm.val_set.labels, minlength=4).tolist() == [4, 4, 4, 4]  # 16 of each class
    assert torch.bincount(dm.train_set.labels, minlength=4).tolist() == [12, 12, 12, 12]
