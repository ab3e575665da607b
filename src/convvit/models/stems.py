"""Stems that turn an image into a grid of tokens.

* :class:`PatchifyStem`: ViT's non-overlapping p x p, stride-p convolution (ViT_P, DeiT).
* :class:`ConvStem`: the stack of stride-2 3x3 convolutions (BN, ReLU) and a final 1x1
  convolution of "Early Convolutions Help Transformers See Better" (ViT_C),
  https://arxiv.org/abs/2106.14881. Kernels, strides, channels, norm and activation are
  all configurable.

Both map (B, C_in, H, W) -> (B, N, D) with N = (H / patch_size) * (W / patch_size), and expose
``patch_size`` (total stride), ``grid_size``, ``num_patches`` and ``img_size``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d

from convvit.models.layers import get_act_layer, get_norm_layer

__all__ = ["ConvStem", "PatchifyStem", "token_grid"]


def _pair(x: int | Sequence[int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


def _check_img_size(img_size: tuple[int, int], stride: int, what: str) -> tuple[int, int]:
    if img_size[0] % stride or img_size[1] % stride:
        raise ValueError(
            f"img_size {img_size[0]}x{img_size[1]} is not divisible by the {what} total stride {stride}; "
            f"use a multiple of {stride} (e.g. {math.ceil(img_size[0] / stride) * stride})"
        )
    return img_size[0] // stride, img_size[1] // stride


def token_grid(height: int, width: int, img_size: tuple[int, int], stride: int, dynamic: bool) -> tuple[int, int]:
    """The token grid of a ``height x width`` input for a model built for ``img_size``, or a clear error."""
    if (height, width) != tuple(img_size):
        if not dynamic:
            raise ValueError(
                f"input is {height}x{width} but the model was built for {img_size[0]}x{img_size[1]}; "
                f"build it with img_size=({height}, {width}) or dynamic_img_size=True"
            )
        if height % stride or width % stride:
            raise ValueError(f"input {height}x{width} is not divisible by the stem's total stride {stride}")
    return height // stride, width // stride


class PatchifyStem(nn.Module):
    """Non-overlapping patches: one Conv2d with kernel = stride = patch_size (keys ``proj.*``)."""

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        bias: bool = True,
        dynamic_img_pad: bool = False,
    ) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = patch_size
        self.grid_size = _check_img_size(self.img_size, patch_size, "patchify stem")
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, D, H/p, W/p)."""
        return self.proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x).flatten(2).transpose(1, 2)  # (B, N, D)


class ConvNormAct(nn.Module):
    """Conv2d (no bias when normalised) -> norm -> activation (keys ``conv``, ``norm``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, norm: str | None, act: str | None):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, bias=norm is None)
        if norm == "batchnorm":
            self.norm = nn.BatchNorm2d(out_chs)
        elif norm == "layernorm":
            self.norm = LayerNorm2d(out_chs, eps=1e-6)
        else:
            self.norm = nn.Identity()
        act_layer = get_act_layer(act)
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ConvStem(nn.Module):
    """ViT_C stem: ``len(channels)`` conv-norm-act layers, then a 1x1 conv (bias) to ``embed_dim``.

    Args:
        channels: output channels of each 3x3 layer, e.g. ``(48, 96, 192, 384)`` for ViT_C-4GF.
        strides: stride of each layer; their product is the stem's patch size.
        kernels: kernel size of each layer (an int applies to all).
        norm: ``"batchnorm"`` (paper), ``"layernorm"`` (the paper's ablation) or ``"none"``.
        act: ``"relu"`` (paper), ``"gelu"`` or ``"none"``.
        patch_size: if given, the product of ``strides`` must equal it.
    Keys: ``stem.{i}.conv.weight``, ``stem.{i}.norm.*``, ``proj.*`` (the final 1x1 conv).
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        in_chans: int = 3,
        embed_dim: int = 384,
        channels: Sequence[int] = (48, 96, 192, 384),
        strides: Sequence[int] = (2, 2, 2, 2),
        kernels: int | Sequence[int] = 3,
        norm: str | None = "batchnorm",
        act: str | None = "relu",
        patch_size: int | None = None,
    ) -> None:
        super().__init__()
        channels, strides = list(channels), list(strides)
        kernels = [kernels] * len(channels) if isinstance(kernels, int) else list(kernels)
        if not channels:
            raise ValueError("ConvStem needs at least one conv layer: channels is empty")
        if len(strides) != len(channels) or len(kernels) != len(channels):
            raise ValueError(
                f"ConvStem: channels ({len(channels)} entries: {channels}), strides ({len(strides)}: {strides}) "
                f"and kernels ({len(kernels)}: {kernels}) must have the same length"
            )
        if any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError(f"ConvStem: kernels must be odd and positive (got {kernels})")
        total_stride = math.prod(strides)
        if patch_size is not None and total_stride != patch_size:
            raise ValueError(
                f"ConvStem: the product of strides {strides} is {total_stride}, but patch_size is {patch_size}; "
                f"they must be equal"
            )
        norm = get_norm_layer(norm)
        self.img_size = _pair(img_size)
        self.patch_size = total_stride
        self.grid_size = _check_img_size(self.img_size, total_stride, "conv stem")
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        layers, in_chs = [], in_chans
        for out_chs, k, s in zip(channels, kernels, strides):
            layers.append(ConvNormAct(in_chs, out_chs, k, s, norm, act))
            in_chs = out_chs
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(in_chs, embed_dim, kernel_size=1, bias=True)

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, D, H/s, W/s)."""
        return self.proj(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_map(x).flatten(2).transpose(1, 2)  # (B, N, D)
