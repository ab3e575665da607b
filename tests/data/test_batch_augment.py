"""The batched AutoAugment/RandAugment against timm's PIL ops and policies, and torchvision's functional ops.

Tolerances (uint8 levels) against timm's PIL ops, the CPU path's reference: colour ops exact (max 0);
bilinear and bicubic geometric ops max 1, mean <= 0.1 (float32 coordinates vs PIL's doubles flip a truncation
now and then). Against torchvision.transforms.v2.functional: point ops exact; blends (saturation, contrast)
max 1 (torchvision blends as r*a + (1-r)*b, PIL as b + r*(a-b), and uses an unrounded grey mean); geometric
ops max 1 away from the fill edge (3 px), where torchvision blends the fill through a warped mask and PIL (and
this module) does not; autocontrast max 1 (torchvision scales in float32, PIL in float64).
"""
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageDraw
from timm.data import auto_augment as timm_aa
from torchvision.transforms import InterpolationMode

from convvit.data.batch_augment import _LEVEL_TO_ARG, BatchAutoAugment, apply_op, build_batch_auto_augment
from convvit.data.transforms import _posterize

MEAN = (0.485, 0.456, 0.406)
FILL = (124, 116, 104)  # timm's img_mean for MEAN


def natural_image(mode="RGB", size=(48, 40), seed=0) -> Image.Image:
    """Smooth colour waves, a few sharp-edged discs and mild noise: edges and gradients for the resamplers."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([127 + 100 * np.sin(xx / 7 + c) * np.cos(yy / 9 - c) for c in range(3)], -1)
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(5):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        draw.ellipse([x0, y0, x0 + rng.integers(5, 20), y0 + rng.integers(5, 20)],
                     fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    arr = np.asarray(img).astype(int) + rng.integers(-8, 9, (h, w, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8)).convert(mode)


def to_tensor(img: Image.Image) -> torch.Tensor:
    arr = torch.from_numpy(np.array(img))
    return (arr[None, None] if arr.dim() == 2 else arr.permute(2, 0, 1)[None]).contiguous()


def uint8_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.int() - b.int()).abs()


COLOR_CASES = [  # timm name, timm's PIL op, arguments (as timm's level functions produce them)
    ("AutoContrast", timm_aa.auto_contrast, [None]),
    ("Equalize", timm_aa.equalize, [None]),
    ("Invert", timm_aa.invert, [None]),
    ("Posterize", _posterize, [0, 1, 3, 4, 7, 8]),  # convvit's posterize: 0 bits is black
    ("Solarize", timm_aa.solarize, [0, 77, 128, 230, 256]),
    ("SolarizeAdd", timm_aa.solarize_add, [0, 33, 99, 110]),
    ("Color", timm_aa.color, [0.1, 0.55, 1.0, 1.63, 1.9]),
    ("Contrast", timm_aa.contrast, [0.1, 0.55, 1.37, 1.9]),
    ("Brightness", timm_aa.brightness, [0.1, 0.73, 1.9]),
    ("Sharpness", timm_aa.sharpness, [0.1, 0.5, 1.45, 1.9]),
    ("Desaturate", timm_aa.desaturate, [0.5, 0.8, 1.0]),
    ("GaussianBlur", timm_aa.gaussian_blur, [0.1, 0.6, 1.55, 2.0]),
]


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name,pil_op,args", COLOR_CASES, ids=[c[0] for c in COLOR_CASES])
def test_colour_ops_equal_timm_pil(name, pil_op, args, mode):
    images = [natural_image(mode, seed=s) for s in range(2)]
    images.append(Image.eval(images[0], lambda v: 40 + v // 2))  # a narrow range: autocontrast/equalize work
    batch = torch.cat([to_tensor(img) for img in images])
    for arg in args:
        ref = torch.cat([to_tensor(pil_op(img) if arg is None else pil_op(img, arg)) for img in images])
        out = apply_op(batch, name, [0.0 if arg is None else float(arg)] * len(images))
        assert uint8_diff(out, ref).max() == 0, (name, arg)


GEOMETRIC_CASES = [
    ("Rotate", timm_aa.rotate, [-30.0, -13.5, 7.0, 27.0]),
    ("ShearX", timm_aa.shear_x, [-0.3, 0.1, 0.27]),
    ("ShearY", timm_aa.shear_y, [-0.2, 0.3]),
    ("TranslateXRel", timm_aa.translate_x_rel, [-0.45, 0.2]),
    ("TranslateYRel", timm_aa.translate_y_rel, [0.1, -0.3]),
    ("TranslateX", timm_aa.translate_x_abs, [-5.0, 11.0]),
]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name,pil_op,args", GEOMETRIC_CASES, ids=[c[0] for c in GEOMETRIC_CASES])
def test_geometric_ops_match_timm_pil(name, pil_op, args, mode, interpolation):
    img = natural_image(mode)
    fill = FILL if mode == "RGB" else FILL[:1]
    resample = Image.Resampling[interpolation.upper()]
    translate_const = int(min(img.size) * 0.45)
    for arg in args:
        ref = to_tensor(pil_op(img, arg, fillcolor=fill, resample=resample))
        # apply_op's absolute translation is a multiple of translate_const, as timm's level function returns it
        batch_arg = arg / translate_const if name == "TranslateX" else arg
        out = apply_op(to_tensor(img), name, [batch_arg], fill=fill, interpolation=interpolation)
        diff = uint8_diff(out, ref)
        assert diff.max() <= 1 and diff.float().mean() <= 0.1, (name, arg, diff.max(), diff.float().mean())


def _away_from_fill(name, arg, shape, margin=3):
    """Pixels whose source point lies at least `margin` pixels inside the image."""
    ones = torch.full(shape, 255, dtype=torch.uint8)
    inside = (apply_op(ones, name, [arg], fill=[0] * shape[1], interpolation="nearest") == 255).float()
    return -F.max_pool2d(-inside, 2 * margin + 1, stride=1, padding=margin) > 0.5


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_ops_match_torchvision_functional(mode):
    x = to_tensor(natural_image(mode))
    fill = list(FILL if mode == "RGB" else FILL[:1])
    exact = [("Equalize", 0, TF.equalize(x)), ("Invert", 0, TF.invert(x)),
             ("Posterize", 3, TF.posterize(x, 3)), ("Solarize", 100, TF.solarize(x, 100))]
    exact += [("Brightness", f, TF.adjust_brightness(x, f)) for f in (0.1, 0.6, 1.9)]
    for name, arg, ref in exact:
        assert uint8_diff(apply_op(x, name, [arg]), ref).max() == 0, name
    blends = [("AutoContrast", 0, TF.autocontrast(x))]  # torchvision scales in float32, PIL in float64
    blends += [("Contrast", f, TF.adjust_contrast(x, f)) for f in (0.1, 0.6, 1.5, 1.9)]
    blends += [("Sharpness", f, TF.adjust_sharpness(x, f)) for f in (0.1, 0.6, 1.9)]
    blends += [("Color", f, TF.adjust_saturation(x, f)) for f in (0.1, 0.6, 1.9)] if mode == "RGB" else []
    for name, arg, ref in blends:
        assert uint8_diff(apply_op(x, name, [arg]), ref).max() <= 1, (name, arg)
    w = x.shape[-1]
    geometric = [("Rotate", a, TF.rotate(x, a, interpolation=InterpolationMode.BILINEAR, fill=fill))
                 for a in (-30.0, 12.0)]
    geometric += [("ShearX", s, TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, center=[0, 0],
                                          shear=[math.degrees(math.atan(s)), 0.0],
                                          interpolation=InterpolationMode.BILINEAR, fill=fill))
                  for s in (-0.3, 0.2)]
    geometric += [("TranslateXRel", p, TF.affine(x, angle=0.0, translate=[-p * w, 0], scale=1.0, shear=[0.0, 0.0],
                                                 interpolation=InterpolationMode.BILINEAR, fill=fill))
                  for p in (-0.45, 0.2)]
    for name, arg, ref in geometric:
        diff = uint8_diff(apply_op(x, name, [arg], fill=fill, interpolation="bilinear"), ref)
        interior = _away_from_fill(name, arg, x.shape).expand_as(diff)
        assert interior.float().mean() > 0.3 and diff[interior].max() <= 1, (name, arg)


# --- the policy ------------------------------------------------------------------------------------------------

def _timm_transform(config_str):
    hparams = dict(translate_const=250, img_mean=FILL, interpolation=Image.Resampling.BICUBIC)
    if config_str.startswith("rand"):
        return timm_aa.rand_augment_transform(config_str, hparams)
    return timm_aa.auto_augment_transform(config_str, hparams)


def _spec(op):
    return op.name, op.prob, float(op.magnitude), op.magnitude_std, op.magnitude_max


@pytest.mark.parametrize("config_str", ["rand-m9-mstd0.5-inc1", "rand-m7-mstd0.5", "rand-m9-n3-mstd101-tweights"])
def test_randaugment_policy_equals_timm(config_str):
    ref = _timm_transform(config_str)
    aug = build_batch_auto_augment(config_str, MEAN)
    assert [_spec(op) for op in aug.ops] == [_spec(op) for op in ref.ops]
    assert aug.num_layers == ref.num_layers and aug.sub_policies is None
    if ref.choice_weights is None:
        assert aug.choice_weights is None
    else:
        np.testing.assert_allclose(aug.choice_weights.numpy(), ref.choice_weights)
    assert aug.fill == FILL and aug.interpolation == "bicubic"


@pytest.mark.parametrize("config_str", ["original", "v0", "originalr", "v0r", "3a", "original-mstd0.5"])
def test_autoaugment_policy_equals_timm(config_str):
    ref = _timm_transform(config_str).policy
    aug = build_batch_auto_augment(config_str, MEAN)
    ours = [[_spec(aug.ops[i]) for i in sub] for sub in aug.sub_policies.tolist()]
    assert ours == [[_spec(op) for op in sub] for sub in ref]
    assert aug.fill == FILL


def test_interpolation_and_fill_follow_timm():
    assert build_batch_auto_augment("original", MEAN, interpolation="random").interpolation == "random"
    assert build_batch_auto_augment("original", MEAN, interpolation="bilinear").interpolation == "bilinear"
    assert build_batch_auto_augment("original", (0.5,)).fill == (128,)
    assert build_batch_auto_augment("", MEAN) is None and build_batch_auto_augment(None, MEAN) is None


@pytest.mark.parametrize("config_str", ["augmix-m5-w4-d2", "trivial", "rand-q3", "original-m3", "v1"])
def test_unsupported_configs_say_what_is_supported(config_str):
    with pytest.raises(ValueError, match="supported: RandAugment 'rand-m"):
        build_batch_auto_augment(config_str, MEAN)


@pytest.mark.parametrize("name", sorted(set(timm_aa.LEVEL_TO_ARG) - {"GaussianBlurRand"}))
@pytest.mark.parametrize("negate", [False, True])
def test_level_to_arg_equals_timm(name, negate, monkeypatch):
    # timm's _randomly_negate negates when random.random() > 0.5
    monkeypatch.setattr(random, "random", lambda: 1.0 if negate else 0.0)
    hparams = dict(translate_const=1.0, translate_pct=0.45)  # our TranslateX arg is in translate_const units
    levels = [0.0, 0.3, 1.0, 2.5, 5.0, 7.0, 8.7, 9.0, 10.0, 12.0]
    timm_fn = timm_aa.LEVEL_TO_ARG[name]
    expected = [timm_fn(m, hparams)[0] if timm_fn else 0.0 for m in levels]
    sign = torch.full((len(levels),), -1.0 if negate else 1.0, dtype=torch.float64)
    got = _LEVEL_TO_ARG[name](torch.tensor(levels, dtype=torch.float64), sign, torch.zeros(len(levels)), hparams)
    assert got.tolist() == pytest.approx(expected, abs=1e-12)


def test_gaussian_blur_rand_radius_is_timms_uniform():
    levels = torch.tensor([0.0, 3.0, 10.0], dtype=torch.float64)
    u = torch.tensor([0.25, 0.5, 0.9], dtype=torch.float64)
    got = _LEVEL_TO_ARG["GaussianBlurRand"](levels, torch.ones(3), u, {})
    factors = [timm_aa.LEVEL_TO_ARG["GaussianBlurRand"](m, {})[0] for m in levels.tolist()]
    expected = [0.1 + (2.0 * f - 0.1) * v for f, v in zip(factors, u.tolist())]  # random.uniform(0.1, 2 f)
    assert got.tolist() == pytest.approx(expected)


def test_randaugment_draw_statistics():
    aug = build_batch_auto_augment("rand-m9-mstd0.5-inc1", MEAN)
    plan = aug.sample_plan(20000, torch.Generator().manual_seed(0))
    counts = torch.bincount(plan.op_index.flatten(), minlength=len(aug.ops)).double() / plan.op_index.numel()
    assert (counts - 1 / len(aug.ops)).abs().max() < 0.01  # uniform with replacement, per sample and layer
    assert abs(plan.applied.double().mean() - 0.5) < 0.01  # p=0.5
    mags = plan.magnitude[plan.applied]
    assert abs(mags.mean() - 9.0) < 0.02 and abs(mags.std() - 0.5) < 0.03 and mags.max() <= 10.0
    rotate = aug.ops.index(next(op for op in aug.ops if op.name == "Rotate"))
    degrees = plan.arg[plan.op_index == rotate]
    assert abs((degrees < 0).double().mean() - 0.5) < 0.03 and degrees.abs().max() <= 30.0


def test_weighted_choice_is_without_replacement():
    aug = build_batch_auto_augment("rand-m9-n3-tweights", MEAN)
    plan = aug.sample_plan(5000, torch.Generator().manual_seed(0))
    assert all(len(set(row)) == 3 for row in plan.op_index.tolist())
    first = torch.bincount(plan.op_index[:, 0], minlength=len(aug.ops)).double() / 5000
    assert (first - aug.choice_weights).abs().max() < 0.02


def test_autoaugment_draw_statistics():
    aug = build_batch_auto_augment("original", MEAN)
    n = 10000
    plan = aug.sample_plan(n, torch.Generator().manual_seed(0))
    assert (plan.op_index[:, 1] == plan.op_index[:, 0] + 1).all()  # both ops of one sub-policy, in order
    freq = torch.bincount(plan.op_index[:, 0] // 2, minlength=25).double() / n
    assert (freq - 1 / 25).abs().max() < 0.01  # sub-policy chosen uniformly
    probs = torch.tensor([op.prob for op in aug.ops], dtype=torch.float64)
    drawn = torch.bincount(plan.op_index.flatten(), minlength=len(aug.ops)).double()
    applied = torch.bincount(plan.op_index[plan.applied], minlength=len(aug.ops)).double()
    tolerance = 4 * (probs * (1 - probs) / drawn).sqrt() + 1e-9  # 4 standard errors per op
    assert ((applied / drawn - probs).abs() <= tolerance).all()
    assert (plan.magnitude == torch.tensor([op.magnitude for op in aug.ops])[plan.op_index]).all()  # no mstd


# --- the batch -------------------------------------------------------------------------------------------------

def _batch(n=12, mode="RGB"):
    return torch.cat([to_tensor(natural_image(mode, seed=s)) for s in range(n)])


@pytest.mark.parametrize("config_str", ["rand-m9-mstd0.5-inc1", "original", "3a"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_batch_equals_each_sample_through_its_own_ops(config_str, mode):
    mean = MEAN if mode == "RGB" else (0.5,)
    aug = build_batch_auto_augment(config_str, mean, interpolation="random")
    images = _batch(mode=mode)
    plan = aug.sample_plan(len(images), torch.Generator().manual_seed(3))
    out = aug.apply(images, plan)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    for b in range(len(images)):
        ref = images[b:b + 1]
        for layer in range(aug.num_layers):
            if plan.applied[b, layer]:
                op = aug.ops[int(plan.op_index[b, layer])]
                mode_b = "bicubic" if plan.bicubic[b, layer] else "bilinear"
                ref = apply_op(ref, op.name, [float(plan.arg[b, layer])], fill=aug.fill, interpolation=mode_b)
        assert torch.equal(out[b:b + 1], ref), b


def test_samples_draw_different_ops_and_a_seed_repeats():
    aug = build_batch_auto_augment("rand-m9-mstd0.5-inc1", MEAN)
    images = _batch(1).expand(32, -1, -1, -1).contiguous()
    out = aug(images, torch.Generator().manual_seed(0))
    assert len({tuple(o.flatten()[::97].tolist()) for o in out}) > 16  # one image, many different results
    assert torch.equal(out, aug(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, aug(images, torch.Generator().manual_seed(1)))
    plan = aug.sample_plan(32, torch.Generator().manual_seed(0))
    assert len(plan.op_index[:, 0].unique()) > 5


def test_channel_count_must_match_mean():
    aug = build_batch_auto_augment("original", MEAN)
    with pytest.raises(ValueError, match="one mean value per channel"):
        aug(_batch(2, "L"), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="uint8"):
        aug(_batch(2).float(), torch.Generator().manual_seed(0))


def test_unknown_interpolation_is_refused():
    with pytest.raises(ValueError, match="valid: nearest, bilinear, bicubic, random"):
        build_batch_auto_augment("original", MEAN, interpolation="lanczos")
    assert isinstance(build_batch_auto_augment("v0", MEAN), BatchAutoAugment)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("config_str", ["rand-m9-mstd0.5-inc1", "original", "3a"])
def test_cuda_equals_cpu(config_str):
    aug = build_batch_auto_augment(config_str, MEAN, interpolation="random")
    images = _batch(16)
    plan = aug.sample_plan(len(images), torch.Generator().manual_seed(0))
    diff = uint8_diff(aug.apply(images.cuda(), plan).cpu(), aug.apply(images, plan))
    assert diff.max() <= 1 and diff.float().mean() < 0.01  # float32 coordinates may flip a truncation
