"""Map-style datasets: uint8 image tensors in memory (Fashion-MNIST, CIFAR, synthetic) and image files."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, default_collate

from convvit.data.images import BadImageError, load_image

__all__ = ["ImageFileDataset", "SkipNoneCollate", "TensorImageDataset", "make_synthetic", "rgb_to_luma"]

_logger = logging.getLogger("convvit.data")


def rgb_to_luma(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> (..., 1, H, W), bit-exact with PIL's RGB-to-L conversion (ITU-R 601-2)."""
    r, g, b = x.int().unbind(-3)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8).unsqueeze(-3)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run small tensor ops on one thread: splitting a batch of 28 px images across threads costs more than it
    saves, badly so on a busy machine (benchmarks/results/README.md). DataLoader workers already run on one
    thread; this matters for ``num_workers=0``."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class TensorImageDataset(Dataset):
    """Images held as one uint8 tensor (N, C, H, W) with integer labels.

    ``batch_transform`` (uint8 batch -> float batch) is used when set: the DataLoader then fetches a whole
    batch per call through ``__getitems__``. Otherwise each image goes through ``transform`` as a PIL image.
    Images are converted to ``in_chans`` channels (luma for RGB -> 1, repetition for 1 -> 3).
    """

    def __init__(
            self,
            images: torch.Tensor,
            labels: torch.Tensor,
            in_chans: int,
            transform: Callable | None = None,
            batch_transform: Callable | None = None,
    ):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected uint8 images (N, 1|3, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[1] == 3 and in_chans == 1:
            images = rgb_to_luma(images)
        self.images, self.labels = images, torch.as_tensor(labels, dtype=torch.long)
        self.in_chans, self.transform, self.batch_transform = in_chans, transform, batch_transform

    def __len__(self) -> int:
        return len(self.labels)

    def _select(self, index) -> torch.Tensor:
        x = self.images[index]
        return x.expand(*x.shape[:-3], self.in_chans, *x.shape[-2:]) if x.shape[-3] != self.in_chans else x

    def pil_image(self, index: int) -> Image.Image:
        """Image ``index`` as a PIL image ('L' or 'RGB')."""
        arr = self._select(index).permute(1, 2, 0).numpy()
        return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else np.ascontiguousarray(arr))

    def __getitem__(self, index: int):
        if self.batch_transform is not None:
            return self.__getitems__([index])[0]
        img = self.pil_image(index)
        return (self.transform(img) if self.transform is not None else img), int(self.labels[index])

    def __getitems__(self, indices: Sequence[int]) -> list:
        if self.batch_transform is None:
            return [self[i] for i in indices]
        with one_thread():
            index = torch.as_tensor(indices, dtype=torch.long)
            x = self.batch_transform(self._select(index))
            return list(zip(x.unbind(0), self.labels[index].unbind(0)))


def make_synthetic(
        num_samples: int, num_classes: int, in_chans: int, img_size: int, seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic, learnable random images: a smooth random pattern per class plus per-image noise.

    Returns uint8 images (N, in_chans, S, S) and balanced labels (N,). Images are generated at
    ``S = min(img_size, 64)``; the transforms resize them to ``img_size``.
    """
    g = torch.Generator().manual_seed(seed)
    size = min(img_size, 64)
    # class prototypes are drawn from a fixed stream so that every split shares them; the rest from ``seed``
    protos = torch.rand(num_classes, in_chans, 4, 4, generator=torch.Generator().manual_seed(12345 + num_classes))
    protos = F.interpolate(protos * 255, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=g)]
    noise = torch.randn(num_samples, in_chans, size, size, generator=g) * 40
    images = (protos[labels] + noise).round_().clamp_(0, 255).to(torch.uint8)
    return images, labels


class ImageFileDataset(Dataset):
    """Image files with labels, loaded with :func:`load_image` and transformed.

    Unreadable images raise :class:`BadImageError` naming the file, unless ``skip_bad`` is set: then each bad
    file is logged once and remembered (in shared memory, so DataLoader workers count it too), and the sample
    is replaced by the next readable one (``on_bad="substitute"``, keeps batches full, for training) or
    returned as None for :class:`SkipNoneCollate` to drop (``on_bad="drop"``, for evaluation and prediction).
    """

    def __init__(
            self,
            paths: Sequence[str | Path],
            labels: Sequence[int],
            in_chans: int,
            transform: Callable | None = None,
            skip_bad: bool = False,
            on_bad: str = "substitute",
    ):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        if on_bad not in ("substitute", "drop"):
            raise ValueError(f"on_bad must be 'substitute' or 'drop', got {on_bad!r}")
        # one numpy bytes array: 1 byte per character, and no per-object refcounts for forked workers to copy
        self._paths = np.array([os.fsencode(p) for p in paths], dtype=np.bytes_)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.in_chans, self.transform, self.skip_bad, self.on_bad = in_chans, transform, skip_bad, on_bad
        self.bad = torch.zeros(len(self._paths), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, index: int) -> Path:
        return Path(os.fsdecode(self._paths[index]))

    @property
    def paths(self) -> list[Path]:
        return [Path(os.fsdecode(p)) for p in self._paths]

    @property
    def num_bad(self) -> int:
        """Number of distinct unreadable files met so far (all workers)."""
        return int(self.bad.sum())

    @property
    def bad_paths(self) -> list[Path]:
        return [self.path(i) for i in self.bad.nonzero().flatten().tolist()]

    def mark_bad(self, index: int, error: BadImageError) -> None:
        """Apply the bad-image policy to sample ``index``: raise ``error`` unless ``skip_bad``; else remember the
        file as unreadable (all processes see it) and log it once."""
        if not self.skip_bad:
            raise error
        if not self.bad[index]:
            self.bad[index] = True
            _logger.warning("skipping unreadable image '%s' (%s)", self.path(index), error.__cause__ or error)

    def _read(self, index: int):
        img = load_image(self.path(index), self.in_chans)
        return (self.transform(img) if self.transform is not None else img), int(self.labels[index])

    def _load(self, index: int):
        if self.bad[index]:
            return None
        try:
            return self._read(index)
        except BadImageError as e:
            self.mark_bad(index, e)
            return None

    def __getitem__(self, index: int):
        sample = self._load(index)
        if sample is not None or self.on_bad == "drop":
            return sample
        for offset in range(1, len(self)):
            sample = self._load((index + offset) % len(self))
            if sample is not None:
                return sample
        raise BadImageError(f"none of the {len(self)} images could be read (first: '{self.path(0)}')")


class SkipNoneCollate:
    """default_collate that drops None samples (skipped unreadable images); an all-None batch becomes an empty
    batch ``(0, *sample_shape)`` of ``dtype``."""

    def __init__(self, sample_shape: Sequence[int], dtype: torch.dtype = torch.float32):
        self.sample_shape, self.dtype = tuple(sample_shape), dtype

    def __call__(self, batch: list):
        batch = [b for b in batch if b is not None]
        if not batch:
            return torch.empty(0, *self.sample_shape, dtype=self.dtype), torch.empty(0, dtype=torch.long)
        return default_collate(batch)
