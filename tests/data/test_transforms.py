import random

import numpy as np
import pytest
import torch
from PIL import Image

from convvit.data import BatchTrainTransform, build_eval_transform, build_train_transform
from convvit.data.datasets import rgb_to_luma
from convvit.data.settings import Augmentation
from convvit.data.transforms import BatchEvalTransform, build_color_transform, resolve_crop_mode

MEAN3, STD3 = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def rand_image(size=(28, 28), mode="RGB", seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "CMYK", "P"])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_eval_transform_any_mode(mode, in_chans):
    mean, std = (MEAN3, STD3) if in_chans == 3 else ((0.5,), (0.25,))
    out = build_eval_transform(32, in_chans, mean, std)(rand_image((40, 50), mode))
    assert out.shape == (in_chans, 32, 32) and out.dtype == torch.float32


def test_eval_transform_small_is_plain_normalize():
    img = rand_image((28, 28))
    out = build_eval_transform(28, 3, MEAN3, STD3)(img)
    ref = (torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 - torch.tensor(MEAN3)[:, None, None]) \
        / torch.tensor(STD3)[:, None, None]
    torch.testing.assert_close(out, ref)


def test_eval_transform_large_center_crops():
    # 0.875 crop at 224: a 256x256 image is resized to 256 and its center 224 kept
    img = rand_image((256, 256))
    out = build_eval_transform(224, 3, MEAN3, STD3)(img)
    center = np.array(img)[16:240, 16:240]
    ref = (torch.from_numpy(center).permute(2, 0, 1).float() / 255 - torch.tensor(MEAN3)[:, None, None]) \
        / torch.tensor(STD3)[:, None, None]
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("aa", [None, "rand-m9-mstd0.5-inc1", "augmix-m5-w4-d2", "original", "v0"])
@pytest.mark.parametrize("in_chans,crop_mode", [(1, "padded"), (3, "padded"), (3, "resized"), (1, "resized")])
def test_train_transform_shapes(aa, in_chans, crop_mode):
    mean, std = (MEAN3, STD3) if in_chans == 3 else ((0.5,), (0.25,))
    tf = build_train_transform(32, in_chans, mean, std, Augmentation(crop_mode=crop_mode, auto_augment=aa,
                                                                     re_prob=0.5, color_jitter=0.4))
    for seed in range(3):
        out = tf(rand_image((36, 30), "RGB", seed))
        assert out.shape == (in_chans, 32, 32) and torch.isfinite(out).all()


def test_train_transform_uses_timm_parts():
    tf = build_train_transform(224, 3, MEAN3, STD3, Augmentation(auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25))
    names = [type(t).__name__ for t in tf.transforms]
    assert "RandomResizedCropAndInterpolation" in names and "RandAugment" in names and "RandomErasing" in names
    assert "ColorJitter" not in names  # timm disables color jitter under auto_augment
    assert resolve_crop_mode(32) == "padded" and resolve_crop_mode(224) == "resized"
    with pytest.raises(ValueError, match="crop_mode"):
        resolve_crop_mode(32, "zoom")
    with pytest.raises(ValueError, match="in_chans=1"):
        build_eval_transform(32, 1, MEAN3, STD3)


def test_train_transform_builds_timms_pipeline_once(monkeypatch):
    from convvit.data import transforms

    calls = []
    real = transforms.create_transform
    monkeypatch.setattr(transforms, "create_transform", lambda *a, **k: calls.append(k) or real(*a, **k))
    tf = build_train_transform(32, 3, MEAN3, STD3, Augmentation(auto_augment="rand-m10-n8-inc1"))
    assert len(calls) == 1 and "RandAugment" in [type(t).__name__ for t in tf.transforms]


@pytest.mark.parametrize("aa", ["rand-m10-n8-inc1", "augmix-m10-w4-d3", "v0", "original"])
def test_auto_augment_max_magnitude_posterize(aa):
    # posterize to 0 bits at m=10 ('inc1'): Pillow >= 13 raises unless convvit routes it to a black image
    tf = build_train_transform(32, 3, MEAN3, STD3, Augmentation(auto_augment=aa))
    for seed in range(40):
        assert tf(rand_image((32, 32), "RGB", seed)).shape == (3, 32, 32)


def test_batch_train_transform_is_a_padded_crop_and_flip():
    torch.manual_seed(0)
    p, n = 2, 400
    x = torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8)
    # normalise = identity * 1
    out = BatchTrainTransform(6, (0.0,), (1 / 255,), Augmentation(crop_padding=p, hflip=0.5))(x)
    padded = torch.nn.functional.pad(x.float(), (p, p, p, p))
    seen, flips = set(), 0
    for i in range(n):
        matches = [(dy, dx, f) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for f in (0, 1)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if f else c)(padded[i, :, dy:dy + 6, dx:dx + 6]))]
        assert matches, f"sample {i} is not a padded crop of its input"
        seen.add(matches[0][:2])
        flips += matches[0][2]
    assert len(seen) == (2 * p + 1) ** 2  # every offset occurs
    assert 0.4 < flips / n < 0.6


def test_batch_transforms_match_per_image_pipeline_without_randomness():
    x = torch.randint(0, 256, (4, 3, 28, 28), dtype=torch.uint8)
    batch = BatchTrainTransform(28, MEAN3, STD3, Augmentation(crop_padding=0, hflip=0.0))(x)
    evals = BatchEvalTransform(28, MEAN3, STD3)(x)
    per_image = build_train_transform(28, 3, MEAN3, STD3, Augmentation(crop_padding=0, hflip=0.0))
    eval_tf = build_eval_transform(28, 3, MEAN3, STD3)
    for i in range(4):
        img = Image.fromarray(x[i].permute(1, 2, 0).numpy())
        torch.testing.assert_close(batch[i], per_image(img))
        torch.testing.assert_close(evals[i], eval_tf(img))


@pytest.mark.parametrize("in_chans", [1, 3])
def test_batch_transform_with_randaugment_equals_per_image(in_chans):
    # crop/flip off, so both pipelines draw the same python/numpy random numbers for RandAugment, in order
    mean, std = (MEAN3, STD3) if in_chans == 3 else ((0.3,), (0.3,))
    x = torch.randint(0, 256, (6, in_chans, 20, 20), dtype=torch.uint8)
    plain = Augmentation(crop_padding=0, hflip=0.0)
    randaugment = Augmentation(crop_padding=0, hflip=0.0, auto_augment="rand-m9-mstd0.5-inc1")
    color = build_color_transform(20, mean, randaugment)
    random.seed(3), np.random.seed(3)
    batch = BatchTrainTransform(20, mean, std, plain, color=color)(x)
    per_image = build_train_transform(20, in_chans, mean, std, randaugment)
    random.seed(3), np.random.seed(3)
    for i in range(6):
        img = Image.fromarray(x[i].permute(1, 2, 0).squeeze(-1).numpy())
        torch.testing.assert_close(batch[i], per_image(img))
    assert not torch.allclose(batch, BatchTrainTransform(20, mean, std, plain)(x))  # RandAugment did something


def test_batch_resize_close_to_pil():
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    out = BatchEvalTransform(32, (0.0,), (1.0,))(x)
    ref = build_eval_transform(32, 1, (0.0,), (1.0,))(Image.fromarray(x[0, 0].numpy()))
    assert out.shape == (2, 1, 32, 32)
    assert (out[0] - ref).abs().mean() < 2 / 255  # torch and PIL bicubic differ by rounding only


def test_batch_random_erasing_changes_some_images():
    x = torch.full((64, 3, 16, 16), 128, dtype=torch.uint8)
    out = BatchTrainTransform(16, MEAN3, STD3, Augmentation(crop_padding=0, hflip=0.0, re_prob=0.5))(x)
    erased = (out != out[:, :, :1, :1]).flatten(1).any(1).float().mean().item()
    assert 0.25 < erased < 0.75


def test_rgb_to_luma_matches_pil():
    x = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    pil = np.asarray(Image.fromarray(x.permute(1, 2, 0).numpy()).convert("L"))
    assert rgb_to_luma(x)[0].numpy().tolist() == pil.tolist()
