"""ImageDataModule: one LightningDataModule for image folders, Fashion-MNIST, CIFAR-10/100 and synthetic data."""
from __future__ import annotations

import difflib
import functools
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.distributed_sampler import RepeatAugSampler as _TimmRepeatAugSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from convvit.data.datasets import ImageFileDataset, SkipNoneCollate, TensorImageDataset, make_synthetic
from convvit.data.images import list_images
from convvit.data.readers import (
    CIFAR10_CLASSES, CIFAR100_CLASSES, FASHION_MNIST_CLASSES, find_cifar_dir, find_fashion_mnist_dir,
    find_image_classes, read_cifar, read_fashion_mnist, scan_image_folder,
)
from convvit.data.transforms import (
    BatchEvalTransform, BatchTrainTransform, build_color_transform, build_eval_transform, build_train_transform,
    default_crop_pct,
    resolve_crop_mode,
)

__all__ = ["DATASETS", "ImageDataModule", "RepeatAugSampler"]


DATASETS = ("imagefolder", "fashion_mnist", "cifar10", "cifar100", "synthetic")
_DEFAULT_IMG_SIZE = {"fashion_mnist": 28, "cifar10": 32, "cifar100": 32, "synthetic": 32, "imagefolder": 224}
_DEFAULT_PATH = {
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",  # Debian package dataset-fashion-mnist
    "cifar10": "./data/cifar-10-batches-py",
    "cifar100": "./data/cifar-100-python",
}
# Per-channel statistics of the training images (Fashion-MNIST computed from the files; CIFAR the usual figures).
_STATS = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_LUMA = (0.299, 0.587, 0.114)


def _normalize_name(dataset: str) -> str:
    name = dataset.lower().replace("-", "_")
    name = {"image_folder": "imagefolder", "fashionmnist": "fashion_mnist", "cifar_10": "cifar10",
            "cifar_100": "cifar100"}.get(name, name)
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        raise ValueError(
            f"unknown dataset '{dataset}'" + (f" (did you mean '{close[0]}'?)" if close else "")
            + f". Valid datasets: {', '.join(DATASETS)}."
        )
    return name


def _default_stats(dataset: str, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Dataset (or ImageNet) mean/std adapted to ``in_chans``: repeated for gray -> RGB, luma-weighted for RGB ->
    gray (an approximation for the std)."""
    mean, std = _STATS.get(dataset, (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD))
    if len(mean) == in_chans:
        return tuple(mean), tuple(std)
    if len(mean) == 1:
        return tuple(mean) * in_chans, tuple(std) * in_chans
    return (round(sum(w * m for w, m in zip(_LUMA, mean)), 4),), (round(sum(w * s for w, s in zip(_LUMA, std)), 4),)


def _worker_init(worker_id: int, rank: int = 0) -> None:
    """DataLoader workers leave Ctrl-C and SIGTERM to the main process, which stops training between steps and
    shuts its workers down. (A terminal's Ctrl-C or ``kill -TERM -PGID`` reaches the whole process group; a worker
    killed by it makes the main process raise "DataLoader worker ... killed by signal" instead.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):  # what Lightning adds when a loader has no worker_init_fn
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id, rank)


class RepeatAugSampler(DistributedSampler):
    """timm's repeated-augmentation sampler (DeiT), each sample ``num_repeats`` times per epoch spread over
    ranks. A DistributedSampler subclass so that Lightning does not wrap it in a second distributed sampler."""

    def __init__(self, dataset: Dataset, num_repeats: int, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle)
        self.sampler = _TimmRepeatAugSampler(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, num_repeats=num_repeats,
        )

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.sampler.set_epoch(epoch)


class ImageDataModule(L.LightningDataModule):
    """Image classification data: ``imagefolder``, ``fashion_mnist``, ``cifar10``, ``cifar100`` or ``synthetic``.

    Layouts (``path``):
      * imagefolder: ``ROOT/train/CLASS/*``, ``ROOT/val/CLASS/*`` and optionally ``ROOT/test/CLASS/*`` (any depth
        below CLASS). Without ``val/``, ``val_fraction`` > 0 splits it off ``train/`` (or off ``ROOT/CLASS/*``
        when there is no ``train/`` folder). Without ``test/``, testing uses the validation split (with a warning).
        Classes are the sorted folder names of the training split; every split must have the same ones.
      * fashion_mnist: the gzipped IDX files (default ``/usr/share/datasets/fashion-mnist``, Debian package
        dataset-fashion-mnist), or torchvision's ``ROOT/FashionMNIST/raw``.
      * cifar10 / cifar100: the python batches folder (``cifar-10-batches-py`` / ``cifar-100-python``) or its parent.
      * synthetic: deterministic random images (a smooth pattern per class plus noise) for tests and smoke runs.

    Fashion-MNIST and CIFAR have no validation split: their *test split is used for validation* unless
    ``val_fraction`` > 0 holds out that fraction of the training set (seeded by ``seed``); testing always uses
    the test split.

    Training augmentation is timm's: ``crop_mode`` "resized" (RandomResizedCrop with ``scale``/``ratio``, default
    above 64 px) or "padded" (pad ``crop_padding`` then random crop, default up to 64 px, the CIFAR convention),
    flips, ``color_jitter``, ``auto_augment`` (timm strings, e.g. "rand-m9-mstd0.5-inc1", "augmix-m5-w4-d2",
    "original", "v0"), random erasing ``re_prob``, repeated augmentation ``repeated_aug`` > 1. Evaluation:
    resize and center crop ``crop_pct`` (default 0.875 above 64 px, 1.0 below), see :func:`build_eval_transform`.
    In-memory datasets with the padded crop are augmented a batch at a time (auto_augment and color jitter
    still per image), see :class:`BatchTrainTransform`.

    ``num_classes``, ``class_names``, ``in_chans``, ``img_size``, ``mean`` and ``std`` are available right after
    construction. ``predict_paths`` (files or folders) gives ``predict_dataloader`` batches ``(images, indices)``
    where ``indices`` index :attr:`predict_files`.

    Unreadable images raise an error naming the file; with ``skip_bad_images`` they are skipped, logged, and
    counted in :attr:`num_bad_images` (replaced by the next readable image in training, dropped in evaluation).
    """

    def __init__(
            self,
            dataset: str = "fashion_mnist",
            path: str | None = None,
            batch_size: int = 128,
            num_workers: int = 2,
            img_size: int | None = None,
            in_chans: int | None = None,
            mean: tuple[float, ...] | None = None,
            std: tuple[float, ...] | None = None,
            auto_augment: str | None = None,
            hflip: float = 0.5,
            vflip: float = 0.0,
            crop_mode: str | None = None,
            scale: tuple[float, float] = (0.08, 1.0),
            ratio: tuple[float, float] = (3 / 4, 4 / 3),
            crop_padding: int = 4,
            color_jitter: float | tuple[float, ...] | None = None,
            interpolation: str = "bicubic",
            crop_pct: float | None = None,
            re_prob: float = 0.0,
            re_mode: str = "pixel",
            re_count: int = 1,
            repeated_aug: int = 0,
            skip_bad_images: bool = False,
            download: bool = False,
            val_fraction: float = 0.0,
            synthetic_num_classes: int = 10,
            synthetic_size: int = 512,
            seed: int = 0,
            predict_paths: list[str] | None = None,
            eval_batch_size: int | None = None,
            pin_memory: bool | None = None,
            persistent_workers: bool = True,
    ):
        """See the class docstring. Raises ValueError/FileNotFoundError for bad settings, naming the fix."""
        super().__init__()
        self.save_hyperparameters()
        self.dataset = _normalize_name(dataset)
        self.img_size = int(img_size or _DEFAULT_IMG_SIZE[self.dataset])
        self.in_chans = int(in_chans or (1 if self.dataset == "fashion_mnist" else 3))
        if self.in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans}")
        default_mean, default_std = _default_stats(self.dataset, self.in_chans)
        self.mean = tuple(float(m) for m in (mean if mean is not None else default_mean))
        self.std = tuple(float(s) for s in (std if std is not None else default_std))
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(
                f"mean {self.mean} and std {self.std} need one value per channel (in_chans={self.in_chans}). "
                "Fix: give in_chans values each, or leave them unset for the dataset's statistics."
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
        self.crop_mode = resolve_crop_mode(self.img_size, crop_mode)
        self.crop_pct = default_crop_pct(self.img_size) if crop_pct is None else float(crop_pct)
        if self.dataset == "imagefolder" and path is None:
            raise ValueError("dataset 'imagefolder' needs a path. Fix: --data.path ROOT (ROOT/train/CLASS/*.jpg, "
                             "ROOT/val/CLASS/*.jpg).")
        self.root = Path(path) if path is not None else self._default_root()
        self._class_names: list[str] | None = None
        self._tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.train_set = self.val_set = self.test_set = self.predict_set = None
        self.predict_files: list[Path] = []
        self.test_split = "test"  # which split test_dataloader() serves ("test" or "val")
        self.val_split = "val"  # which split val_dataloader() serves ("val", "test" or "train-holdout")

    # ------------------------------------------------------------------------------------------------ metadata
    def _default_root(self) -> Path | None:
        if self.dataset == "synthetic":
            return None
        default = Path(_DEFAULT_PATH[self.dataset])
        if self.dataset == "fashion_mnist" and self.hparams.download and not default.is_dir():
            return Path("./data")  # torchvision downloads to ./data/FashionMNIST/raw
        return default

    @property
    def class_names(self) -> list[str]:
        """Class names, index = label. Image folders: the sorted folder names of the training split."""
        if self._class_names is None:
            if self.dataset == "imagefolder":
                self._class_names = find_image_classes(self._imagefolder_train_dir())
            elif self.dataset == "synthetic":
                self._class_names = [f"class_{i}" for i in range(self.hparams.synthetic_num_classes)]
            else:
                self._class_names = {"fashion_mnist": FASHION_MNIST_CLASSES, "cifar10": CIFAR10_CLASSES,
                                     "cifar100": CIFAR100_CLASSES}[self.dataset]
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def batch_size(self) -> int:
        """Training batch size per device."""
        return self.hparams.batch_size

    @property
    def has_test(self) -> bool:
        """Whether the data has its own test split (image folders without ``test/`` test on the validation split)."""
        return self.dataset != "imagefolder" or (self.root / "test").is_dir()

    @property
    def eval_transform(self):
        """The per-image evaluation transform (PIL image of any mode -> tensor), as used for prediction."""
        return build_eval_transform(self.img_size, self.in_chans, self.mean, self.std, self.crop_pct,
                                    self.hparams.interpolation)

    @property
    def train_transform(self):
        """The per-image training transform (PIL image of any mode -> tensor)."""
        h = self.hparams
        return build_train_transform(
            self.img_size, self.in_chans, self.mean, self.std, crop_mode=self.crop_mode, scale=h.scale,
            ratio=h.ratio, crop_padding=h.crop_padding, hflip=h.hflip, vflip=h.vflip, color_jitter=h.color_jitter,
            auto_augment=h.auto_augment, interpolation=h.interpolation, re_prob=h.re_prob, re_mode=h.re_mode,
            re_count=h.re_count,
        )

    @property
    def num_bad_images(self) -> int:
        """Distinct unreadable images skipped so far (needs ``skip_bad_images``), over all splits and workers."""
        return sum(ds.num_bad for ds in self._file_datasets())

    @property
    def bad_images(self) -> list[Path]:
        """The unreadable image files skipped so far."""
        return sorted({p for ds in self._file_datasets() for p in ds.bad_paths})

    def _file_datasets(self) -> list[ImageFileDataset]:
        sets = (self.train_set, self.val_set, self.test_set, self.predict_set)
        return [ds for ds in {id(s): s for s in sets}.values() if isinstance(ds, ImageFileDataset)]

    # ------------------------------------------------------------------------------------------------ lightning
    def prepare_data(self) -> None:
        """Download Fashion-MNIST / CIFAR with torchvision when ``download`` is set and the files are missing."""
        if not self.hparams.download or self.dataset in ("imagefolder", "synthetic"):
            return
        import torchvision.datasets as tvd

        if self.dataset == "fashion_mnist":
            try:
                find_fashion_mnist_dir(self.root)
            except FileNotFoundError:
                for train in (True, False):
                    tvd.FashionMNIST(str(self.root), train=train, download=True)
        else:
            num = 10 if self.dataset == "cifar10" else 100
            try:
                find_cifar_dir(self.root, num)
            except FileNotFoundError:
                parent = self.root.parent if self.root.name.startswith("cifar-") else self.root
                (tvd.CIFAR10 if num == 10 else tvd.CIFAR100)(str(parent), train=True, download=True)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a stage needs: "fit" (train + val), "validate", "test", "predict" (all if None)."""
        if stage in (None, "fit") and self.train_set is None:
            self.train_set, self.val_set = self._build_train_val()
        if stage in (None, "validate") and self.val_set is None:
            self.val_set = self._build_train_val()[1]
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._build_test()
        if stage == "predict" or (stage is None and self.hparams.predict_paths):
            self.predict_set = self._build_predict()

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("validate")
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            self.setup("test")
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_set is None:
            self.setup("predict")
        return self._loader(self.predict_set, train=False)

    def state_dict(self) -> dict:
        """Saved in checkpoints: the unreadable images skipped so far (a record, not restored)."""
        return {"bad_images": [str(p) for p in self.bad_images]} if self.num_bad_images else {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass

    def teardown(self, stage: str | None = None) -> None:
        if self.num_bad_images:
            shown = ", ".join(str(p) for p in self.bad_images[:5])
            more = f" and {self.num_bad_images - 5} more" if self.num_bad_images > 5 else ""
            rank_zero_warn(f"skipped {self.num_bad_images} unreadable image(s): {shown}{more}")

    # ------------------------------------------------------------------------------------------------ datasets
    def _split_indices(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) indices of a seeded random ``val_fraction`` hold-out."""
        n_val = max(1, round(n * self.hparams.val_fraction))
        if n_val >= n:
            raise ValueError(f"val_fraction={self.hparams.val_fraction} leaves no training images out of {n}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.seed))
        return perm[n_val:].sort().values, perm[:n_val].sort().values

    def _build_train_val(self) -> tuple[Dataset, Dataset]:
        if self.dataset == "imagefolder":
            return self._imagefolder_train_val()
        x, y = self._read_tensors("train")
        if self.hparams.val_fraction > 0:
            tr, va = self._split_indices(len(y))
            self.val_split = "train-holdout"
            return self._tensor_dataset(x[tr], y[tr], train=True), self._tensor_dataset(x[va], y[va], train=False)
        self.val_split = "test"
        xt, yt = self._read_tensors("test")
        return self._tensor_dataset(x, y, train=True), self._tensor_dataset(xt, yt, train=False)

    def _build_test(self) -> Dataset:
        if self.dataset == "imagefolder":
            test_dir = self.root / "test"
            if test_dir.is_dir():
                self.test_split = "test"
                return self._file_dataset(*scan_image_folder(test_dir, self.class_names), train=False)
            rank_zero_warn(f"no test split at '{test_dir}': testing on the validation split instead")
            self.test_split = "val"
            return self.val_set if self.val_set is not None else self._imagefolder_train_val()[1]
        return self._tensor_dataset(*self._read_tensors("test"), train=False)

    def _build_predict(self) -> Dataset:
        if not self.hparams.predict_paths:
            return self._build_test()
        self.predict_files = list_images(self.hparams.predict_paths)
        return ImageFileDataset(
            self.predict_files, range(len(self.predict_files)), self.in_chans, self.eval_transform,
            skip_bad=self.hparams.skip_bad_images, on_bad="drop",
        )

    def _read_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self._tensors:
            h = self.hparams
            if self.dataset == "fashion_mnist":
                self._tensors[split] = read_fashion_mnist(self.root, split)
            elif self.dataset in ("cifar10", "cifar100"):
                self._tensors[split] = read_cifar(self.root, split, 10 if self.dataset == "cifar10" else 100)
            else:
                size = h.synthetic_size if split == "train" else max(h.synthetic_size // 4, h.synthetic_num_classes)
                offset = {"train": 0, "test": 1}[split]
                self._tensors[split] = make_synthetic(size, h.synthetic_num_classes, self.in_chans, self.img_size,
                                                      seed=h.seed * 1000 + offset)
        return self._tensors[split]

    def _tensor_dataset(self, images: torch.Tensor, labels: torch.Tensor, train: bool) -> TensorImageDataset:
        h = self.hparams
        if train:
            if self.crop_mode == "padded":
                color = build_color_transform(self.img_size, self.mean, h.color_jitter, h.auto_augment,
                                              h.interpolation)
                return TensorImageDataset(images, labels, self.in_chans, batch_transform=BatchTrainTransform(
                    self.img_size, self.mean, self.std, crop_padding=h.crop_padding, hflip=h.hflip, vflip=h.vflip,
                    interpolation=h.interpolation, re_prob=h.re_prob, re_mode=h.re_mode, re_count=h.re_count,
                    color=color))
            return TensorImageDataset(images, labels, self.in_chans, transform=self.train_transform)
        if self.crop_pct == 1.0:
            return TensorImageDataset(images, labels, self.in_chans, batch_transform=BatchEvalTransform(
                self.img_size, self.mean, self.std, h.interpolation))
        return TensorImageDataset(images, labels, self.in_chans, transform=self.eval_transform)

    def _file_dataset(self, paths: Sequence[Path], labels: Sequence[int], train: bool) -> ImageFileDataset:
        return ImageFileDataset(
            paths, labels, self.in_chans, self.train_transform if train else self.eval_transform,
            skip_bad=self.hparams.skip_bad_images, on_bad="substitute" if train else "drop",
        )

    def _imagefolder_train_dir(self) -> Path:
        root = self.root
        if not root.is_dir():
            raise FileNotFoundError(
                f"data folder '{root}' does not exist. Fix: point --data.path at a folder laid out as "
                "ROOT/train/CLASS/*.jpg and ROOT/val/CLASS/*.jpg."
            )
        if (root / "train").is_dir():
            return root / "train"
        if self.hparams.val_fraction > 0:
            return root  # flat layout ROOT/CLASS/*, validation split off it
        subdirs = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        has = f"it has {', '.join(subdirs[:5])}{' ...' if len(subdirs) > 5 else ''}" if subdirs else "it is empty"
        raise FileNotFoundError(
            f"data folder '{root}' has no 'train' sub-folder ({has})"
            + ". Fix: lay it out as ROOT/train/CLASS/*.jpg and ROOT/val/CLASS/*.jpg, or, for ROOT/CLASS/*.jpg, "
            "set --data.val_fraction (e.g. 0.1) to hold out a validation split."
        )

    def _imagefolder_train_val(self) -> tuple[Dataset, Dataset]:
        train_dir = self._imagefolder_train_dir()
        paths, labels = scan_image_folder(train_dir, self.class_names)
        val_dir = self.root / "val"
        if train_dir != self.root and val_dir.is_dir():
            if self.hparams.val_fraction > 0:
                rank_zero_warn(f"val_fraction is ignored: '{val_dir}' exists and is the validation split")
            self.val_split = "val"
            val_paths, val_labels = scan_image_folder(val_dir, self.class_names)
        elif self.hparams.val_fraction > 0:
            tr, va = self._split_indices(len(paths))
            val_paths, val_labels = [paths[i] for i in va], [labels[i] for i in va]
            paths, labels = [paths[i] for i in tr], [labels[i] for i in tr]
            self.val_split = "train-holdout"
        else:
            raise FileNotFoundError(
                f"no validation split: '{val_dir}' does not exist. Fix: add ROOT/val/CLASS/* images, or set "
                "--data.val_fraction (e.g. 0.1) to hold out part of the training images."
            )
        return self._file_dataset(paths, labels, train=True), self._file_dataset(val_paths, val_labels, train=False)

    # ------------------------------------------------------------------------------------------------ loaders
    def _world(self) -> tuple[int, int]:
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size(), dist.get_rank()
        return 1, 0

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        h = self.hparams
        batch_size = h.batch_size if train else (h.eval_batch_size or h.batch_size)
        world, rank = self._world()
        sampler = None
        if train and h.repeated_aug > 1:
            sampler = RepeatAugSampler(dataset, h.repeated_aug, num_replicas=world, rank=rank)
        collate = None
        if isinstance(dataset, ImageFileDataset) and dataset.on_bad == "drop":
            collate = SkipNoneCollate((self.in_chans, self.img_size, self.img_size))
        workers = h.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=workers,
            worker_init_fn=functools.partial(_worker_init, rank=rank) if workers > 0 else None,
            collate_fn=collate,
            pin_memory=torch.cuda.is_available() if h.pin_memory is None else h.pin_memory,
            drop_last=train and len(dataset) >= batch_size * world,
            persistent_workers=h.persistent_workers and workers > 0,
        )

    def __repr__(self) -> str:  # Lightning's own __str__ would load every split
        return (f"{type(self).__name__}(dataset={self.dataset!r}, root={str(self.root)!r}, img_size={self.img_size}, "
                f"in_chans={self.in_chans}, batch_size={self.hparams.batch_size})")

    __str__ = __repr__
