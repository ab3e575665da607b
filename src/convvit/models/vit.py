"""Vision Transformer with a pluggable stem: ViT_P, ViT_C and DeiT are configurations of one model.

Papers:
* ViT_P / ViT_C: "Early Convolutions Help Transformers See Better", Xiao et al., 2021,
  https://arxiv.org/abs/2106.14881 -- official code https://github.com/facebookresearch/pycls
  (``pycls/models/vit.py``).
* DeiT: "Training data-efficient image transformers & distillation through attention",
  Touvron et al., 2020, https://arxiv.org/abs/2012.12877 -- https://github.com/facebookresearch/deit

ViT_C swaps ViT_P's 16x16 patchify stem for a few stride-2 3x3 convolutions (BN, ReLU) and a
1x1 convolution, and drops one transformer block so that the flops match. State-dict keys follow
timm's ``vision_transformer.py`` (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``head``), so timm DeiT
checkpoints load as they are.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn
from timm.layers import trunc_normal_

from convvit.models._base import TokenModel
from convvit.models.checkpoints.formats import KeyFormat, register_key_format
from convvit.models.layers import Attention, Block
from convvit.models.registry import build_with_cfg, model_cfg, register_model
from convvit.models.stems import ConvStem, PatchifyStem, token_grid

__all__ = ["VisionTransformer"]

# How many channels of each stem stage a `convvit explain` figure draws: one row of small panels each.
EXPLAIN_STEM_CHANNELS = 4


class VisionTransformer(TokenModel):
    """Pre-LN vision transformer (class token or mean pooling, learned position embedding).

    Args:
        img_size: input size the position embedding is made for.
        patch_size: total stride of the stem (16 in the paper).
        in_chans: input channels (1 for grayscale).
        num_classes: classifier outputs (0 for no classifier).
        global_pool: ``"token"`` (class token, the paper's default) or ``"avg"`` (mean of patch
            tokens; ``"pooled"`` is accepted as pycls's name for it).
        embed_dim, depth, num_heads: width, number of blocks, attention heads.
        mlp_dim: hidden size of the MLP (default ``mlp_ratio * embed_dim``).
        class_token: whether there is a class token (default: ``global_pool == "token"``).
        stem_type: ``"patchify"`` or ``"conv"``.
        stem_channels, stem_strides, stem_kernels, stem_norm, stem_act: the conv stem's layers
            (see :class:`~convvit.models.stems.ConvStem`); a final 1x1 conv maps to ``embed_dim``.
        dynamic_img_size: accept other input sizes at run time, resampling the position embedding.
        weight_init: ``"pycls"`` (the paper's initialisation) or ``"timm"`` (DeiT's).
        distilled: add DeiT's distillation token (after the class token) and its classifier ``head_dist``.
            As in timm's ``VisionTransformerDistilled``, the model returns the mean of the two heads' logits,
            and in training mode both logits ``(class, distillation)`` once ``set_distilled_training()`` is on.
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_dim: int | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        class_token: bool | None = None,
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        stem_type: str = "patchify",
        stem_channels: Sequence[int] = (),
        stem_strides: Sequence[int] = (),
        stem_kernels: int | Sequence[int] = 3,
        stem_norm: str | None = "batchnorm",
        stem_act: str | None = "relu",
        dynamic_img_size: bool = False,
        weight_init: str = "pycls",
        distilled: bool = False,
    ) -> None:
        has_class_token = global_pool == "token" if class_token is None else class_token
        if distilled and (global_pool != "token" or not has_class_token):
            raise ValueError("distilled=True needs global_pool='token': the two heads read the class and "
                             f"distillation tokens (got global_pool={global_pool!r})")
        super().__init__(num_classes, global_pool, int(has_class_token) + int(distilled), in_chans)
        if weight_init not in ("pycls", "timm"):
            raise ValueError(f"weight_init must be 'pycls' or 'timm', got {weight_init!r}")
        self.distilled_training = False  # timm's switch: training-mode forward returns both heads' logits
        self.embed_dim = embed_dim
        self.dynamic_img_size = dynamic_img_size
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)

        if stem_type == "patchify":
            self.patch_embed: nn.Module = PatchifyStem(img_size, patch_size, in_chans, embed_dim)
        elif stem_type == "conv":
            self.patch_embed = ConvStem(
                img_size, in_chans, embed_dim, stem_channels, stem_strides, stem_kernels, stem_norm, stem_act,
                patch_size=patch_size,
            )
        else:
            raise ValueError(f"stem_type must be 'patchify' or 'conv', got {stem_type!r}")
        self.img_size = self.patch_embed.img_size
        self.patch_size = self.patch_embed.patch_size

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if has_class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate) if pos_drop_rate > 0 else nn.Identity()

        mlp_dim = mlp_dim or int(embed_dim * mlp_ratio)
        dpr = self.drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                Attention(embed_dim, num_heads, qkv_bias, attn_drop_rate, proj_drop_rate),
                mlp_dim,
                drop_path=dpr[i],
                norm_layer=norm_layer,
                proj_drop=proj_drop_rate,
            )
            for i in range(depth)
        )
        self.feature_info = [
            dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=self.patch_size) for i in range(depth)
        ]
        self._init_head(embed_dim, norm_layer, drop_rate)
        # an Identity (no weights, no state-dict keys) where there is no distillation head: TorchScript compiles
        # forward_head's distilled branch for every model
        self.head_dist = nn.Linear(embed_dim, num_classes) if distilled and num_classes > 0 else nn.Identity()
        if weight_init == "pycls":
            self._init_pycls()
        else:
            self._init_timm()

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def _init_pycls(self) -> None:
        """pycls ``init_weights_vit``: facebookresearch/pycls ``pycls/models/vit.py`` as of commit
        5719de641657c251f807c20a1fcf8ef6f4b60144 (its init unchanged since 8709e4f "Add VitConv configs",
        which set the conv stem's init; the first ViT commit d74b462 left the 3x3 convs at PyTorch's default
        and drew the 1x1 with sqrt(2 / out_channels)). The stds use ``out_channels`` alone, not
        ``k * k * out_channels``."""
        stem = self.patch_embed
        if isinstance(stem, PatchifyStem):
            fan_in = stem.proj.in_channels * stem.proj.kernel_size[0] * stem.proj.kernel_size[1]
            trunc_normal_(stem.proj.weight, std=math.sqrt(1.0 / fan_in))
            nn.init.zeros_(stem.proj.bias)
        else:
            for layer in stem.stem:  # the 3x3 convs (no bias; BN keeps PyTorch's default)
                nn.init.normal_(layer.conv.weight, std=math.sqrt(2.0 / layer.conv.out_channels))
            nn.init.normal_(stem.proj.weight, std=math.sqrt(1.0 / stem.proj.out_channels))  # the last 1x1 conv
            nn.init.zeros_(stem.proj.bias)
        for block in self.blocks:
            nn.init.xavier_uniform_(block.attn.qkv.weight)
            if block.attn.qkv.bias is not None:
                nn.init.zeros_(block.attn.qkv.bias)
            nn.init.zeros_(block.attn.proj.bias)  # weight: PyTorch default, as pycls's out_proj
            for fc in (block.mlp.fc1, block.mlp.fc2):
                nn.init.xavier_uniform_(fc.weight)
                nn.init.normal_(fc.bias, std=1e-6)
        for head in (self.head, self.head_dist):
            if isinstance(head, nn.Linear):
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)
        nn.init.normal_(self.pos_embed, std=0.02)
        # class token: zeros (already); pycls has no distillation token: DeiT's init for it
        if self.dist_token is not None:
            trunc_normal_(self.dist_token, std=0.02)

    @torch.no_grad()
    def _init_timm(self) -> None:
        """timm/DeiT init: trunc-normal(0.02) position embedding, normal(1e-6) class token, then timm's loop."""
        trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.dist_token is not None:
            trunc_normal_(self.dist_token, std=0.02)
        self._init_timm_layers()

    # ------------------------------------------------------------------ forward
    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C, H, W) -> tokens with position embedding (B, prefix + N, D) and the patch grid (H', W')."""
        grid = token_grid(x.shape[-2], x.shape[-1], self.img_size, self.patch_size, self.dynamic_img_size)
        x = self.patch_embed(x)  # (B, N, D)
        if self.cls_token is not None:
            cls = self.cls_token.expand(x.shape[0], -1, -1)
            if self.dist_token is not None:  # DeiT: the distillation token follows the class token
                x = torch.cat([cls, self.dist_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 2 + N, D)
            else:
                x = torch.cat([cls, x], dim=1)  # (B, 1 + N, D)
        return self.pos_drop(x + self._pos_embed_for(grid)), grid

    def _iter_blocks(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, int, tuple[int, int]]]:
        x, grid = self._embed(x)
        for block in self.blocks:
            x = block(x, grid)
            yield x, self.num_prefix_tokens, grid

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised tokens (B, prefix + N, D)."""
        x, grid = self._embed(x)
        for block in self.blocks:
            x = block(x, grid)
        return self.norm(x)

    # ------------------------------------------------------------------ convvit explain
    def explain_taps(self) -> dict[str, nn.Module]:
        """ViT_C: the conv stem's first and last stage; a patchify stem has nothing to show."""
        if not isinstance(self.patch_embed, ConvStem):
            return {}
        return {"stem_first": self.patch_embed.stem[0], "stem_last": self.patch_embed.stem[-1]}

    def explain_panels(self, maps: Sequence[torch.Tensor], taps: dict[str, torch.Tensor]) -> dict[str, Any]:
        """ViT_C: the first channels of the conv stem's first and last stage, ``stem_maps`` (C, H, W) each."""
        if "stem_last" not in taps:
            return {}
        channels = EXPLAIN_STEM_CHANNELS
        return dict(stem_maps=(taps["stem_first"][0, :channels].float(), taps["stem_last"][0, :channels].float()))

    # ------------------------------------------------------------------ distillation (DeiT)
    @property
    def distilled(self) -> bool:
        return self.dist_token is not None

    @torch.jit.ignore
    def set_distilled_training(self, enable: bool = True) -> None:
        """Training-mode forward returns ``(class logits, distillation logits)`` (timm's switch)."""
        self.distilled_training = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module | tuple[nn.Module, nn.Module]:
        return (self.head, self.head_dist) if self.distilled else self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if self.distilled and global_pool not in (None, "", "token"):
            raise ValueError(f"a distilled model pools its class and distillation tokens, not {global_pool!r}")
        super().reset_classifier(num_classes, global_pool)
        if self.distilled:
            ref = next(self.parameters())
            self.head_dist = (nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
                              if num_classes > 0 else nn.Identity())
            self.head_dist.train(self.training)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.dist_token is None or self.global_pool != "token":  # TokenModel's (TorchScript has no super())
            x = self.head_drop(self.pool(x))
            return x if pre_logits else self.head(x)
        x, x_dist = self.head_drop(x[:, 0]), self.head_drop(x[:, 1])  # (B, D) each
        if pre_logits:
            return (x + x_dist) / 2
        x, x_dist = self.head(x), self.head_dist(x_dist)
        if self.distilled_training and self.training and not torch.jit.is_scripting():
            return x, x_dist  # timm's contract: the pair only in distilled training (never under TorchScript)
        return (x + x_dist) / 2  # DeiT's inference: the mean of the two classifiers


# ---------------------------------------------------------------------- configs and builders
def _pycls_cfg(published: tuple[float, float, float] | None = None, **kwargs: Any) -> dict[str, Any]:
    """ViT_P / ViT_C: the paper's recipe decays the position embedding and class token (pycls has no
    no-weight-decay list); ``published`` is (GFLOPs, params M, acts M) of the paper's Table 1 at 224 px."""
    if published is not None:
        kwargs["published"] = dict(zip(("flops_g", "params_m", "acts_m"), published),
                                   source="Xiao et al. 2021, Table 1")
    return model_cfg(exclude_no_weight_decay=False, **kwargs)


def _deit_cfg(flops_g: float, params_m: float, distilled: bool = False) -> dict[str, Any]:
    """DeiT: timm's recipe keeps ``no_weight_decay()`` out of weight decay; a distilled model has two
    classifiers (timm's ``classifier=("head", "head_dist")``)."""
    extra = dict(classifier=("head", "head_dist")) if distilled else {}
    return model_cfg(exclude_no_weight_decay=True, published=dict(flops_g=flops_g, params_m=params_m, source="DeiT"),
                     **extra)


_CONV_FIRST = "patch_embed.stem.0.conv"
_SMALL_IMAGE_CFG = dict(input_size=(3, 32, 32), crop_pct=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


# timm's keys (DeiT, ViT) are convvit's; a convolutional stem tells ViT_C from ViT_P / DeiT.
register_key_format(KeyFormat(
    "vit_c", "a ViT_C checkpoint (convolutional stem)",
    detect=lambda keys: any(k.startswith("blocks.0.attn.qkv.") for k in keys)
    and any(k.startswith("patch_embed.stem.") for k in keys),
    models=("vit_c_*",), priority=20,
))
register_key_format(KeyFormat(
    "vit", "a ViT_P / DeiT checkpoint (timm layout, patchify stem)",
    detect=lambda keys: any(k.startswith("blocks.0.attn.qkv.") for k in keys), models=("vit_p_*", "deit_*"),
    priority=10,
))


# ViT_P (paper Table 1, left): 16x16 patchify stem.
@register_model(cfg=_pycls_cfg((1.1, 4.8, 5.5)))
def vit_p_1gf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT_P-1GF (~ViT-Tiny): 192 wide, 12 blocks, 3 heads, MLP 576."""
    model_args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3, mlp_dim=576)
    return build_with_cfg(VisionTransformer, "vit_p_1gf", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg((3.9, 18.5, 11.1)))
def vit_p_4gf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT_P-4GF (~ViT-Small): 384 wide, 12 blocks, 6 heads, MLP 1152."""
    model_args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_dim=1152)
    return build_with_cfg(VisionTransformer, "vit_p_4gf", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg((17.5, 86.6, 24.0)))
def vit_p_18gf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT_P-18GF (= ViT-Base): 768 wide, 12 blocks, 12 heads, MLP 3072."""
    model_args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_dim=3072)
    return build_with_cfg(VisionTransformer, "vit_p_18gf", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg((35.9, 178.4, 37.3)))
def vit_p_36gf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT_P-36GF (3/5 ViT-Large): 1024 wide, 14 blocks, 16 heads, MLP 4096."""
    model_args = dict(patch_size=16, embed_dim=1024, depth=14, num_heads=16, mlp_dim=4096)
    return build_with_cfg(VisionTransformer, "vit_p_36gf", model_args, pretrained, **kwargs)


# ViT_C (paper Table 1, right): conv stem (strides multiply to the patch size), one block fewer.
@register_model(cfg=_pycls_cfg((1.1, 4.6, 5.7), first_conv=_CONV_FIRST))
def vit_c_1gf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT_C-1GF: stem 24-48-96-192 (stride 2 each) + 1x1, 11 blocks of ViT_P-1GF's width."""
    model_args = dict(
        patch_size=16, embed_dim=192, depth=11, num_heads=3, mlp_dim=576,
        stem_type="conv", stem_channels=(24, 48, 96, 192), stem_strides=(2, 2, 2, 2),
    )
    return build_with_cfg(VisionTransformer, "vit_c_1gf", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg((4.0, 17.8, 11.3), first_conv=_CONV_FIRST))
def vit_c_4gf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT_C-4GF: stem 48-96-192-384 (stride 2 each) + 1x1, 11 blocks of ViT_P-4GF's width."""
    model_args = dict(
        patch_size=16, embed_dim=384, depth=11, num_heads=6, mlp_dim=1152,
        stem_type="conv", stem_channels=(48, 96, 192, 384), stem_strides=(2, 2, 2, 2),
    )
    return build_with_cfg(VisionTransformer, "vit_c_4gf", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg((17.7, 81.6, 24.1), first_conv=_CONV_FIRST))
def vit_c_18gf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT_C-18GF: stem 64-128-128-256-256-512 (strides 2,2,1,2,1,2) + 1x1, 11 blocks."""
    model_args = dict(
        patch_size=16, embed_dim=768, depth=11, num_heads=12, mlp_dim=3072,
        stem_type="conv", stem_channels=(64, 128, 128, 256, 256, 512), stem_strides=(2, 2, 1, 2, 1, 2),
    )
    return build_with_cfg(VisionTransformer, "vit_c_18gf", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg((35.0, 167.8, 36.7), first_conv=_CONV_FIRST))
def vit_c_36gf(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT_C-36GF: the 18GF stem + 1x1, 13 blocks 1024 wide."""
    model_args = dict(
        patch_size=16, embed_dim=1024, depth=13, num_heads=16, mlp_dim=4096,
        stem_type="conv", stem_channels=(64, 128, 128, 256, 256, 512), stem_strides=(2, 2, 1, 2, 1, 2),
    )
    return build_with_cfg(VisionTransformer, "vit_c_36gf", model_args, pretrained, **kwargs)


# Small-image variants (28-32 px, e.g. Fashion-MNIST, CIFAR): patch size 4, ViT_C stem strides 2, 1, 2.
# Each ViT_C has its ViT_P twin's flops: the stem replaces transformer blocks. The tiny stem (48-96-192) costs
# one block, as in the paper. The nano stem (32-64-112) is heavier (~40% of the flops, 3 blocks), because a
# 64-wide block is so cheap that a one-block stem is only 16-32-80 channels wide; the heavier stem trained
# better and faster on Fashion-MNIST (convolutions run closer to peak than 64-wide matmuls). It ends at 112
# channels to match ViT_P's flops within 0.2%. The nano pair has 4 heads of 16, and 6 / 3 blocks rather than
# 8 / 5: a 10-minute CPU budget buys more from epochs than from depth. The measurements behind each choice are
# in the README ("Models", "Results").
@register_model(cfg=_pycls_cfg(**_SMALL_IMAGE_CFG))
def vit_p_nano_32px(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Small-image ViT_P: 4x4 patchify, 64 wide, 6 blocks, 4 heads of 16 (~0.3M params)."""
    model_args = dict(img_size=32, patch_size=4, embed_dim=64, depth=6, num_heads=4, mlp_dim=192)
    return build_with_cfg(VisionTransformer, "vit_p_nano_32px", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg(first_conv=_CONV_FIRST, **_SMALL_IMAGE_CFG))
def vit_c_nano_32px(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Small-image ViT_C: stem 32-64-112 (strides 2,1,2) + 1x1, 64 wide, 3 blocks, 4 heads -- vit_p_nano_32px's
    flops."""
    model_args = dict(
        img_size=32, patch_size=4, embed_dim=64, depth=3, num_heads=4, mlp_dim=192,
        stem_type="conv", stem_channels=(32, 64, 112), stem_strides=(2, 1, 2),
    )
    return build_with_cfg(VisionTransformer, "vit_c_nano_32px", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg(**_SMALL_IMAGE_CFG))
def vit_p_tiny_32px(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Small-image ViT_P: 4x4 patchify, ViT_P-1GF's width (192), 12 blocks."""
    model_args = dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, mlp_dim=576)
    return build_with_cfg(VisionTransformer, "vit_p_tiny_32px", model_args, pretrained, **kwargs)


@register_model(cfg=_pycls_cfg(first_conv=_CONV_FIRST, **_SMALL_IMAGE_CFG))
def vit_c_tiny_32px(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Small-image ViT_C: stem 48-96-192 (strides 2,1,2) + 1x1, 192 wide, 11 blocks -- vit_p_tiny_32px's flops."""
    model_args = dict(
        img_size=32, patch_size=4, embed_dim=192, depth=11, num_heads=3, mlp_dim=576,
        stem_type="conv", stem_channels=(48, 96, 192), stem_strides=(2, 1, 2),
    )
    return build_with_cfg(VisionTransformer, "vit_c_tiny_32px", model_args, pretrained, **kwargs)


# DeiT (Touvron et al.): ViT with timm's init, MLP ratio 4.
@register_model(cfg=_deit_cfg(1.26, 5.72))
def deit_tiny(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-Tiny: 192 wide, 3 heads, 12 blocks (timm deit_tiny_patch16_224)."""
    model_args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3, weight_init="timm")
    return build_with_cfg(VisionTransformer, "deit_tiny", model_args, pretrained, **kwargs)


@register_model(cfg=_deit_cfg(4.61, 22.05))
def deit_small(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-Small: 384 wide, 6 heads, 12 blocks (timm deit_small_patch16_224)."""
    model_args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, weight_init="timm")
    return build_with_cfg(VisionTransformer, "deit_small", model_args, pretrained, **kwargs)


@register_model(cfg=_deit_cfg(17.58, 86.57))
def deit_base(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-Base: 768 wide, 12 heads, 12 blocks (timm deit_base_patch16_224)."""
    model_args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, weight_init="timm")
    return build_with_cfg(VisionTransformer, "deit_base", model_args, pretrained, **kwargs)


# DeiT with distillation through attention: a distillation token and head beside the class token's (timm
# deit_*_distilled_patch16_224, the official facebookresearch/deit checkpoints). Figures: timm's model table.
@register_model(cfg=_deit_cfg(1.27, 5.91, distilled=True))
def deit_tiny_distilled(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-Tiny with a distillation token (timm deit_tiny_distilled_patch16_224)."""
    model_args = dict(patch_size=16, embed_dim=192, depth=12, num_heads=3, weight_init="timm", distilled=True)
    return build_with_cfg(VisionTransformer, "deit_tiny_distilled", model_args, pretrained, **kwargs)


@register_model(cfg=_deit_cfg(4.63, 22.44, distilled=True))
def deit_small_distilled(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-Small with a distillation token (timm deit_small_distilled_patch16_224)."""
    model_args = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, weight_init="timm", distilled=True)
    return build_with_cfg(VisionTransformer, "deit_small_distilled", model_args, pretrained, **kwargs)


@register_model(cfg=_deit_cfg(17.68, 87.34, distilled=True))
def deit_base_distilled(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-Base with a distillation token (timm deit_base_distilled_patch16_224)."""
    model_args = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, weight_init="timm", distilled=True)
    return build_with_cfg(VisionTransformer, "deit_base_distilled", model_args, pretrained, **kwargs)
