"""ImageDataModule: one LightningDataModule for image folders, Fashion-MNIST, CIFAR-10/100 and synthetic data."""
from __future__ import annotations

import functools
import inspect
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import DataLoader, Dataset

from convvit.data import settings as data_settings
from convvit.data.datasets import ImageFileDataset, SkipNoneCollate, TensorImageDataset, make_synthetic
from convvit.data.device_pipeline import (
    DevicePipeline,
    EncodedBatch,
    EncodedFileDataset,
    collate_encoded,
    decode_images,
)
from convvit.data.readers import find_image_classes, scan_image_folder
from convvit.data.registry import DatasetSpec, get_dataset
from convvit.data.samplers import RepeatAugSampler
from convvit.data.settings import Augmentation, DatasetSettings, Input, Loading
from convvit.data.transforms import (
    BatchEvalTransform,
    BatchNormalizeErase,
    BatchTrainTransform,
    build_color_transform,
    build_eval_transform,
    build_train_transform,
    default_crop_pct,
    resolve_crop_mode,
)
from convvit.settings import init_signature, settings_doc, split_settings

__all__ = ["ImageDataModule"]

_LUMA = (0.299, 0.587, 0.114)
PIPELINES = ("auto", "cpu", "device")


def _default_stats(spec: DatasetSpec, in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Dataset (or ImageNet) mean/std adapted to ``in_chans``: repeated for gray -> RGB, luma-weighted for RGB ->
    gray (an approximation for the std)."""
    mean, std = (spec.mean, spec.std) if spec.mean is not None else (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
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


class ImageDataModule(L.LightningDataModule):
    """Image classification data: ``imagefolder``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``synthetic``, or
    any dataset added with :func:`convvit.data.register_dataset` (its spec gives the defaults below).

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

    Image folders have two input pipelines (``pipeline``):
      * "cpu": loader workers decode and augment each image with PIL and return uint8 tensors; the training
        process normalises and erases a batch at a time on its device (timm's prefetcher split).
      * "device": workers only read each file's bytes; the training process decodes the batch (nvJPEG on CUDA)
        and crops, flips, auto-augments, normalises and erases it as a batch on its device, see
        :mod:`convvit.data.device_pipeline`. Takes the resized crop, flips, auto_augment (RandAugment,
        AutoAugment, TrivialAugment) and erasing; not color_jitter, AugMix or the padded crop.
      * "auto" (default): "device" when training runs on a CUDA device and the options allow it, else "cpu".
    Either way the loaders deliver unfinished batches (uint8 images, or undecoded bytes) that
    :meth:`on_after_batch_transfer` (Lightning calls it) or :meth:`finish_batch` turns into normalised floats.

    ``num_classes``, ``class_names``, ``in_chans``, ``img_size``, ``mean`` and ``std`` are available right after
    construction.

    Unreadable images raise an error naming the file; with ``skip_bad_images`` they are skipped, logged, and
    counted in :attr:`num_bad_images` (replaced by the next readable image in training, dropped in evaluation).

    Settings (``--data.KEY``, also keyword arguments here) are the fields of the groups in
    :mod:`convvit.data.settings` (dataset, input, augmentation, loading), each declared there once with its resume
    policy. Unknown settings raise TypeError.

    Args:
{settings}
    """

    def __init__(self, *args: Any, **settings: Any) -> None:
        """See the class docstring. Raises ValueError/FileNotFoundError for bad settings, naming the fix."""
        # not super(), as in ImageClassifier: Lightning's save_hyperparameters reads the arguments of an __init__
        # that uses it from its frame by the signature's names, which here are generated (data_signature)
        L.LightningDataModule.__init__(self)
        bound = inspect.signature(ImageDataModule.__init__).bind(self, *args, **settings)
        bound.apply_defaults()
        settings = dict(bound.arguments)
        del settings["self"]
        self.save_hyperparameters(settings)
        groups = split_settings(data_settings.DATA_GROUPS, settings)  # read when called: a test may add a group
        source, model_input, loading = groups[DatasetSettings], groups[Input], groups[Loading]
        self.augmentation: Augmentation = groups[Augmentation]
        dataset, path, val_fraction = source.dataset, source.path, source.val_fraction
        img_size, in_chans, mean, std = model_input.img_size, model_input.in_chans, model_input.mean, model_input.std
        self.spec = get_dataset(dataset)
        self.dataset = self.spec.name
        self.img_size = int(img_size or self.spec.img_size)
        self.in_chans = int(in_chans or self.spec.in_chans)
        if self.in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans}")
        default_mean, default_std = _default_stats(self.spec, self.in_chans)
        self.mean = tuple(float(m) for m in (mean if mean is not None else default_mean))
        self.std = tuple(float(s) for s in (std if std is not None else default_std))
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(
                f"mean {self.mean} and std {self.std} need one value per channel (in_chans={self.in_chans}). "
                "Fix: give in_chans values each, or leave them unset for the dataset's statistics."
            )
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if loading.pipeline not in PIPELINES:
            raise ValueError(f"unknown pipeline '{loading.pipeline}'; valid: {', '.join(PIPELINES)}")
        if loading.batch_size < 1 or loading.num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {loading.batch_size} and "
                             f"{loading.num_workers}")
        self.crop_mode = resolve_crop_mode(self.img_size, self.augmentation.crop_mode)
        self.crop_pct = default_crop_pct(self.img_size) if model_input.crop_pct is None else float(model_input.crop_pct)
        if self.spec.kind == "folder" and path is None:
            raise ValueError(f"dataset '{self.dataset}' needs a path. Fix: --data.path ROOT (ROOT/train/CLASS/*.jpg, "
                             "ROOT/val/CLASS/*.jpg).")
        self.root = Path(path) if path is not None else self._default_root()
        self._class_names: list[str] | None = None
        self._tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.train_set = self.val_set = self.test_set = None
        self.test_split = "test"  # which split test_dataloader() serves ("test" or "val")
        self.val_split = "val"  # which split val_dataloader() serves ("val", "test" or "train-holdout")
        self.pipeline: str | None = None  # "cpu" or "device" once image-folder datasets are built
        self.finish = BatchNormalizeErase(self.mean, self.std, self.augmentation)
        self._device_pipelines: dict[bool, DevicePipeline] = {}

    # ------------------------------------------------------------------------------------------------ metadata
    def _default_root(self) -> Path | None:
        if self.spec.path is None:
            return None
        default = Path(self.spec.path)
        if self.hparams.download and self.spec.download_path is not None and not default.is_dir():
            return Path(self.spec.download_path)
        return default

    @property
    def class_names(self) -> list[str]:
        """Class names, index = label. Image folders: the sorted folder names of the training split."""
        if self._class_names is None:
            if self.spec.kind == "folder":
                self._class_names = find_image_classes(self._imagefolder_train_dir())
            elif self.spec.kind == "synthetic":
                self._class_names = [f"class_{i}" for i in range(self.hparams.synthetic_num_classes)]
            else:
                self._class_names = list(self.spec.class_names)
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def interpolation(self) -> str:
        """The resize interpolation (linked into the model, like the image size)."""
        return self.hparams.interpolation

    @property
    def batch_size(self) -> int:
        """Training batch size per device."""
        return self.hparams.batch_size

    @property
    def has_test(self) -> bool:
        """Whether the data has its own test split (image folders without ``test/`` test on the validation split)."""
        return self.spec.kind != "folder" or (self.root / "test").is_dir()

    @property
    def eval_transform(self):
        """The per-image evaluation transform (PIL image of any mode -> tensor), as used for prediction."""
        return self._eval_transform(uint8=False)

    @property
    def train_transform(self):
        """The per-image training transform (PIL image of any mode -> tensor)."""
        return self._train_transform(uint8=False)

    def _eval_transform(self, uint8: bool):
        return build_eval_transform(self.img_size, self.in_chans, self.mean, self.std, self.crop_pct,
                                    self.hparams.interpolation, uint8=uint8)

    def _train_transform(self, uint8: bool):
        """Normalised floats, or (``uint8``) the image before normalisation and erasing, for :attr:`finish`."""
        return build_train_transform(self.img_size, self.in_chans, self.mean, self.std, self.augmentation,
                                     self.hparams.interpolation, uint8=uint8)

    @property
    def num_bad_images(self) -> int:
        """Distinct unreadable images skipped so far (needs ``skip_bad_images``), over all splits and workers."""
        return sum(ds.num_bad for ds in self._file_datasets())

    @property
    def bad_images(self) -> list[Path]:
        """The unreadable image files skipped so far."""
        return sorted({p for ds in self._file_datasets() for p in ds.bad_paths})

    def _file_datasets(self) -> list[ImageFileDataset]:
        sets = (self.train_set, self.val_set, self.test_set)
        return [ds for ds in {id(s): s for s in sets}.values() if isinstance(ds, ImageFileDataset)]

    # ------------------------------------------------------------------------------------------------ lightning
    def prepare_data(self) -> None:
        """Download the dataset (its spec's ``download``) when ``download`` is set and the files are missing."""
        if self.hparams.download and self.spec.download is not None:
            self.spec.download(self.root)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets a stage needs: "fit" (train + val), "validate", "test" (all if None)."""
        if stage in (None, "fit") and self.train_set is None:
            self.train_set, self.val_set = self._build_train_val()
        if stage in (None, "validate") and self.val_set is None:
            self.val_set = self._build_train_val()[1]
        if stage in (None, "test") and self.test_set is None:
            self.test_set = self._build_test()

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
    def _split_indices(self, labels: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) indices of a seeded ``val_fraction`` hold-out, stratified: each class gives its share
        (largest remainders, so that the total is the fraction of all images) and keeps at least one training
        image. torch's random_split is not stratified; scikit-learn's train_test_split(stratify=) is, but it is
        no dependency, and it refuses classes of one image, which are kept for training here with a warning."""
        fraction = self.hparams.val_fraction
        labels = torch.as_tensor(labels)
        generator = torch.Generator().manual_seed(self.hparams.seed)
        classes, counts = labels.unique(return_counts=True)
        quota = counts.double() * fraction
        n_val = torch.minimum(quota.floor().long(), counts - 1)
        extra = max(1, round(len(labels) * fraction)) - int(n_val.sum())
        ties = torch.rand(len(classes), generator=generator)  # seeded: equal remainders drawn fairly
        for c in sorted(range(len(classes)), key=lambda c: (-float(quota[c] - quota[c].floor()), float(ties[c]))):
            if extra <= 0:
                break
            if n_val[c] < counts[c] - 1:
                n_val[c] += 1
                extra -= 1
        lonely = [self.class_names[int(c)] for c, k in zip(classes, counts) if k < 2]
        if lonely:
            rank_zero_warn(f"class(es) with fewer than 2 images, kept for training only (none to validate on): "
                           f"{', '.join(lonely[:10])}{' ...' if len(lonely) > 10 else ''}. Fix: add images of them")
        if int(n_val.sum()) == 0:
            raise ValueError(f"val_fraction={fraction} holds out no image: no class has 2 or more images to share "
                             "between training and validation. Fix: add images, or give a val/ folder")
        train, val = [], []
        for c, k in zip(classes, n_val):
            members = (labels == c).nonzero().flatten()
            members = members[torch.randperm(len(members), generator=generator)]
            val.append(members[:k])
            train.append(members[k:])
        return torch.cat(train).sort().values, torch.cat(val).sort().values

    def _build_train_val(self) -> tuple[Dataset, Dataset]:
        if self.spec.kind == "folder":
            return self._imagefolder_train_val()
        x, y = self._read_tensors("train")
        if self.hparams.val_fraction > 0:
            tr, va = self._split_indices(y)
            self.val_split = "train-holdout"
            return self._tensor_dataset(x[tr], y[tr], train=True), self._tensor_dataset(x[va], y[va], train=False)
        self.val_split = "test"
        xt, yt = self._read_tensors("test")
        return self._tensor_dataset(x, y, train=True), self._tensor_dataset(xt, yt, train=False)

    def _build_test(self) -> Dataset:
        if self.spec.kind == "folder":
            test_dir = self.root / "test"
            if test_dir.is_dir():
                self.test_split = "test"
                return self._file_dataset(*scan_image_folder(test_dir, self.class_names), train=False)
            rank_zero_warn(f"no test split at '{test_dir}': testing on the validation split instead")
            self.test_split = "val"
            return self.val_set if self.val_set is not None else self._imagefolder_train_val()[1]
        return self._tensor_dataset(*self._read_tensors("test"), train=False)

    def _read_tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self._tensors:
            h = self.hparams
            if self.spec.kind == "tensors":
                self._tensors[split] = self.spec.read(self.root, split)
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
                color = build_color_transform(self.img_size, self.mean, self.augmentation, h.interpolation)
                return TensorImageDataset(images, labels, self.in_chans, batch_transform=BatchTrainTransform(
                    self.img_size, self.mean, self.std, self.augmentation, h.interpolation, color=color))
            return TensorImageDataset(images, labels, self.in_chans, transform=self.train_transform)
        if self.crop_pct == 1.0:
            return TensorImageDataset(images, labels, self.in_chans, batch_transform=BatchEvalTransform(
                self.img_size, self.mean, self.std, h.interpolation))
        return TensorImageDataset(images, labels, self.in_chans, transform=self.eval_transform)

    def _file_dataset(self, paths: Sequence[Path], labels: Sequence[int], train: bool) -> ImageFileDataset:
        h = self.hparams
        on_bad = "substitute" if train else "drop"
        if self._resolve_pipeline() == "device":
            return EncodedFileDataset(paths, labels, self.in_chans, skip_bad=h.skip_bad_images, on_bad=on_bad)
        transform = self._train_transform(uint8=True) if train else self._eval_transform(uint8=True)
        return ImageFileDataset(paths, labels, self.in_chans, transform, skip_bad=h.skip_bad_images, on_bad=on_bad)

    # ------------------------------------------------------------------------------------------------ pipelines
    def _device_pipeline_unsupported(self) -> str | None:
        """Why the device pipeline cannot run these options (None when it can)."""
        aug = self.augmentation
        if self.crop_mode != "resized":
            return f"crop_mode '{self.crop_mode}' (it does the resized crop only)"
        if aug.color_jitter:
            return "color_jitter (it has no colour jitter; use auto_augment)"
        if aug.auto_augment:
            try:
                self._device_pipeline(train=True)  # builds the batched auto-augment, which refuses what it lacks
            except ValueError as e:
                return f"auto_augment '{aug.auto_augment}' ({e})"
        return None

    def _device_pipeline(self, train: bool) -> DevicePipeline:
        if train not in self._device_pipelines:
            self._device_pipelines[train] = DevicePipeline(self.img_size, train, self.mean, self.augmentation,
                                                           self.crop_pct, self.hparams.interpolation)
        return self._device_pipelines[train]

    def _device(self) -> torch.device:
        return self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")

    def _resolve_pipeline(self) -> str:
        """The image-folder pipeline: "cpu" or "device" (see the class docstring), decided once."""
        if self.pipeline is None:
            asked = self.hparams.pipeline
            if asked == "auto":
                asked = "device" if self._device().type == "cuda" and not self._device_pipeline_unsupported() else "cpu"
            elif asked == "device" and (why_not := self._device_pipeline_unsupported()):
                raise ValueError(f"pipeline 'device' cannot run {why_not}. Fix: --data.pipeline cpu, or drop "
                                 "that option.")
            self.pipeline = asked
        return self.pipeline

    def finish_batch(self, batch, train: bool, device: torch.device | str | None = None):
        """Turn a loader's batch into ``(normalised float images, labels)`` on ``device`` (default: where the
        batch is): decode and augment an undecoded batch (device pipeline), normalise (and, for training, erase)
        uint8 images. Batches that are already finished (in-memory datasets) pass through."""
        if isinstance(batch, EncodedBatch):
            device = torch.device(device) if device is not None else torch.device("cpu")
            dataset = self._dataset_of(batch, train)
            images, labels = decode_images(batch, dataset, self.in_chans, device)
            if not images:
                return torch.empty(0, self.in_chans, self.img_size, self.img_size, device=device), labels
            batch = self._device_pipeline(train)(images), labels
        x, y = batch
        if device is not None:
            x, y = x.to(device), y.to(device)
        if x.dtype == torch.uint8:
            x = self.finish(x, train)
        return x, y

    def _dataset_of(self, batch: EncodedBatch, train: bool) -> ImageFileDataset:
        """The dataset an undecoded batch came from (for file names and the bad-image record)."""
        if train:
            return self.train_set
        stage = self.trainer.state.stage if self.trainer is not None else None
        if stage is not None and stage.value == "test" and isinstance(self.test_set, ImageFileDataset):
            return self.test_set
        return self.val_set if isinstance(self.val_set, ImageFileDataset) else self.test_set

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Lightning's hook, run on each batch once it is on the device: :meth:`finish_batch` there."""
        train = self.trainer is not None and self.trainer.training
        return self.finish_batch(batch, train, self._device() if isinstance(batch, EncodedBatch) else None)

    def _imagefolder_train_dir(self) -> Path:
        root = self.root
        if root.is_file():
            raise NotADirectoryError(f"--data.path '{root}' is a file; it needs a folder. Fix: give the folder that "
                                     "holds ROOT/train/CLASS/*.jpg (or ROOT/CLASS/*.jpg with --data.val_fraction)")
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
            tr, va = self._split_indices(labels)
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
        if isinstance(dataset, EncodedFileDataset):
            collate = collate_encoded
        elif isinstance(dataset, ImageFileDataset) and dataset.on_bad == "drop":
            collate = SkipNoneCollate((self.in_chans, self.img_size, self.img_size), torch.uint8)
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
    # the fields' help, for --help
    __doc__ = __doc__.format(settings=settings_doc(data_settings.DATA_GROUPS, indent=" " * 8))


def data_signature() -> inspect.Signature:
    """ImageDataModule's parameters, the ``--data.KEY`` options: one per settings field; only ``dataset`` and
    ``path`` may be passed by position."""
    return init_signature(data_settings.DATA_GROUPS, 2)


ImageDataModule.__init__.__signature__ = data_signature()
