"""Reading image files: any PIL mode to the model's channel count, clear errors for unreadable files."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from convvit.errors import ConvvitError

__all__ = [
    "IMG_EXTENSIONS", "BadImageError", "convert_image", "is_image_file", "list_images", "load_image", "walk_images",
]

_logger = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif")

# Transparent pixels are composited over this background (most transparent images are made for white pages).
_BACKGROUND = 255


class BadImageError(ConvvitError, OSError):
    """An image file that cannot be decoded (corrupt, truncated or not an image)."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True for files with an image extension; hidden files (``.name``, e.g. macOS ``._x.jpg``) are not images."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float images to 8-bit 'L' (PIL's own convert clips instead of scaling)."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr * 255.0 if arr.size and float(np.nanmax(arr)) <= 1.0 else arr
    else:  # I;16 variants and I: 16-bit range
        arr = arr.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8), mode="L")


def convert_image(img: Image.Image, in_chans: int = 3) -> Image.Image:
    """Convert a PIL image of any mode to 'L' (``in_chans=1``) or 'RGB' (``in_chans=3``).

    16-bit and float images are rescaled to 8 bits, palette and alpha images are composited over white,
    CMYK/YCbCr/LAB/HSV go through PIL's conversion, RGB to L uses ITU-R 601-2 luma.
    """
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans}")
    target = "L" if in_chans == 1 else "RGB"
    if img.mode == target:
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "LAB":  # PIL converts LAB to RGB but not to L
        img = img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (_BACKGROUND,) * 3 + (255,))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert(target)


def load_image(path: str | os.PathLike | BinaryIO, in_chans: int = 3, name: str | os.PathLike | None = None
               ) -> Image.Image:
    """Open, fully decode and convert an image file (or a binary file object) to ``in_chans`` channels ('L' or
    'RGB').

    EXIF orientation is applied. A corrupt, truncated or non-image file raises :class:`BadImageError`
    naming the file (``name``, when ``path`` is a file object).
    """
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so truncation is caught here and not in a transform
            # A JPEG keeps its orientation only in EXIF or XMP: without either, exif_transpose would parse for
            # nothing (a tenth of a small JPEG's load time)
            if img.format != "JPEG" or "exif" in img.info or "xmp" in img.info:
                img = ImageOps.exif_transpose(img)
            return convert_image(img, in_chans)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(  # PIL's decompression-bomb message ends in a full stop of its own
            f"cannot read image '{path if name is None else name}': {str(e).rstrip('.')}. Fix: replace or delete "
            f"the file, or skip unreadable images with skip_bad_images=True (CLI: --data.skip_bad_images true)."
        ) from e


def _identity(path: str | os.PathLike) -> tuple[int, int]:
    """(device, inode) of what ``path`` leads to, links followed: one per real file or folder."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def walk_images(folder: Path, seen: set[tuple[int, int]] | None = None) -> list[Path]:
    """Image files under ``folder`` at any depth (hidden files and folders skipped), in a fixed order.

    Links are followed, but each real folder is entered once and each real file listed once (``seen`` carries
    the files already listed across calls): ``os.walk(followlinks=True)`` alone loops through a link back up
    (``sub/up -> ..``) until the path is too long, and lists a file once per link to it. A link that leads
    nowhere is skipped with a warning.
    """
    seen = set() if seen is None else seen
    folders = {_identity(folder)}
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        # a folder or file reached both ways is listed by its own name
        def links_last(name: str, dirpath: str = dirpath) -> tuple[bool, str]:
            return os.path.islink(os.path.join(dirpath, name)), name

        entered = []
        for name in sorted(dirnames, key=links_last):
            try:
                identity = _identity(os.path.join(dirpath, name))
            except OSError:  # vanished, or a link loop the kernel refuses to follow
                continue
            if not name.startswith(".") and identity not in folders:
                folders.add(identity)
                entered.append(name)
        dirnames[:] = entered
        for name in sorted(filenames, key=links_last):
            if not is_image_file(name):
                continue
            path = Path(dirpath) / name
            try:
                identity = _identity(path)
            except OSError as err:
                _logger.warning("skipping '%s': %s (a link to a file that is not there)", path,
                                err.strerror or err)
                continue
            if identity not in seen:
                seen.add(identity)
                found.append(path)
    return found


def list_images(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Image files among ``paths`` (files, and folders searched recursively), sorted and without duplicates.

    A missing path raises FileNotFoundError; a named file without an image extension is skipped with a
    warning; finding no image at all raises FileNotFoundError listing the extensions searched for.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    found: set[Path] = set()
    seen: set[tuple[int, int]] = set()
    for p in paths:
        if p.is_dir():
            found.update(walk_images(p, seen))
        elif p.is_file():
            if is_image_file(p):
                if _identity(p) not in seen:
                    seen.add(_identity(p))
                    found.add(p)
            else:
                _logger.warning("skipping '%s': not an image file (extensions: %s)", p, " ".join(IMG_EXTENSIONS))
        else:
            raise FileNotFoundError(f"no such file or folder: '{p}'")
    if not found:
        raise FileNotFoundError(
            f"no image files found in {', '.join(repr(str(p)) for p in paths) or 'an empty list of paths'} "
            f"(looked for {' '.join(IMG_EXTENSIONS)}). Fix: pass image files or folders that contain them."
        )
    return sorted(found)
