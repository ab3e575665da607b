"""Train and eval transforms, built from timm's pipeline.

Two crop styles: ``"resized"`` (timm's RandomResizedCrop, for ImageNet-like images) and ``"padded"`` (pad by
``crop_padding`` then random-crop back, the CIFAR/MNIST convention). Default: ``"padded"`` up to 64 px,
``"resized"`` above. The augmentations after the crop (RandAugment/AutoAugment/AugMix, color jitter,
normalisation, random erasing) are timm's own.

For uint8 tensor datasets (Fashion-MNIST, CIFAR, synthetic) the padded pipeline also exists as
:class:`BatchTrainTransform`: crop, flips, normalisation and erasing as a few tensor ops per batch, only the
PIL-only augmentations (auto_augment, color jitter) per image. Same steps and distribution as the per-image
pipeline, a fraction of the CPU per image.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import auto_augment as timm_aa
from timm.data import create_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_interp_mode
from torchvision import transforms

from convvit.data.images import convert_image
from convvit.data.settings import Augmentation

__all__ = [
    "BatchEvalTransform", "BatchNormalizeErase", "BatchTrainTransform", "ConvertImage", "build_color_transform",
    "build_eval_transform", "build_train_transform", "resolve_crop_mode",
]

CROP_MODES = ("padded", "resized")
SMALL_IMAGE_MAX = 64  # images up to this size default to the padded crop and to evaluation without center crop


def resolve_crop_mode(img_size: int, crop_mode: str | None = None) -> str:
    """``crop_mode`` checked, or the default for ``img_size``: 'padded' up to 64 px, else 'resized'."""
    if crop_mode is None:
        return "padded" if img_size <= SMALL_IMAGE_MAX else "resized"
    if crop_mode not in CROP_MODES:
        raise ValueError(f"unknown crop_mode '{crop_mode}'; valid: {', '.join(CROP_MODES)}")
    return crop_mode


def default_crop_pct(img_size: int) -> float:
    """Eval center-crop fraction: timm's 0.875 for large images, 1.0 (no crop) for small ones."""
    return 1.0 if img_size <= SMALL_IMAGE_MAX else 0.875


class ConvertImage:
    """Convert a PIL image of any mode to ``in_chans`` channels (see :func:`convvit.data.convert_image`)."""

    def __init__(self, in_chans: int):
        self.in_chans = in_chans

    def __call__(self, img: Image.Image) -> Image.Image:
        return convert_image(img, self.in_chans)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_chans={self.in_chans})"


def _check_stats(in_chans: int, mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have in_chans={in_chans} values each")


def _posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, also for 0 bits (a black image, as before Pillow 13, which rejects 0 bits)."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return timm_aa.posterize(img, bits_to_keep)


def _fix_posterize(transform) -> None:
    """Route the Posterize ops of a timm RandAugment/AutoAugment/AugMix through :func:`_posterize`: at high
    magnitudes (e.g. 'rand-m9-mstd0.5-inc1' sampling m=10) they ask for 0 bits, which Pillow >= 13 rejects."""
    ops = list(getattr(transform, "ops", [])) + [op for sub in getattr(transform, "policy", []) for op in sub]
    for op in ops:
        if getattr(op, "aug_fn", None) is timm_aa.posterize:
            op.aug_fn = _posterize


def build_color_transform(
        img_size: int,
        mean: Sequence[float],
        augmentation: Augmentation | None = None,
        interpolation: str = "bicubic",
) -> Callable[[Image.Image], Image.Image] | None:
    """timm's per-image PIL stage that follows the crop: ``augmentation.auto_augment`` (RandAugment/AutoAugment/
    AugMix) or its color jitter (off while auto_augment is set, as in timm). None when there is nothing to do."""
    aug = augmentation or Augmentation()
    _, secondary, _ = create_transform(
        img_size, is_training=True, color_jitter=aug.color_jitter, auto_augment=aug.auto_augment,
        interpolation=interpolation, mean=mean, separate=True,
    )
    return _color_stage(secondary)


def _color_stage(secondary: transforms.Compose) -> transforms.Compose | None:
    """The colour stage of timm's ``create_transform(..., separate=True)``, with 0-bit posterize fixed; None if
    empty."""
    for t in secondary.transforms:
        _fix_posterize(t)
    return secondary if secondary.transforms else None


def build_train_transform(
        img_size: int,
        in_chans: int,
        mean: Sequence[float],
        std: Sequence[float],
        augmentation: Augmentation | None = None,
        interpolation: str = "bicubic",
        uint8: bool = False,
) -> Callable[[Image.Image], torch.Tensor]:
    """Training transform: PIL image (any mode) -> normalised float tensor (in_chans, img_size, img_size), with
    the crop, flips, colour stage and random erasing of ``augmentation`` (default: :class:`Augmentation`'s).

    With ``uint8`` it stops before normalisation and random erasing and returns the uint8 tensor, for
    :class:`BatchNormalizeErase` to finish a batch at a time in the training process (timm's prefetcher split).

    ``augmentation.auto_augment`` takes timm's strings: 'rand-m9-mstd0.5-inc1' (RandAugment), 'augmix-m5-w4-d2'
    (AugMix), 'original' / 'v0' / 'v0r' / '3a' (AutoAugment policies). Color jitter is off while auto_augment is
    set, as in timm.
    """
    _check_stats(in_chans, mean, std)
    aug = augmentation or Augmentation()
    crop_mode = resolve_crop_mode(img_size, aug.crop_mode)
    # timm builds the colour/augment and tensor stages; the crop stage is timm's too unless padded.
    primary, secondary, final = create_transform(
        (in_chans, img_size, img_size), is_training=True, scale=aug.scale, ratio=aug.ratio, hflip=aug.hflip,
        vflip=aug.vflip, color_jitter=aug.color_jitter, auto_augment=aug.auto_augment, interpolation=interpolation,
        mean=mean, std=std, re_prob=aug.re_prob, re_mode=aug.re_mode, re_count=aug.re_count, separate=True,
        use_prefetcher=uint8,
    )
    secondary = _color_stage(secondary)
    if crop_mode == "padded":
        primary = [
            transforms.Resize(img_size, interpolation=str_to_interp_mode(interpolation)),
            transforms.RandomCrop(img_size, padding=aug.crop_padding, pad_if_needed=True),
        ]
        primary += [transforms.RandomHorizontalFlip(aug.hflip)] if aug.hflip > 0 else []
        primary += [transforms.RandomVerticalFlip(aug.vflip)] if aug.vflip > 0 else []
    else:
        primary = list(primary.transforms)
    secondary = secondary.transforms if secondary is not None else []
    return transforms.Compose([ConvertImage(in_chans), *primary, *secondary, *final.transforms])


def build_eval_transform(
        img_size: int,
        in_chans: int,
        mean: Sequence[float],
        std: Sequence[float],
        crop_pct: float | None = None,
        interpolation: str = "bicubic",
        uint8: bool = False,
) -> Callable[[Image.Image], torch.Tensor]:
    """Evaluation / prediction transform: PIL image (any mode) -> normalised float tensor (in_chans, H, W), or
    with ``uint8`` the uint8 tensor before normalisation (see :class:`BatchNormalizeErase`).

    Resizes the shorter side to ``img_size / crop_pct`` and center-crops ``img_size`` (timm's eval transform).
    ``crop_pct`` defaults to 0.875 above 64 px and 1.0 (resize only) for small images.
    """
    _check_stats(in_chans, mean, std)
    crop_pct = default_crop_pct(img_size) if crop_pct is None else crop_pct
    timm_tf = create_transform(
        (in_chans, img_size, img_size), is_training=False, crop_pct=crop_pct, interpolation=interpolation,
        mean=mean, std=std, use_prefetcher=uint8,
    )
    return transforms.Compose([ConvertImage(in_chans), *timm_tf.transforms])


# ------------------------------------------------------------------------------------------------- batched tensors
def _resize_batch(x: torch.Tensor, img_size: int, interpolation: str) -> torch.Tensor:
    """Resize a uint8 (B, C, H, W) batch of square images to img_size (antialiased, like PIL)."""
    if x.shape[-1] == img_size and x.shape[-2] == img_size:
        return x
    y = F.interpolate(x.float(), size=(img_size, img_size), mode=interpolation, antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8)


class _BatchNormalize:
    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) / std_t

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # uint8 (B, C, H, W) -> float
        if self.scale.device != x.device:
            self.scale, self.shift = self.scale.to(x.device), self.shift.to(x.device)
        return x.to(torch.float32, copy=True).mul_(self.scale).add_(self.shift)  # one float buffer, not two


class BatchNormalizeErase:
    """The last steps of the image pipeline on a uint8 batch (B, C, H, W) on any device, in the training process
    (what timm's PrefetchLoader does after its workers): to float, normalise, and for training batches timm's
    RandomErasing (``augmentation``'s ``re_*``). Loader workers then stop at uint8 tensors, a quarter of the bytes
    to pass and pin."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], augmentation: Augmentation | None = None):
        aug = augmentation or Augmentation()
        self.normalize = _BatchNormalize(mean, std)
        self.re_prob, self.re_mode, self.re_count = aug.re_prob, aug.re_mode, aug.re_count
        self._erase: dict[torch.device, RandomErasing] = {}  # timm draws erased pixels on the device it is given

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        x = self.normalize(x)
        if train and self.re_prob > 0 and len(x):
            if x.device not in self._erase:
                self._erase[x.device] = RandomErasing(self.re_prob, mode=self.re_mode, max_count=self.re_count,
                                                      device=x.device)
            x = self._erase[x.device](x)
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(re_prob={self.re_prob}, re_mode={self.re_mode!r}, re_count={self.re_count})"


def _pil_each(x: torch.Tensor, fn: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    """Apply a PIL transform to every image of a uint8 (B, C, H, W) batch."""
    out = []
    for img in x.permute(0, 2, 3, 1).numpy():  # (H, W, C) each
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        arr = torch.from_numpy(np.array(fn(pil), dtype=np.uint8))
        out.append(arr.unsqueeze(0) if arr.ndim == 2 else arr.permute(2, 0, 1))
    return torch.stack(out)


class BatchTrainTransform:
    """The padded-crop training pipeline on a uint8 batch (B, C, H, W): resize (if needed), pad
    ``augmentation.crop_padding`` and random-crop back, random flips (all as batch tensor ops), then ``color`` per
    image if given (timm's auto_augment / color jitter, see :func:`build_color_transform`), then normalise and timm
    RandomErasing on the batch. Same steps and distribution as :func:`build_train_transform` with
    crop_mode='padded'. Run it on one thread (:class:`~convvit.data.datasets.TensorImageDataset` does)."""

    def __init__(
            self,
            img_size: int,
            mean: Sequence[float],
            std: Sequence[float],
            augmentation: Augmentation | None = None,
            interpolation: str = "bicubic",
            color: Callable[[Image.Image], Image.Image] | None = None,
    ):
        aug = augmentation or Augmentation()
        self.img_size, self.padding, self.hflip, self.vflip = img_size, aug.crop_padding, aug.hflip, aug.vflip
        self.color = color
        self.interpolation = interpolation
        self.finish = BatchNormalizeErase(mean, std, aug)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _resize_batch(x, self.img_size, self.interpolation)
        b, _, h, w = x.shape
        if self.padding > 0:
            p = self.padding
            top = torch.randint(0, 2 * p + 1, (b,))
            left = torch.randint(0, 2 * p + 1, (b,))
            windows = F.pad(x, (p, p, p, p)).unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 2p+1, 2p+1, H, W) view
            x = windows[torch.arange(b), :, top, left]  # (B, C, H, W)
        if self.hflip > 0:
            flip = torch.rand(b) < self.hflip
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
        if self.vflip > 0:
            flip = torch.rand(b) < self.vflip
            x = torch.where(flip.view(b, 1, 1, 1), x.flip(-2), x)
        if self.color is not None:
            x = _pil_each(x, self.color)
        return self.finish(x, train=True)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(img_size={self.img_size}, padding={self.padding}, hflip={self.hflip}, "
                f"vflip={self.vflip}, color={self.color}, finish={self.finish})")


class BatchEvalTransform:
    """Evaluation on a uint8 batch of square images: resize (if needed) and normalise, like
    :func:`build_eval_transform` with crop_pct=1."""

    def __init__(self, img_size: int, mean: Sequence[float], std: Sequence[float], interpolation: str = "bicubic"):
        self.img_size, self.interpolation = img_size, interpolation
        self.normalize = _BatchNormalize(mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(_resize_batch(x, self.img_size, self.interpolation))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(img_size={self.img_size})"
