"""The device pipeline for image folders: loader workers only read each file's bytes; the training process
decodes the batch and augments it as a batch on its own device (the GPU under CUDA, each DDP rank its own).

Decoding: torchvision's batched ``decode_jpeg`` (nvJPEG on CUDA, libjpeg-turbo on CPU); files it cannot take
(PNG and other formats, CMYK, 12-bit, progressive or EXIF-rotated JPEGs on CUDA, corrupt files) fall back to
PIL one file at a time, with the CPU path's bad-image policy (:meth:`ImageFileDataset.mark_bad`).

Training: timm's RandomResizedCrop (the same box distribution, drawn for the whole batch at once) as one
``torchvision.ops.roi_align`` over the batch, flips, the configured auto-augment
(:mod:`convvit.data.batch_augment`), normalisation and timm's random erasing; Mixup/CutMix follow in the
training step. Evaluation: resize the shorter side to ``img_size / crop_pct`` and centre-crop, as one roi_align.

Random draws come from torch's CPU generator (boxes, flips) and the device's generator, both seeded by
``seed_everything`` and saved in checkpoints by the RngStates callback, so a seed gives the same batches and a
resumed fit continues the same stream.
"""
from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import roi_align

from convvit.data.datasets import ImageFileDataset
from convvit.data.images import BadImageError, load_image
from convvit.data.jpeg_header import read_jpeg_header
from convvit.data.settings import Augmentation

__all__ = [
    "DevicePipeline", "EncodedBatch", "EncodedFileDataset", "center_crop_boxes", "collate_encoded", "crop_resize",
    "decode_images", "random_resized_crop_boxes",
]

# roi_align needs float input: a batch is cropped in chunks whose float copy stays under this many elements
# (256 Mi floats = 1 GiB), so a batch of large photos does not need tens of GiB at once.
_CROP_CHUNK_ELEMENTS = 256 * 1024 * 1024


@dataclass
class EncodedBatch:
    """A batch as the loader workers deliver it: each file's bytes (uint8, 1-D, on the CPU, where the decoders
    want them), labels, and dataset indices (for error messages and the bad-image record). Not a tensor
    collection, so Lightning leaves it on the CPU when it moves batches to the device."""

    data: list[torch.Tensor]
    labels: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return len(self.data)


class EncodedFileDataset(ImageFileDataset):
    """Image files delivered as their undecoded bytes: ``(uint8 tensor, label, index)``. A file that cannot be
    read follows the bad-image policy of :class:`ImageFileDataset`; one that cannot be decoded is found later,
    by :func:`decode_images`."""

    def _read(self, index: int):
        path = self.path(index)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise BadImageError(
                f"cannot read image '{path}': {e.strerror or e}. Fix: replace or delete the file, or skip "
                "unreadable images with skip_bad_images=True (CLI: --data.skip_bad_images true)."
            ) from e
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), int(self.labels[index]), index


def collate_encoded(samples: list) -> EncodedBatch:
    """Collate ``(bytes, label, index)`` samples, dropping skipped ones (None)."""
    samples = [s for s in samples if s is not None]
    if not samples:
        return EncodedBatch([], torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    data, labels, indices = zip(*samples)
    return EncodedBatch(list(data), default_collate(labels), torch.as_tensor(indices, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ decoding
def _batch_decodable(data: torch.Tensor, on_cuda: bool) -> bool:
    """Whether torchvision's decode_jpeg gives what PIL would: 8-bit gray/colour JPEGs (CMYK and YCCK colour
    conversions differ from PIL's); on CUDA also only sequential JPEGs without an EXIF rotation, which nvJPEG
    ignores."""
    header = read_jpeg_header(data.numpy())
    if header is None or header.precision != 8 or header.components not in (1, 3):
        return False
    return not on_cuda or (header.baseline_8bit and header.orientation == 1)


def _decode_jpegs(data: list[torch.Tensor], mode: ImageReadMode, device: torch.device) -> list[torch.Tensor | None]:
    """Batched decode; if the batch fails as a whole (decode_jpeg returns nothing when one file fails), each file
    again on its own, None where it fails."""
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs for TorchCodec, not installed here
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return list(decode_jpeg(data, mode=mode, device=device, apply_exif_orientation=True))
        except RuntimeError:
            out = []
            for d in data:
                try:
                    out.append(decode_jpeg(d, mode=mode, device=device, apply_exif_orientation=True))
                except RuntimeError:
                    out.append(None)
            return out


def decode_images(batch: EncodedBatch, dataset: ImageFileDataset, in_chans: int, device: torch.device
                  ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Decode an :class:`EncodedBatch` to uint8 ``(in_chans, H, W)`` images on ``device`` and their labels.

    JPEGs are decoded in one batched call; other files, and JPEGs that call cannot take, go through PIL one by
    one (:func:`convvit.data.load_image`, as on the CPU path). Undecodable files follow ``dataset``'s bad-image
    policy: an error naming the file, or (``skip_bad_images``) recorded, logged and left out of the batch.
    """
    device = torch.device(device)
    mode = ImageReadMode.GRAY if in_chans == 1 else ImageReadMode.RGB
    images: list[torch.Tensor | None] = [None] * len(batch)
    batched = [k for k, d in enumerate(batch.data) if _batch_decodable(d, device.type == "cuda")]
    if batched:
        for k, img in zip(batched, _decode_jpegs([batch.data[k] for k in batched], mode, device)):
            images[k] = img
    for k, img in enumerate(images):
        if img is not None:
            continue
        index = int(batch.indices[k])
        try:
            pil = load_image(io.BytesIO(batch.data[k].numpy().tobytes()), in_chans, name=dataset.path(index))
        except BadImageError as e:
            dataset.mark_bad(index, e)  # raises unless bad images are skipped
            continue
        arr = torch.frombuffer(bytearray(pil.tobytes()), dtype=torch.uint8).view(pil.height, pil.width, -1)
        images[k] = arr.permute(2, 0, 1).to(device)
    keep = [k for k, img in enumerate(images) if img is not None]
    return [images[k] for k in keep], batch.labels[keep].to(device)


# ------------------------------------------------------------------------------------------------ crop boxes
def random_resized_crop_boxes(
        sizes: torch.Tensor, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
        attempts: int = 10,
) -> torch.Tensor:
    """timm's RandomResizedCrop boxes for a batch of images of ``sizes`` (B, 2) = (height, width): ``(B, 4)``
    float boxes ``x1, y1, x2, y2`` in pixel-edge coordinates.

    The same distribution as ``timm.data.transforms.RandomResizedCropAndInterpolation.get_params``: up to
    ``attempts`` draws of area fraction (uniform in ``scale``) and log aspect ratio (uniform in log ``ratio``),
    the first that fits the image wins, at a uniform integer position; otherwise the central crop clipped to the
    ratio range. All attempts are drawn at once (timm stops at the first fit), so the stream of draws differs
    but not their distribution. Draws use torch's CPU generator.
    """
    sizes = sizes.to(torch.float64)
    h, w = sizes[:, 0:1], sizes[:, 1:2]  # (B, 1)
    b = len(sizes)
    area = h * w
    target_area = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(b, attempts, dtype=torch.float64))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(b, attempts, dtype=torch.float64))
    # torch.round, like Python's round, rounds halves to even
    cw, ch = torch.sqrt(target_area * aspect).round(), torch.sqrt(target_area / aspect).round()
    fits = (cw <= w) & (ch <= h)
    first = fits.to(torch.uint8).argmax(1, keepdim=True)
    cw, ch, found = cw.gather(1, first), ch.gather(1, first), fits.any(1, keepdim=True)
    top = torch.floor(torch.rand(b, 1, dtype=torch.float64) * (h - ch + 1))  # random.randint(0, h - ch)
    left = torch.floor(torch.rand(b, 1, dtype=torch.float64) * (w - cw + 1))
    # fallback: the whole image, or its centre cut to the nearest allowed aspect ratio
    in_ratio = w / h
    lo, hi = min(ratio), max(ratio)
    fw = torch.where(in_ratio > hi, (h * hi).round(), w)
    fh = torch.where(in_ratio < lo, (w / lo).round(), h)
    cw, ch = torch.where(found, cw, fw), torch.where(found, ch, fh)
    top = torch.where(found, top, torch.floor((h - ch) / 2))
    left = torch.where(found, left, torch.floor((w - cw) / 2))
    return torch.cat([left, top, left + cw, top + ch], 1).float()


def center_crop_boxes(sizes: torch.Tensor, img_size: int, crop_pct: float) -> torch.Tensor:
    """Boxes of timm's evaluation transform (torchvision ``Resize(floor(img_size / crop_pct))`` on the shorter
    side, then ``CenterCrop(img_size)``) in each image's own coordinates: ``(B, 4)`` float ``x1, y1, x2, y2``."""
    scale_size = math.floor(img_size / crop_pct)
    boxes = []
    for h, w in sizes.tolist():
        if h <= w:  # torchvision's shorter-side rule: the long side is truncated, not rounded
            new_h, new_w = scale_size, int(scale_size * w / h)
        else:
            new_h, new_w = int(scale_size * h / w), scale_size
        top, left = int(round((new_h - img_size) / 2.0)), int(round((new_w - img_size) / 2.0))
        sy, sx = new_h / h, new_w / w
        boxes.append([left / sx, top / sy, (left + img_size) / sx, (top + img_size) / sy])
    return torch.tensor(boxes, dtype=torch.float32).view(-1, 4)


def crop_resize(images: list[torch.Tensor], boxes: torch.Tensor, out_size: int) -> torch.Tensor:
    """Crop ``boxes`` (B, 4) out of uint8 images of any sizes and resize each to ``out_size`` square: uint8
    ``(B, C, out_size, out_size)`` on the images' device.

    One ``roi_align`` per chunk of the batch (aligned pixel centres; ``sampling_ratio=-1`` averages
    ceil(box / out_size) bilinear samples per output pixel and axis, an antialiasing box filter when shrinking).
    Images are stacked into one tensor whose margins repeat each image's last row and column, so samples at
    an image's edge see that edge as PIL's resampling does, not the next image or zeros.
    torchvision's v2 ``resized_crop`` takes one box per call, and kornia's ``crop_and_resize`` warps without
    antialiasing, so neither does a whole batch of shrinking crops in one op.
    """
    if not images:
        return torch.empty(0, 0, out_size, out_size, dtype=torch.uint8)
    device = images[0].device
    heights = torch.tensor([img.shape[-2] for img in images])
    widths = torch.tensor([img.shape[-1] for img in images])
    out = []
    per_image = images[0].shape[0] * int(heights.max()) * int(widths.max())
    step = max(1, _CROP_CHUNK_ELEMENTS // per_image)
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        hs, ws = heights[start:start + step], widths[start:start + step]
        hmax, wmax = int(hs.max()), int(ws.max())
        stacked = torch.zeros(len(chunk), chunk[0].shape[0], hmax, wmax, dtype=torch.uint8, device=device)
        for k, img in enumerate(chunk):
            stacked[k, :, :img.shape[-2], :img.shape[-1]] = img
        if bool((hs < hmax).any() or (ws < wmax).any()):  # repeat each image's edge into its margin (one gather)
            rows = torch.minimum(torch.arange(hmax)[None], hs[:, None] - 1).to(device)  # (b, hmax)
            cols = torch.minimum(torch.arange(wmax)[None], ws[:, None] - 1).to(device)  # (b, wmax)
            batch_index = torch.arange(len(chunk), device=device)[:, None, None]
            stacked = stacked[batch_index, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        rois = torch.cat([torch.arange(len(chunk), dtype=torch.float32)[:, None], boxes[start:start + step]], 1)
        crops = roi_align(stacked.float(), rois.to(device), (out_size, out_size), spatial_scale=1.0,
                          sampling_ratio=-1, aligned=True)
        out.append(crops.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------ pipeline
class DevicePipeline:
    """Decoded images (a list of uint8 ``(C, H, W)`` tensors on one device) -> a uint8 ``(B, C, S, S)`` batch:
    for training, timm's RandomResizedCrop, flips and auto-augment of ``augmentation`` (its scale, ratio, hflip,
    vflip, auto_augment); for evaluation, resize + centre crop. Normalisation and erasing follow in
    :class:`convvit.data.transforms.BatchNormalizeErase`."""

    def __init__(
            self,
            img_size: int,
            train: bool,
            mean: Sequence[float],
            augmentation: Augmentation | None = None,
            crop_pct: float = 0.875,
            interpolation: str = "bicubic",
    ):
        aug = augmentation or Augmentation()
        self.img_size, self.train, self.crop_pct = img_size, train, crop_pct
        self.scale, self.ratio, self.hflip, self.vflip = tuple(aug.scale), tuple(aug.ratio), aug.hflip, aug.vflip
        self.auto_augment = None
        if train and aug.auto_augment:
            from convvit.data.batch_augment import build_batch_auto_augment

            self.auto_augment = build_batch_auto_augment(aug.auto_augment, mean, interpolation)

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        sizes = torch.tensor([img.shape[-2:] for img in images], dtype=torch.long).view(-1, 2)
        if not self.train:
            return crop_resize(images, center_crop_boxes(sizes, self.img_size, self.crop_pct), self.img_size)
        x = crop_resize(images, random_resized_crop_boxes(sizes, self.scale, self.ratio), self.img_size)
        b = len(x)
        for p, dim in ((self.hflip, -1), (self.vflip, -2)):
            if p > 0:
                flip = (torch.rand(b) < p).to(x.device).view(b, 1, 1, 1)
                x = torch.where(flip, x.flip(dim), x)
        if self.auto_augment is not None and b:
            x = self.auto_augment(x)  # its draws come from torch's CPU generator, like the boxes and flips
        return x

    def __repr__(self) -> str:
        if not self.train:
            return f"{type(self).__name__}(eval, img_size={self.img_size}, crop_pct={self.crop_pct})"
        return (f"{type(self).__name__}(train, img_size={self.img_size}, scale={self.scale}, ratio={self.ratio}, "
                f"hflip={self.hflip}, vflip={self.vflip}, auto_augment={self.auto_augment})")
