"""AutoAugment and RandAugment on whole uint8 batches (B, C, H, W), on any device, with timm's policies.

    aug = build_batch_auto_augment("rand-m9-mstd0.5-inc1", mean=(0.485, 0.456, 0.406))
    images = aug(images, generator)  # uint8 (B, C, H, W) on any device; generator: a CPU torch.Generator

The policy comes from timm itself (``timm.data.auto_augment``, read against timm 1.0.31): the config string is
parsed by timm's ``rand_augment_transform`` / ``auto_augment_transform`` with the hparams timm's
``create_transform`` passes (fill = ``img_mean``, fixed interpolation unless 'random'), and the ops, their
probabilities, magnitudes, magnitude noise (``mstd``, uniform for ``mstd`` > 100), ``mmax``, ``n``, ``p``,
``inc`` and transform sets / choice weights (``t``) are read off timm's objects. Only the pixel work is done
here, batched: every sample draws its own ops, gates, magnitudes and signs; each op runs once per layer on the
samples that drew it (index_select / index_copy), and the geometric ops of a layer (rotate, shear, translate)
share one ``affine_grid`` and one resampling call with per-sample matrices (two under 'random' interpolation).

Why not a library: kornia 0.9.0's ``augmentation.auto`` RandAugment / AutoAugment / TrivialAugment choose the
op (sub-policy) once per call for the whole batch, and its RandAugment has its own magnitude scale (``m/30``
over fixed ranges, no per-op probability, no magnitude noise), so neither the per-sample draw nor timm's
magnitudes can be had from it. torchvision's v2 AutoAugment classes likewise apply one op per call, with
torchvision's magnitude bins. timm (1.0.31) has no TrivialAugment, so no config string names one here either.

Faithfulness to timm's PIL ops (Pillow 13; tests/data/test_batch_augment.py checks each):
- the same uint8 values: Invert, Posterize (0 bits gives black, as convvit's CPU path), Solarize, SolarizeAdd,
  AutoContrast, Equalize (PIL's LUT formulas), Color / Desaturate, Contrast, Brightness, Sharpness (PIL's
  integer luma, rounded grey mean and float32 blend with truncation; the SMOOTH kernel rounded, border pixels
  unfiltered) and GaussianBlur (PIL's three fixed-point box-blur passes per axis).
- geometric ops reproduce PIL's inverse map, its hard fill outside the image, its edge-clamped neighbours,
  its kernels (bilinear through grid_sample; PIL's a = -1 bicubic gathered here, as grid_sample's bicubic is
  a = -0.75, up to 14 levels apart at edges) and its truncation: within 1 level, mean <= 0.1, of PIL (float32
  coordinates against PIL's doubles). Nearest takes floor(x) as PIL, but where x lands on an exact pixel
  boundary float32 can fall either side (a few % of pixels for a shear of 0.2; no convvit recipe uses it).
- 'random' interpolation (timm's default when none is configured: bilinear or bicubic drawn per op call) is
  drawn per sample and op.

Randomness: all decisions are drawn on the CPU from the ``torch.Generator`` passed in (a CPU generator; the
images may live on any device), so a seed gives the same ops and magnitudes on CPU and CUDA, and no decision
waits on the device.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import auto_augment as timm_aa

__all__ = ["SUPPORTED_CONFIGS", "AugmentPlan", "BatchAutoAugment", "OpSpec", "apply_op", "build_batch_auto_augment"]

SUPPORTED_CONFIGS = (
    "RandAugment 'rand-m<M>[-n<N>][-p<P>][-mstd<S>][-mmax<X>][-inc<0|1>][-t<weights|3a|3aw>]' "
    "(e.g. 'rand-m9-mstd0.5-inc1') or AutoAugment 'original', 'originalr', 'v0', 'v0r', '3a' "
    "with an optional '-mstd<S>'"
)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "random")
_PIL_TO_TORCH_MODE = {Image.Resampling.NEAREST: "nearest", Image.Resampling.BILINEAR: "bilinear",
                      Image.Resampling.BICUBIC: "bicubic"}
_LEVEL_DENOM = timm_aa._LEVEL_DENOM
_GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel")


# ---------------------------------------------------------------------------------------------------------------
# magnitude -> op argument: timm's LEVEL_TO_ARG functions, vectorised over samples (float64 like Python floats)
# ---------------------------------------------------------------------------------------------------------------

def _frac(level: torch.Tensor) -> torch.Tensor:
    return level / _LEVEL_DENOM


def _minmax(min_val: float, max_val: float) -> Callable[..., torch.Tensor]:
    return lambda level, sign, u, hp: (min_val + (max_val - min_val) * _frac(level)).clamp(min_val, max_val)


def _enhance_increasing(level, sign, u, hp):
    return (1.0 + sign * _frac(level) * 0.9).clamp(min=0.1)


def _posterize(level, sign, u, hp):
    return (_frac(level) * 4).floor()


def _solarize(level, sign, u, hp):
    return (_frac(level) * 256).floor().clamp(max=256)


def _gaussian_blur_rand(level, sign, u, hp):
    factor = _minmax(0.0, 1.0)(level, sign, u, hp)
    return 0.1 + (2.0 * factor - 0.1) * u  # random.uniform(0.1, 2.0 * factor)


# args: (level, sign in {-1, 1}, u uniform [0, 1), hparams) -> the op's argument, as timm's level_fn computes it
_LEVEL_TO_ARG: dict[str, Callable[..., torch.Tensor]] = {
    "AutoContrast": lambda level, sign, u, hp: torch.zeros_like(level),
    "Equalize": lambda level, sign, u, hp: torch.zeros_like(level),
    "Invert": lambda level, sign, u, hp: torch.zeros_like(level),
    "Rotate": lambda level, sign, u, hp: sign * _frac(level) * 30.0,
    "Posterize": _posterize,
    "PosterizeIncreasing": lambda level, sign, u, hp: 4 - _posterize(level, sign, u, hp),
    "PosterizeOriginal": lambda level, sign, u, hp: _posterize(level, sign, u, hp) + 4,
    "Solarize": _solarize,
    "SolarizeIncreasing": lambda level, sign, u, hp: 256 - _solarize(level, sign, u, hp),
    "SolarizeAdd": lambda level, sign, u, hp: (_frac(level) * 110).floor().clamp(max=128),
    **{name: lambda level, sign, u, hp: _frac(level) * 1.8 + 0.1
       for name in ("Color", "Contrast", "Brightness", "Sharpness")},
    **{f"{name}Increasing": _enhance_increasing for name in ("Color", "Contrast", "Brightness", "Sharpness")},
    "ShearX": lambda level, sign, u, hp: sign * _frac(level) * 0.3,
    "ShearY": lambda level, sign, u, hp: sign * _frac(level) * 0.3,
    # translate_const is set per call from the image size (see _affine_matrices)
    "TranslateX": lambda level, sign, u, hp: sign * _frac(level),
    "TranslateY": lambda level, sign, u, hp: sign * _frac(level),
    "TranslateXRel": lambda level, sign, u, hp: sign * _frac(level) * hp.get("translate_pct", 0.45),
    "TranslateYRel": lambda level, sign, u, hp: sign * _frac(level) * hp.get("translate_pct", 0.45),
    "Desaturate": _minmax(0.5, 1.0),
    "GaussianBlur": _minmax(0.1, 2.0),
    "GaussianBlurRand": _gaussian_blur_rand,
}


# ---------------------------------------------------------------------------------------------------------------
# colour ops: x uint8 (n, C, H, W), arg float64 (n,) on the CPU -> uint8 (n, C, H, W)
# ---------------------------------------------------------------------------------------------------------------

def _per_sample(arg: torch.Tensor, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return arg.to(device=x.device, dtype=dtype).view(-1, 1, 1, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's RGB -> 'L' conversion (ITU-R 601-2 in 16-bit fixed point), exact; (n, 1, H, W) int32."""
    if x.shape[1] == 1:
        return x.int()
    r, g, b = x.int().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).unsqueeze(1)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend(degenerate, x, factor) for ImageEnhance: float32 in1 + alpha * (in2 - in1), clipped and
    truncated (torchvision's blend computes ratio * a + (1 - ratio) * b, which rounds differently)."""
    deg = degenerate.float()
    out = deg + (x.float() - deg) * _per_sample(factor, x, torch.float32)
    return out.clamp_(0, 255).to(torch.uint8)


def _apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Per-(sample, channel) lookup table: lut (n, C, 256) of uint8 values."""
    n, c, h, w = x.shape
    return torch.gather(lut, 2, x.reshape(n, c, h * w).long()).view(n, c, h, w)


def _invert(x, arg):
    return 255 - x


def _posterize_op(x, bits):
    # keep the top `bits` bits: 8 -> unchanged, 0 -> black (convvit's CPU path; Pillow >= 13 refuses 0)
    mask = 256 - torch.pow(2.0, 8 - bits.clamp(0, 8))
    return x & _per_sample(mask, x, torch.uint8)


def _solarize_op(x, threshold):
    return torch.where(x.to(torch.int16) < _per_sample(threshold, x, torch.int16), x, 255 - x)


def _solarize_add_op(x, add, threshold: int = 128):
    added = (x.to(torch.int16) + _per_sample(add, x, torch.int16)).clamp_(max=255).to(torch.uint8)
    return torch.where(x < threshold, added, x)


def _autocontrast(x, arg):
    """ImageOps.autocontrast (cutoff 0): per channel lut[i] = int(i * scale + offset), clipped; float64 as PIL."""
    lo = x.amin(dim=(2, 3)).double().unsqueeze(-1)  # (n, C, 1)
    hi = x.amax(dim=(2, 3)).double().unsqueeze(-1)
    # a tensor numerator: `255.0 / t` multiplies by t's reciprocal, one ulp off PIL's quotient (int() then differs)
    scale = torch.full_like(lo, 255.0) / (hi - lo).clamp(min=1)
    levels = torch.arange(256, device=x.device, dtype=torch.float64)
    lut = (levels * scale - lo * scale).trunc().clamp(0, 255)
    lut = torch.where(hi > lo, lut, levels)
    return _apply_lut(x, lut.to(torch.uint8))


def _equalize(x, arg):
    """ImageOps.equalize (Pillow 13): per channel histogram (one bincount for the batch), step = (total - count
    of the last occupied level) // 255 (Pillow < 11 and torchvision divide by 256), lut[i] = (step // 2 + #pixels
    below i) // step; identity for a flat channel."""
    n, c, h, w = x.shape
    offsets = torch.arange(n * c, device=x.device).view(n, c, 1) * 256
    hist = torch.bincount((x.reshape(n, c, h * w).long() + offsets).flatten(), minlength=n * c * 256)
    hist = hist.view(n, c, 256)
    occupied = hist > 0
    last = 255 - occupied.flip(-1).int().argmax(-1, keepdim=True)
    step = (h * w - hist.gather(-1, last)) // 255  # (n, C, 1)
    below = hist.cumsum(-1) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp(max=255)
    identity = (occupied.sum(-1, keepdim=True) <= 1) | (step == 0)
    lut = torch.where(identity, torch.arange(256, device=x.device), lut)
    return _apply_lut(x, lut.to(torch.uint8))


def _color(x, factor):
    if x.shape[1] == 1:  # PIL: a grey image is its own degenerate
        return x
    return _blend(_luma(x).expand_as(x), x, factor)


def _desaturate(x, factor):
    return _color(x, (1.0 - factor).clamp(0.0, 1.0))


def _contrast(x, factor):
    luma = _luma(x)
    mean = (luma.sum(dim=(1, 2, 3), dtype=torch.int64).double() / luma[0].numel() + 0.5).floor()
    return _blend(mean.view(-1, 1, 1, 1).expand_as(x), x, factor)


def _brightness(x, factor):
    return _blend(torch.zeros_like(x), x, factor)


def _sharpness(x, factor):
    """ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH (3x3 [1 1 1; 1 5 1; 1 1 1] / 13, rounded), whose
    one-pixel border PIL leaves unfiltered."""
    n, c, h, w = x.shape
    kernel = torch.ones(1, 1, 3, 3, device=x.device)
    kernel[..., 1, 1] = 5
    smooth = F.conv2d(x.reshape(n * c, 1, h, w).float(), kernel / 13).round_().view(n, c, h - 2, w - 2)
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth.to(torch.uint8)
    return _blend(degenerate, x, factor)


def _box_blur_radius(radius: torch.Tensor, passes: int = 3) -> torch.Tensor:
    """Pillow's _gaussian_blur_radius (float32 as in C): the box radius whose `passes` passes approximate a
    Gaussian of standard deviation `radius` (Gwosdek et al., extended box filter)."""
    sigma2 = radius.float() ** 2 / passes
    box = torch.sqrt(12.0 * sigma2 + 1.0)
    whole = torch.floor((box - 1.0) / 2.0)
    part = (2 * whole + 1) * (whole * (whole + 1) - 3 * sigma2) / (6 * (sigma2 - (whole + 1) ** 2))
    return whole + part


def _gaussian_blur(x, radius, passes: int = 3):
    """ImageFilter.GaussianBlur: `passes` horizontal then `passes` vertical fractional box blurs, each in PIL's
    24-bit fixed point and rounded to uint8, edges repeated. torchvision's gaussian_blur uses a sampled Gaussian
    kernel with reflected edges instead, which is not what the CPU path sees."""
    box = _box_blur_radius(radius)  # float32 (n,)
    whole = box.floor()
    one = float(1 << 24)
    inner = torch.floor(one / (box * 2 + 1))  # UINT32 ww = (1 << 24) / (r * 2 + 1)
    outer = torch.floor((one - (whole * 2 + 1) * inner) / 2)  # fw
    reach = int(whole.max()) + 1
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float32)
    weights = torch.where(offsets.abs() <= whole[:, None], inner[:, None],
                          torch.where(offsets.abs() == whole[:, None] + 1, outer[:, None], 0.0))
    weights = weights.to(device=x.device, dtype=torch.float64).view(-1, 1, 1, 1, 2 * reach + 1)

    def box_pass(img: torch.Tensor) -> torch.Tensor:  # along the last axis; float64 sums are exact here
        padded = F.pad(img, (reach, reach, 0, 0), mode="replicate")
        acc = torch.zeros_like(img)
        for k in range(2 * reach + 1):
            acc.addcmul_(padded[..., k:k + img.shape[-1]], weights[..., k])
        return torch.floor((acc + (1 << 23)) / one)

    out = x.double()
    for _ in range(passes):
        out = box_pass(out)
    out = out.transpose(-1, -2).contiguous()
    for _ in range(passes):
        out = box_pass(out)
    return out.transpose(-1, -2).to(torch.uint8)


_COLOR_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _invert,
    "Posterize": _posterize_op,
    "PosterizeIncreasing": _posterize_op,
    "PosterizeOriginal": _posterize_op,
    "Solarize": _solarize_op,
    "SolarizeIncreasing": _solarize_op,
    "SolarizeAdd": _solarize_add_op,
    "Color": _color,
    "ColorIncreasing": _color,
    "Contrast": _contrast,
    "ContrastIncreasing": _contrast,
    "Brightness": _brightness,
    "BrightnessIncreasing": _brightness,
    "Sharpness": _sharpness,
    "SharpnessIncreasing": _sharpness,
    "Desaturate": _desaturate,
    "GaussianBlur": _gaussian_blur,
    "GaussianBlurRand": _gaussian_blur,
}


# ---------------------------------------------------------------------------------------------------------------
# geometric ops: PIL's affine transforms, one grid_sample per layer
# ---------------------------------------------------------------------------------------------------------------

def _affine_matrices(kinds: torch.Tensor, args: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PIL's inverse maps (output pixel centre -> input point, in pixels) for each sample's op, given as an index
    into _GEOMETRIC, and its argument; (n, 2, 3) float64.

    As timm's ops build them: Image.transform(AFFINE, (a, b, c, d, e, f)) and Image.rotate (about the centre,
    the angle negated). Absolute translations use timm's translate_const for this image size (0.45 of the
    shorter side, as create_transform sets it)."""
    m = torch.zeros(len(kinds), 2, 3, dtype=torch.float64)
    m[:, 0, 0] = m[:, 1, 1] = 1.0
    translate_const = float(int(min(height, width) * 0.45))
    for kind in kinds.unique().tolist():
        name, sel = _GEOMETRIC[kind], kinds == kind
        a = args[sel]
        if name == "Rotate":
            angle = -torch.deg2rad(a)
            cos, sin = angle.cos(), angle.sin()
            cx, cy = width / 2.0, height / 2.0
            m[sel] = torch.stack([torch.stack([cos, sin, cos * -cx + sin * -cy + cx], -1),
                                  torch.stack([-sin, cos, -sin * -cx + cos * -cy + cy], -1)], 1)
        elif name == "ShearX":
            m[sel, 0, 1] = a
        elif name == "ShearY":
            m[sel, 1, 0] = a
        elif name == "TranslateX":
            m[sel, 0, 2] = a * translate_const
        elif name == "TranslateY":
            m[sel, 1, 2] = a * translate_const
        elif name == "TranslateXRel":
            m[sel, 0, 2] = a * width
        elif name == "TranslateYRel":
            m[sel, 1, 2] = a * height
    return m


def _pixel_to_normalized(m: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Re-express a pixel-space inverse map for affine_grid (align_corners=False: pixel i spans [i, i+1] as in
    PIL, and x_pixel = (x_norm + 1) * W / 2)."""
    size = torch.tensor([width, height], dtype=torch.float64)
    to_pixels = torch.diag(torch.tensor([width / 2, height / 2, 1.0], dtype=torch.float64))
    to_pixels[:2, 2] = size / 2
    to_norm = torch.diag(torch.tensor([2 / width, 2 / height], dtype=torch.float64))
    return to_norm @ m @ to_pixels - torch.tensor([[0, 0, 1.0], [0, 0, 1.0]], dtype=torch.float64)


def _pil_cubic_weights(d: torch.Tensor) -> list[torch.Tensor]:
    """Weights of the taps at -1, 0, 1, 2 for fraction d: PIL's affine bicubic (Geometry.c), cubic convolution
    with a = -1 (torch's grid_sample bicubic uses a = -0.75: up to 14 levels apart at edges, measured)."""
    d2, d3 = d * d, d * d * d
    return [2 * d2 - d - d3, 1 - 2 * d2 + d3, d + d2 - d3, d3 - d2]


def _pil_bicubic(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Sample uint8 x (n, C, H, W) at PIL source points xs, ys (n, Ho, Wo) with PIL's bicubic, taps clamped to
    the image as PIL does. The four horizontal uint8 taps of each position are packed into one int32, so a tap
    row is one gather (four in all, not sixteen)."""
    n, c, h, w = x.shape
    x0, y0 = (xs - 0.5).floor(), (ys - 0.5).floor()
    wx = _pil_cubic_weights((xs - 0.5 - x0).view(n, 1, -1))  # 4 x (n, 1, Ho * Wo)
    wy = _pil_cubic_weights((ys - 0.5 - y0).view(n, 1, -1))
    # windows of 4 taps starting at x0 - 1 for x0 in [-1, W - 1], the range of points inside the image
    columns = torch.arange(-2, w + 2, device=x.device).clamp(0, w - 1)
    windows = x.index_select(3, columns).unfold(3, 4, 1).contiguous()  # (n, C, H, W + 1, 4) uint8
    packed = windows.view(torch.int32).view(n, c, h * (w + 1))
    column = (x0.long().clamp(-1, w - 1) + 1).view(n, 1, -1)
    out = torch.zeros(n, c, xs[0].numel(), device=x.device)
    for j in range(4):
        row = (y0.long() + (j - 1)).clamp(0, h - 1).view(n, 1, -1)
        taps = torch.gather(packed, 2, (row * (w + 1) + column).expand(n, c, -1))
        taps = taps.view(torch.uint8).view(n, c, -1, 4).float()
        for i in range(4):
            out.addcmul_(taps[..., i], wx[i] * wy[j])
    return out.view(n, c, *xs.shape[1:])


def _warp(x: torch.Tensor, theta: torch.Tensor, fill: torch.Tensor, mode: str) -> torch.Tensor:
    """Resample a batch through per-sample inverse maps, as PIL's Image.transform(AFFINE) does: a pixel whose source
    point lies outside the image gets the fill, one inside takes its neighbours with edge pixels repeated
    (torchvision instead blends the fill through a bilinearly warped mask, which softens the edge), and the
    result is truncated to uint8. Bilinear is torch's grid_sample (the same kernel as PIL); nearest (PIL takes
    floor(x), grid_sample rounds half to even) and bicubic (PIL's a = -1) are gathered here."""
    n, c, h, w = x.shape
    grid = F.affine_grid(theta.to(device=x.device, dtype=torch.float32), [n, c, h, w], align_corners=False)
    outside = ((grid < -1) | (grid >= 1)).any(-1).unsqueeze(1)  # (n, 1, H, W)
    if mode == "bilinear":
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    else:
        xs, ys = ((grid[..., 0] + 1) * (w / 2)), ((grid[..., 1] + 1) * (h / 2))  # PIL's source point, pixels
        if mode == "nearest":
            index = ys.floor().long().clamp(0, h - 1) * w + xs.floor().long().clamp(0, w - 1)
            out = torch.gather(x.reshape(n, c, h * w), 2, index.view(n, 1, -1).expand(n, c, -1))
            out = out.view(n, c, h, w).float()
        else:
            out = _pil_bicubic(x, xs, ys)
    # float32 coordinates put an exact PIL value (an integer shift: weights 1 and 0) a hair below the integer,
    # which truncation would drop by a level; the nudge costs a level only where PIL's value is within 1e-3 below
    out = torch.where(outside, fill.view(1, c, 1, 1), out + 1e-3)
    return out.clamp_(0, 255).to(torch.uint8)


def apply_op(images: torch.Tensor, name: str, arg: torch.Tensor | Sequence[float],
             fill: Sequence[float] | None = None, interpolation: str = "bicubic") -> torch.Tensor:
    """One timm op (by its timm name) on every image of a uint8 batch, with a per-sample argument as timm's level
    function returns it (degrees, bits, threshold, factor, shear, translate fraction/const multiple, radius)."""
    arg = torch.as_tensor(arg, dtype=torch.float64).expand(images.shape[0])
    if name in _GEOMETRIC:
        h, w = images.shape[-2:]
        kinds = torch.full(arg.shape, _GEOMETRIC.index(name))
        theta = _pixel_to_normalized(_affine_matrices(kinds, arg, h, w), h, w)
        fill = torch.tensor([0.0] * images.shape[1] if fill is None else list(fill), device=images.device)
        return _warp(images, theta, fill, interpolation)
    return _COLOR_OPS[name](images, arg)


# ---------------------------------------------------------------------------------------------------------------
# the policy
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpSpec:
    """One of timm's AugmentOps: name, probability, magnitude, magnitude noise and ceiling."""
    name: str
    prob: float
    magnitude: float
    magnitude_std: float = 0.0
    magnitude_max: float | None = None


@dataclass
class AugmentPlan:
    """What each sample draws, one column per layer (a RandAugment op / an AutoAugment sub-policy slot).

    op_index (B, L) long into ``BatchAutoAugment.ops``; applied (B, L) bool (the op's probability gate);
    magnitude (B, L) float64 after noise and clipping; arg (B, L) float64, the op's argument as timm's level
    function returns it (degrees, bits, threshold, enhance factor, shear, translate fraction, blur radius);
    bicubic (B, L) bool, the kernel a geometric op uses under 'random' interpolation (else unused)."""
    op_index: torch.Tensor
    applied: torch.Tensor
    magnitude: torch.Tensor
    arg: torch.Tensor
    bicubic: torch.Tensor


class BatchAutoAugment:
    """timm's RandAugment or AutoAugment applied to a uint8 batch, every sample drawing its own ops.

    ``ops`` are the candidate ops; for RandAugment ``num_layers`` ops are chosen per sample (uniformly with
    replacement, or by ``choice_weights`` without replacement, as timm); for AutoAugment ``sub_policies`` lists,
    per sub-policy, the indices of its ops in ``ops`` and one sub-policy is chosen uniformly per sample.
    """

    def __init__(self, ops: Sequence[OpSpec], fill: Sequence[float], interpolation: str = "bicubic",
                 num_layers: int | None = None, choice_weights: Sequence[float] | None = None,
                 sub_policies: Sequence[Sequence[int]] | None = None, hparams: dict | None = None):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation '{interpolation}'; valid: {', '.join(INTERPOLATIONS)}")
        unknown = sorted({op.name for op in ops} - _LEVEL_TO_ARG.keys())
        if unknown:
            raise ValueError(f"no batched version of timm op(s) {unknown}; supported: {sorted(_LEVEL_TO_ARG)}")
        if (num_layers is None) == (sub_policies is None):
            raise ValueError("give num_layers (RandAugment) or sub_policies (AutoAugment), not both")
        if sub_policies is not None and len({len(sp) for sp in sub_policies}) != 1:
            raise ValueError("AutoAugment sub-policies must all have the same number of ops")
        self.ops = list(ops)
        self.fill = tuple(float(v) for v in fill)
        self.interpolation = interpolation
        self.num_layers = num_layers if sub_policies is None else len(sub_policies[0])
        self.choice_weights = None if choice_weights is None else torch.tensor(choice_weights, dtype=torch.float64)
        self.sub_policies = None if sub_policies is None else torch.tensor(sub_policies, dtype=torch.long)
        self.hparams = dict(hparams or {})
        self._prob = torch.tensor([op.prob for op in self.ops], dtype=torch.float64)
        self._magnitude = torch.tensor([float(op.magnitude) for op in self.ops], dtype=torch.float64)
        self._std = torch.tensor([float(op.magnitude_std) for op in self.ops], dtype=torch.float64)
        self._upper = torch.tensor([float(op.magnitude_max or _LEVEL_DENOM) for op in self.ops],
                                   dtype=torch.float64)
        # index into _GEOMETRIC, -1 for a colour op
        self._geometric_kind = torch.tensor([_GEOMETRIC.index(op.name) if op.name in _GEOMETRIC else -1
                                             for op in self.ops])

    def __repr__(self) -> str:
        kind = "AutoAugment" if self.sub_policies is not None else f"RandAugment(n={self.num_layers})"
        return f"{type(self).__name__}({kind}, ops={[op.name for op in self.ops]}, {self.interpolation})"

    def sample_plan(self, batch_size: int, generator: torch.Generator | None = None) -> AugmentPlan:
        """Draw every sample's ops and arguments on the CPU (a fixed number of draws per batch size)."""
        b, layers = batch_size, self.num_layers
        if self.sub_policies is not None:
            chosen = torch.randint(len(self.sub_policies), (b,), generator=generator)
            op_index = self.sub_policies[chosen]
        elif self.choice_weights is None:
            op_index = torch.randint(len(self.ops), (b, layers), generator=generator)
        else:
            op_index = torch.multinomial(self.choice_weights.expand(b, -1), layers, replacement=False,
                                         generator=generator)
        gate, flip, uniform, blur, kernel = torch.rand(5, b, layers, dtype=torch.float64, generator=generator)
        noise = torch.randn(b, layers, dtype=torch.float64, generator=generator)
        applied = gate < self._prob[op_index]
        magnitude, std = self._magnitude[op_index], self._std[op_index]
        magnitude = torch.where(std == math.inf, uniform * magnitude,
                                torch.where(std > 0, magnitude + std * noise, magnitude))
        magnitude = torch.minimum(magnitude.clamp(min=0), self._upper[op_index])
        sign = torch.where(flip > 0.5, -1.0, 1.0)
        arg = torch.zeros_like(magnitude)
        for i in op_index.unique().tolist():
            sel = op_index == i
            arg[sel] = _LEVEL_TO_ARG[self.ops[i].name](magnitude[sel], sign[sel], blur[sel], self.hparams)
        return AugmentPlan(op_index, applied, magnitude, arg, bicubic=kernel < 0.5)

    def apply(self, images: torch.Tensor, plan: AugmentPlan) -> torch.Tensor:
        """Apply a plan to uint8 images (B, C, H, W) on any device."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 images (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[1] != len(self.fill):
            raise ValueError(f"images have {images.shape[1]} channels but the fill (mean) has {len(self.fill)} "
                             "values; build the augmentation with one mean value per channel")
        out = images.clone()
        for layer in range(self.num_layers):
            applied = plan.applied[:, layer]
            op_index, arg = plan.op_index[:, layer], plan.arg[:, layer]
            kinds = self._geometric_kind[op_index]
            geometric = applied & (kinds >= 0)
            self._apply_geometric(out, geometric.nonzero().flatten(), kinds, arg, plan.bicubic[:, layer])
            for i in op_index[applied & ~geometric].unique().tolist():
                rows = (applied & (op_index == i)).nonzero().flatten()
                rows_dev = rows.to(out.device)
                out.index_copy_(0, rows_dev, _COLOR_OPS[self.ops[i].name](out.index_select(0, rows_dev), arg[rows]))
        return out

    def _apply_geometric(self, out: torch.Tensor, rows: torch.Tensor, kinds: torch.Tensor, arg: torch.Tensor,
                         bicubic: torch.Tensor):
        if len(rows) == 0:
            return
        h, w = out.shape[-2:]
        theta = _pixel_to_normalized(_affine_matrices(kinds[rows], arg[rows], h, w), h, w)
        fill = torch.tensor(self.fill, device=out.device)
        if self.interpolation == "random":  # timm draws bilinear or bicubic per op call; here per sample
            bicubic = bicubic[rows]
            groups = [(rows[~bicubic], theta[~bicubic], "bilinear"), (rows[bicubic], theta[bicubic], "bicubic")]
        else:
            groups = [(rows, theta, self.interpolation)]
        for sub_rows, sub_theta, mode in groups:
            if len(sub_rows):
                rows_dev = sub_rows.to(out.device)
                out.index_copy_(0, rows_dev, _warp(out.index_select(0, rows_dev), sub_theta, fill, mode))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment uint8 images (B, C, H, W) on any device; ``generator`` is a CPU torch.Generator (None: torch's
        default CPU generator)."""
        return self.apply(images, self.sample_plan(images.shape[0], generator))


def _op_spec(op: timm_aa.AugmentOp) -> OpSpec:
    return OpSpec(op.name, float(op.prob), float(op.magnitude), float(op.magnitude_std),
                  None if op.magnitude_max is None else float(op.magnitude_max))


def build_batch_auto_augment(config_str: str | None, mean: Sequence[float],
                             interpolation: str = "bicubic") -> BatchAutoAugment | None:
    """The batched equivalent of the auto_augment stage timm's ``create_transform`` builds for ``config_str``.

    ``mean`` is the normalisation mean in [0, 1], one value per channel (the geometric ops fill with it, as timm);
    ``interpolation`` is the data config's ('bicubic' in convvit; 'random' draws bilinear or bicubic per sample,
    timm's default when none is set). None or '' gives None (no augmentation)."""
    if not config_str:
        return None
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation '{interpolation}'; valid: {', '.join(INTERPOLATIONS)}")
    # the hparams timm's create_transform passes (translate_const is set per call from the image size)
    hparams = dict(img_mean=tuple(min(255, round(255 * v)) for v in mean))
    if interpolation != "random":
        hparams["interpolation"] = Image.Resampling[interpolation.upper()]
    try:
        if config_str.startswith("rand"):
            timm_ra = timm_aa.rand_augment_transform(config_str, dict(hparams, translate_const=250))
            ops = [_op_spec(op) for op in timm_ra.ops]
            weights = None if timm_ra.choice_weights is None else [float(p) for p in timm_ra.choice_weights]
            policy = dict(num_layers=timm_ra.num_layers, choice_weights=weights)
            timm_ops = timm_ra.ops
        elif config_str.startswith("augmix"):
            raise ValueError("AugMix has no batched version")
        else:
            timm_policy = timm_aa.auto_augment_transform(config_str, dict(hparams, translate_const=250)).policy
            timm_ops = [op for sub in timm_policy for op in sub]
            ops = [_op_spec(op) for op in timm_ops]
            sizes = [len(sub) for sub in timm_policy]
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            policy = dict(sub_policies=[list(range(s, s + n)) for s, n in zip(starts, sizes)])
    except (AssertionError, KeyError, ValueError) as e:
        raise ValueError(f"auto_augment '{config_str}' is not supported by the batched augmentation ({e}); "
                         f"supported: {SUPPORTED_CONFIGS}") from None
    fill = timm_ops[0].kwargs["fillcolor"]
    resample = timm_ops[0].kwargs["resample"]
    mode = "random" if isinstance(resample, (tuple, list)) else _PIL_TO_TORCH_MODE[resample]
    return BatchAutoAugment(ops, fill=fill, interpolation=mode, hparams=timm_ops[0].hparams, **policy)
