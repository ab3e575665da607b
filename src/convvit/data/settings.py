"""The data settings of ``convvit fit | validate | test`` (``--data.KEY``, :class:`ImageDataModule`'s keyword
arguments), in typed groups, each declared once with its policy (see :mod:`convvit.settings`).

Groups: :class:`DatasetSettings` (which images, and how they are split), :class:`Input` (what the model sees: linked
into it and fixed by its checkpoint), :class:`Augmentation` (the training transforms, handed whole to the
builders in :mod:`convvit.data.transforms` and :mod:`convvit.data.device_pipeline`) and :class:`Loading`
(batches, workers, pipeline). The options and checkpoints' ``datamodule_hyper_parameters`` stay flat.
Standard library only, and this package's ``__init__`` loads lazily, so that the fast option check reads the
names without importing torch.
(No ``from __future__ import annotations``: jsonargparse reads the fields' types from the signature.)
"""
from dataclasses import dataclass

from convvit import settings as _settings
from convvit.settings import RESUME_MAY_CHANGE, setting

__all__ = ["DATA_GROUPS", "Augmentation", "DatasetSettings", "Input", "Loading", "data_setting_names"]


@dataclass
class DatasetSettings:
    """Which images, and how they are split. A resumed run may be given other ones (a moved folder, a new
    split): the model checks the class names it is given against its checkpoint's."""

    dataset: str = setting("fashion_mnist", policy=RESUME_MAY_CHANGE,
                           doc="registered dataset name (imagefolder, fashion_mnist, cifar10, cifar100, synthetic).")
    path: str | None = setting(None, doc="the dataset's folder (default: the dataset's own).",
                               policy=RESUME_MAY_CHANGE)
    download: bool = setting(False, doc="download the dataset when its files are missing (where it can).",
                             policy=RESUME_MAY_CHANGE)
    val_fraction: float = setting(0.0, doc="hold out this fraction of the training images for validation.",
                                  policy=RESUME_MAY_CHANGE)
    seed: int = setting(0, doc="seed of the validation hold-out and of the synthetic images.",
                        policy=RESUME_MAY_CHANGE)
    synthetic_num_classes: int = setting(10, doc="classes of the synthetic dataset.", policy=RESUME_MAY_CHANGE)
    synthetic_size: int = setting(512, doc="training images of the synthetic dataset.", policy=RESUME_MAY_CHANGE)
    skip_bad_images: bool = setting(False, doc="skip (and log) unreadable images instead of stopping.",
                                    policy=RESUME_MAY_CHANGE)


@dataclass
class Input:
    """What the model sees: linked into the model (``--model.img_size`` ...), so a resumed or evaluated run's
    data must resolve to the checkpoint's values (None: the dataset's default)."""

    img_size: int | None = setting(None, doc="input size (default: the dataset's).", fixed_by_checkpoint=True)
    in_chans: int | None = setting(None, doc="input channels, 1 or 3 (default: the dataset's).",
                                   fixed_by_checkpoint=True)
    mean: tuple[float, ...] | None = setting(None, doc="normalisation mean (default: the dataset's, or ImageNet's).",
                                             fixed_by_checkpoint=True)
    std: tuple[float, ...] | None = setting(None, doc="normalisation std (default: the dataset's, or ImageNet's).",
                                            fixed_by_checkpoint=True)
    interpolation: str = setting("bicubic", doc="resize interpolation.", fixed_by_checkpoint=True)
    crop_pct: float | None = setting(None, doc="evaluation center-crop fraction (default: 0.875 above 64 px, "
                                               "1.0 below).", fixed_by_checkpoint=True)


@dataclass
class Augmentation:
    """Training augmentation (timm's). A resumed run may be given another one (nothing checked it before the
    groups, and e.g. DeiT's recipes turn augmentation down for the last epochs); evaluation does not use it."""

    crop_mode: str | None = setting(None, policy=RESUME_MAY_CHANGE,
                                    doc="'resized' (RandomResizedCrop) or 'padded' (pad then random crop); default: "
                                        "padded up to 64 px, resized above.")
    scale: tuple[float, float] = setting((0.08, 1.0), doc="RandomResizedCrop area range.", policy=RESUME_MAY_CHANGE)
    ratio: tuple[float, float] = setting((3 / 4, 4 / 3), doc="RandomResizedCrop aspect-ratio range.",
                                         policy=RESUME_MAY_CHANGE)
    crop_padding: int = setting(4, doc="padding of the padded crop.", policy=RESUME_MAY_CHANGE)
    hflip: float = setting(0.5, doc="horizontal flip probability.", policy=RESUME_MAY_CHANGE)
    vflip: float = setting(0.0, doc="vertical flip probability.", policy=RESUME_MAY_CHANGE)
    color_jitter: float | tuple[float, ...] | None = setting(
        None, doc="color jitter strength (off while auto_augment is set, as in timm).", policy=RESUME_MAY_CHANGE)
    auto_augment: str | None = setting(None, policy=RESUME_MAY_CHANGE,
                                       doc="timm auto-augment string, e.g. 'rand-m9-mstd0.5-inc1', 'augmix-m5-w4-d2', "
                                           "'original'.")
    re_prob: float = setting(0.0, doc="random erasing probability.", policy=RESUME_MAY_CHANGE)
    re_mode: str = setting("pixel", doc="random erasing fill ('const', 'rand' or 'pixel').", policy=RESUME_MAY_CHANGE)
    re_count: int = setting(1, doc="random erasing: at most this many boxes.", policy=RESUME_MAY_CHANGE)
    repeated_aug: int = setting(0, doc="repeated augmentation: each image this many times per epoch (> 1).",
                                policy=RESUME_MAY_CHANGE)


@dataclass
class Loading:
    """How batches are made: how the run goes, not what it learns."""

    batch_size: int = setting(128, doc="training batch size per device.", policy=RESUME_MAY_CHANGE)
    eval_batch_size: int | None = setting(None, doc="evaluation batch size (default: batch_size).",
                                          policy=RESUME_MAY_CHANGE)
    num_workers: int = setting(2, doc="DataLoader worker processes.", policy=RESUME_MAY_CHANGE)
    pin_memory: bool | None = setting(None, doc="pin batches (default: when CUDA is available).",
                                      policy=RESUME_MAY_CHANGE)
    persistent_workers: bool = setting(True, doc="keep the workers between epochs.", policy=RESUME_MAY_CHANGE)
    pipeline: str = setting("auto", policy=RESUME_MAY_CHANGE,
                            doc="image folders: 'cpu' (workers decode and augment), 'device' (the training device "
                                "does) or 'auto'.")


# In the order of ImageDataModule's parameters (and --help): dataset and path first, as positional callers give them.
DATA_GROUPS: tuple[type, ...] = (DatasetSettings, Input, Augmentation, Loading)


def data_setting_names() -> list[str]:
    """Every flat data setting, as ``--data.KEY`` names it."""
    return _settings.setting_names(DATA_GROUPS)
