"""What a JPEG file's header says about decoding it: coding process, sample precision, components, EXIF orientation.

The device pipeline decodes a batch with nvJPEG (``torchvision.io.decode_jpeg(list, device="cuda")``), which
rejects or mis-decodes some JPEGs and ignores EXIF orientation on CUDA; torchvision offers no way to ask which
files those are before the whole batch fails. Reading the markers up to the frame header answers it for a few
hundred bytes per file, so such files go to the CPU decoder one by one and the rest of the batch stays batched.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["JpegHeader", "read_jpeg_header"]

_SOI = b"\xff\xd8"
# Start-of-frame markers: C0 baseline, C1 extended sequential, C2 progressive, C3 lossless, C5-C7 / C9-CB /
# CD-CF differential and arithmetic-coded variants. C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class JpegHeader:
    """The frame header of a JPEG file (``sof`` is the start-of-frame marker, 0xC0 for baseline)."""

    sof: int
    precision: int  # bits per sample: 8, or 12 / 16 for extended and lossless files
    components: int  # 1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK
    orientation: int = 1  # EXIF orientation, 1 = as stored

    @property
    def baseline_8bit(self) -> bool:
        """Huffman-coded sequential 8-bit gray or colour: what every JPEG decoder handles the same way."""
        return self.sof in (0xC0, 0xC1) and self.precision == 8 and self.components in (1, 3)


def _exif_orientation(app1: bytes) -> int:
    """The orientation tag of an APP1 Exif segment's first IFD (1 when absent or unreadable)."""
    if not app1.startswith(b"Exif\x00\x00") or len(app1) < 14:
        return 1
    tiff = app1[6:]
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for k in range(count):
        at = ifd + 2 + 12 * k
        if at + 12 > len(tiff):
            break
        tag, kind, _, value = struct.unpack_from(order + "HHIH", tiff, at)
        if tag == _ORIENTATION_TAG and kind == 3:  # SHORT
            return value if 1 <= value <= 8 else 1
    return 1


def read_jpeg_header(data: bytes | memoryview) -> JpegHeader | None:
    """The frame header of JPEG bytes, or None when they are not a JPEG or end before the frame header."""
    data = bytes(data[:65536]) if len(data) > 65536 else bytes(data)
    if not data.startswith(_SOI):
        return None
    pos, orientation = 2, 1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        segment = data[pos + 4: pos + 2 + length]
        if marker == 0xE1:
            orientation = _exif_orientation(segment) if orientation == 1 else orientation
        elif marker in _SOF:
            if len(segment) < 6:
                return None
            return JpegHeader(sof=marker, precision=segment[0], components=segment[5], orientation=orientation)
        elif marker == 0xDA:  # start of scan before any frame header: not a valid JPEG
            return None
        pos += 2 + length
    return None
