"""The device pipeline on CPU tensors (the same code runs on CUDA): decoding with fallbacks, timm's crop
distribution and resampling, the bad-image policy, labels and determinism."""
import io
import logging
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision.transforms import v2

from convvit.data import BadImageError, ImageDataModule
from convvit.data.device_pipeline import (
    EncodedBatch,
    EncodedFileDataset,
    center_crop_boxes,
    crop_resize,
    decode_images,
    random_resized_crop_boxes,
)
from convvit.data.jpeg_header import read_jpeg_header
from convvit.data.transforms import build_eval_transform


def smooth_image(h=60, w=80, seed=0) -> np.ndarray:
    """A smooth RGB image (low frequencies only), on which resampling filters agree closely."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    f, p = rng.uniform(0.5, 2.0, (3, 2)), rng.uniform(0, 6.3, 3)
    img = np.stack([np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + p[c]) for c in range(3)], -1)
    return (127.5 + 100 * img).round().astype(np.uint8)


def jpeg_bytes(arr: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, **save)
    return buf.getvalue()


def encoded(*datas: bytes) -> EncodedBatch:
    return EncodedBatch([torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas],
                        torch.arange(len(datas)), torch.arange(len(datas)))


class _Files(EncodedFileDataset):
    def __init__(self, n, skip_bad=False):
        super().__init__([f"img{i}.jpg" for i in range(n)], list(range(n)), 3, skip_bad=skip_bad)


# ------------------------------------------------------------------------------------------------ JPEG header
def test_jpeg_header_kinds():
    arr = smooth_image()
    assert read_jpeg_header(jpeg_bytes(arr)).baseline_8bit
    prog = read_jpeg_header(jpeg_bytes(arr, progressive=True))
    assert prog.sof == 0xC2 and not prog.baseline_8bit
    cmyk = io.BytesIO()
    Image.fromarray(arr).convert("CMYK").save(cmyk, format="JPEG")
    assert read_jpeg_header(cmyk.getvalue()).components == 4
    exif = Image.Exif()
    exif[0x0112] = 6
    assert read_jpeg_header(jpeg_bytes(arr, exif=exif.tobytes())).orientation == 6
    png = io.BytesIO()
    Image.fromarray(arr).save(png, format="PNG")
    assert read_jpeg_header(png.getvalue()) is None and read_jpeg_header(b"\xff\xd8\xff") is None


# ------------------------------------------------------------------------------------------------ decoding
def test_decode_matches_pil_and_falls_back_per_file():
    arr = smooth_image()
    png, cmyk = io.BytesIO(), io.BytesIO()
    Image.fromarray(arr).save(png, format="PNG")
    Image.fromarray(arr).convert("CMYK").save(cmyk, format="JPEG", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: decoded images must come out upright, as PIL's exif_transpose gives
    datas = [jpeg_bytes(arr), png.getvalue(), cmyk.getvalue(), jpeg_bytes(arr, exif=exif.tobytes()),
             jpeg_bytes(arr, progressive=True)]
    images, labels = decode_images(encoded(*datas), _Files(5), 3, torch.device("cpu"))
    assert labels.tolist() == [0, 1, 2, 3, 4]
    from convvit.data import load_image

    for img, data in zip(images, datas):
        ref = torch.from_numpy(np.array(load_image(io.BytesIO(data), 3))).permute(2, 0, 1)
        assert img.dtype == torch.uint8 and img.shape == ref.shape
        assert (img.int() - ref.int()).abs().float().mean() < 1.0  # the same libjpeg(-turbo) underneath
    gray, _ = decode_images(encoded(datas[0], datas[1]), _Files(2), 1, torch.device("cpu"))
    assert [g.shape[0] for g in gray] == [1, 1]


def test_undecodable_file_named_or_skipped(caplog):
    good, bad = jpeg_bytes(smooth_image()), b"\xff\xd8\xff\xe0 not a jpeg at all"
    with pytest.raises(BadImageError, match=r"img1\.jpg.*skip_bad_images"):
        decode_images(encoded(good, bad), _Files(2), 3, torch.device("cpu"))
    files = _Files(3, skip_bad=True)
    with caplog.at_level(logging.WARNING, logger="convvit.data"):
        images, labels = decode_images(encoded(good, bad, good), files, 3, torch.device("cpu"))
    assert len(images) == 2 and labels.tolist() == [0, 2]
    assert files.num_bad == 1 and files.bad_paths[0].name == "img1.jpg" and "img1.jpg" in caplog.text


# ------------------------------------------------------------------------------------------------ crops
def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(fa - fb).max())


@pytest.mark.parametrize("size", [(375, 500), (500, 375), (40, 400)])  # (40, 400) often needs the fallback
def test_random_resized_crop_boxes_follow_timms_distribution(size):
    n = 4000
    h, w = size
    torch.manual_seed(0)
    boxes = random_resized_crop_boxes(torch.tensor([size] * n)).double().numpy()
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert np.allclose(boxes, boxes.round())  # integer pixel boxes, as timm's
    random.seed(0)
    img = Image.new("RGB", (w, h))
    ref = np.array([RandomResizedCropAndInterpolation.get_params(img, (0.08, 1.0), (3 / 4, 4 / 3))
                    for _ in range(n)], dtype=np.float64)  # (top, left, height, width)
    # two-sample KS on area fraction, log aspect ratio and the box centre; critical value at alpha = 0.001 is
    # 1.95 * sqrt(2 / n) = 0.044 for n = 4000 per sample (seeded, so the verdict is fixed, not flaky)
    crit = 1.95 * math.sqrt(2 / n)
    assert _ks(bw * bh / (h * w), ref[:, 2] * ref[:, 3] / (h * w)) < crit
    assert _ks(np.log(bw / bh), np.log(ref[:, 3] / ref[:, 2])) < crit
    assert _ks(boxes[:, 0] + bw / 2, ref[:, 1] + ref[:, 3] / 2) < crit
    assert _ks(boxes[:, 1] + bh / 2, ref[:, 0] + ref[:, 2] / 2) < crit


def test_crop_resize_matches_pil_resampling():
    arr = smooth_image(120, 160)
    img = torch.from_numpy(arr).permute(2, 0, 1)
    for left, top, w, h, out in [(10, 5, 100, 90, 48), (30, 20, 40, 30, 64), (0, 0, 160, 120, 32)]:
        got = crop_resize([img], torch.tensor([[left, top, left + w, top + h]], dtype=torch.float32), out)[0]
        ref = v2.functional.resized_crop(img, top, left, h, w, [out, out], antialias=True,
                                         interpolation=v2.InterpolationMode.BICUBIC)
        diff = (got.int() - ref.int()).abs().float()
        # roi_align averages bilinear samples, torchvision/PIL use an antialiased bicubic: on a smooth image they
        # agree to 0.2-0.3 grey levels on average, 2 at most (measured); a box one pixel off is 3 on average
        assert diff.mean() < 0.6 and diff.max() <= 3, (left, top, w, h, out, diff.mean(), diff.max())


def test_crop_resize_batch_of_mixed_sizes_equals_one_by_one():
    a = torch.from_numpy(smooth_image(50, 70, seed=1)).permute(2, 0, 1)
    b = torch.from_numpy(smooth_image(90, 60, seed=2)).permute(2, 0, 1)
    boxes = torch.tensor([[20.0, 10.0, 70.0, 50.0], [0.0, 30.0, 60.0, 90.0]])  # both touch their image's edge
    together = crop_resize([a, b], boxes, 24)
    assert torch.equal(together[0], crop_resize([a], boxes[:1], 24)[0])
    assert torch.equal(together[1], crop_resize([b], boxes[1:], 24)[0])


def test_eval_centre_crop_matches_timms_eval_transform():
    for h, w in [(120, 160), (160, 120), (100, 100)]:
        arr = smooth_image(h, w)
        img = torch.from_numpy(arr).permute(2, 0, 1)
        got = crop_resize([img], center_crop_boxes(torch.tensor([[h, w]]), 48, 0.875), 48)[0]
        ref = build_eval_transform(48, 3, (0.0,) * 3, (1.0,) * 3, crop_pct=0.875, uint8=True)(Image.fromarray(arr))
        diff = (got.int() - ref.int()).abs().float()
        assert diff.mean() < 0.6 and diff.max() <= 3, (h, w, diff.mean(), diff.max())  # measured 0.2-0.25, 1


# ------------------------------------------------------------------------------------------------ data module
@pytest.fixture
def jpeg_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for ci, c in enumerate(("cat", "dog", "emu")):
            for i in range(4):
                arr = smooth_image(48 + 4 * i, 64, seed=ci * 10 + i)
                arr[..., ci] = (arr[..., ci] // 2 + 120).astype(np.uint8)  # a class colour, learnable
                path = tmp_path / split / c / f"{i}.{'jpg' if i % 3 else 'png'}"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(path)
    del rng
    return tmp_path


def _all(dm, split, train):
    batches = [dm.finish_batch(b, train) for b in getattr(dm, f"{split}_dataloader")()]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_device_pipeline_labels_and_classes_equal_cpu_path(jpeg_folder):
    common = dict(img_size=32, crop_mode="resized", batch_size=5, num_workers=0, re_prob=0.5)
    cpu = ImageDataModule("imagefolder", str(jpeg_folder), pipeline="cpu", **common)
    dev = ImageDataModule("imagefolder", str(jpeg_folder), pipeline="device", **common)
    cpu.setup("fit"), dev.setup("fit")
    assert (cpu.pipeline, dev.pipeline) == ("cpu", "device") and dev.class_names == cpu.class_names
    cx, cy = _all(cpu, "val", train=False)
    dx, dy = _all(dev, "val", train=False)
    assert torch.equal(cy, dy) and dx.shape == cx.shape == (12, 3, 32, 32) and dx.dtype == torch.float32
    assert (dx - cx).abs().mean() < 0.05  # the same images, normalised, resampled by another filter
    tx, ty = _all(dev, "train", train=True)
    assert tx.shape == (10, 3, 32, 32) and sorted(ty.tolist()) != []  # drop_last: 12 images, batch 5


def test_device_pipeline_deterministic_for_a_seed(jpeg_folder):
    def first_batch(seed):
        torch.manual_seed(seed)
        random.seed(seed)
        dm = ImageDataModule("imagefolder", str(jpeg_folder), pipeline="device", img_size=32, crop_mode="resized",
                             batch_size=6, num_workers=0, re_prob=0.5)
        dm.setup("fit")
        return dm.finish_batch(next(iter(dm.train_dataloader())), train=True)

    a, b, c = first_batch(1), first_batch(1), first_batch(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_device_pipeline_refuses_what_it_cannot_do(jpeg_folder):
    dm = ImageDataModule("imagefolder", str(jpeg_folder), pipeline="device", img_size=32, color_jitter=0.4,
                         crop_mode="resized", num_workers=0)
    with pytest.raises(ValueError, match="color_jitter.*--data.pipeline cpu"):
        dm.setup("fit")
    auto = ImageDataModule("imagefolder", str(jpeg_folder), img_size=32, crop_mode="resized", num_workers=0)
    auto.setup("fit")
    assert auto.pipeline == "cpu"  # auto: the device pipeline only where training runs on CUDA
    with pytest.raises(ValueError, match="unknown pipeline 'gpu'"):
        ImageDataModule("imagefolder", str(jpeg_folder), pipeline="gpu")


def test_device_pipeline_runs_the_configured_auto_augment(jpeg_folder):
    def first_batch(auto_augment):
        torch.manual_seed(3)
        dm = ImageDataModule("imagefolder", str(jpeg_folder), pipeline="device", img_size=32, crop_mode="resized",
                             batch_size=6, num_workers=0, auto_augment=auto_augment)
        dm.setup("fit")
        return dm, dm.finish_batch(next(iter(dm.train_dataloader())), train=True)[0]

    dm, plain = first_batch(None)
    dm_aa, augmented = first_batch("rand-m9-mstd0.5-inc1")
    assert dm_aa._device_pipelines[True].auto_augment is not None and plain.shape == augmented.shape
    assert not torch.equal(plain, augmented)  # same seed, same crops: the difference is RandAugment's
    with pytest.raises(ValueError, match="augmix.*--data.pipeline cpu"):
        ImageDataModule("imagefolder", str(jpeg_folder), pipeline="device", img_size=32, crop_mode="resized",
                        auto_augment="augmix-m5-w4-d2", num_workers=0).setup("fit")
