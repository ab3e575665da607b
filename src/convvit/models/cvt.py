"""CvT: Convolutional vision Transformer.

Paper: "CvT: Introducing Convolutions to Vision Transformers", Wu et al., 2021,
https://arxiv.org/abs/2103.15808 -- official code https://github.com/microsoft/CvT
(``lib/models/cls_cvt.py``, configs in ``experiments/imagenet/cvt/``).

Three stages, each a convolutional token embedding (an overlapping strided convolution and a
LayerNorm) followed by transformer blocks whose attention projects the token map with a
depthwise convolution and BatchNorm before the linear q/k/v projections (stride 1 for the
queries, 2 for keys and values). No position embedding, so any input size works; a class
token joins in the last stage only. Keys are the official ones with the stages in a
``ModuleList`` (``stage{i}.`` -> ``stages.{i}.``); the key formats at the end of this file map official
and Hugging Face checkpoints onto them.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from convvit.models._base import TokenModel
from convvit.models.checkpoints.formats import KeyFormat, register_key_format
from convvit.models.layers import Block, Mlp, QuickGELU, get_act_layer, head_dim
from convvit.models.registry import build_with_cfg, model_cfg, register_model

__all__ = ["CvT", "ConvAttention", "ConvEmbed", "ConvProjection", "CvTStage", "QuickGELUMlp", "tokens_to_map"]

class ConvEmbed(nn.Module):
    """Convolutional token embedding: overlapping strided Conv2d, then LayerNorm over channels (keys ``proj``,
    ``norm``)."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size: int, stride: int, padding: int, norm_eps: float):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C_in, H, W) -> tokens (B, H' * W', D) and the grid (H', W')."""
        # A channels-last input gives a channels-last output, whose (B, H' * W', D) token view is contiguous:
        # the LayerNorm then reads it in place instead of copying it. Later stages get channels-last maps
        # already (a no-op there); the image costs one small copy.
        x = self.proj(x.contiguous(memory_format=torch.channels_last))
        grid = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), grid


class ConvProjection(nn.Module):
    """Depthwise Conv2d (no bias) -> BatchNorm2d over a token map (keys ``conv``, ``bn``): CvT's ``dw_bn``."""

    def __init__(self, dim: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, stride=stride, padding=padding, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the one depthwise conv equal to ``bn(conv(x))`` with BatchNorm's running statistics.

        Eval-mode BatchNorm is a per-channel affine map, ``(y - mean) * gamma / sqrt(var + eps) + beta``, so it
        folds into the conv's weights and a bias. Computed on every call from the current parameters and
        buffers (a few thousand numbers, no cache to go stale when weights or statistics change) and
        differentiable, so gradients reach conv and bn as through the two layers.
        """
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # (C,)
        return self.conv.weight * scale.view(-1, 1, 1, 1), bn.bias - bn.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> tokens (B, H' * W', C)."""
        if self.bn.training or self.bn.running_mean is None:
            # Training: BatchNorm normalises with the batch's statistics and updates its running ones.
            x = self.bn(self.conv(x))
        else:
            # Eval: one conv with the BatchNorm folded in, one pass over the map instead of two.
            weight, bias = self.folded()
            conv = self.conv
            x = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return x.flatten(2).transpose(1, 2)


class ConvAttention(nn.Module):
    """Multi-head attention over convolutional projections of the token map.

    Keys ``conv_proj_{q,k,v}``, ``proj_{q,k,v}``, ``proj`` as in the official code. The class
    token (if any) bypasses the convolutions. The scale is ``dim_out ** -0.5`` as in the
    official code (the full width, not the head width).
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        kernel_size: int = 3,
        stride_q: int = 1,
        stride_kv: int = 2,
        padding_q: int = 1,
        padding_kv: int = 1,
        with_cls_token: bool = False,
    ) -> None:
        super().__init__()
        head_dim(dim_out, num_heads)  # validates the split
        self.num_heads = num_heads
        self.dim_out = dim_out
        self.scale = dim_out**-0.5
        self.with_cls_token = with_cls_token
        self.conv_proj_q = ConvProjection(dim_in, kernel_size, stride_q, padding_q)
        self.conv_proj_k = ConvProjection(dim_in, kernel_size, stride_kv, padding_kv)
        self.conv_proj_v = ConvProjection(dim_in, kernel_size, stride_kv, padding_kv)
        self.proj_q = nn.Linear(dim_in, dim_out, bias=qkv_bias)
        self.proj_k = nn.Linear(dim_in, dim_out, bias=qkv_bias)
        self.proj_v = nn.Linear(dim_in, dim_out, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim_out, dim_out)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, -1).transpose(1, 2)  # (B, h, T, hd)

    def _qkv(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Heads of q (B, h, T, hd) on the query grid and of k, v (B, h, T_kv, hd) on the strided key grid."""
        B, T, C = x.shape
        if self.with_cls_token:
            # One split, not two slices: its backward concatenates the two gradients, where each slice's
            # backward would zero-fill a gradient of x's full size and the two then be added.
            prefix, tokens = torch.split(x, [1, T - 1], dim=1)
        else:
            prefix, tokens = x[:, :0], x  # x itself: a split would copy the gradient in its backward
        # (B, C, H', W') in channels-last, the depthwise convs' fastest format: a view of the tokens when there is
        # no class token; with one, a single copy here rather than one inside each of the three convs.
        x_map = tokens.transpose(1, 2).reshape(B, C, grid[0], grid[1])
        x_map = x_map.contiguous(memory_format=torch.channels_last)
        q = self.conv_proj_q(x_map)  # (B, N', C)
        k = self.conv_proj_k(x_map)
        v = self.conv_proj_v(x_map)
        if self.with_cls_token:
            q, k, v = torch.cat([prefix, q], dim=1), torch.cat([prefix, k], dim=1), torch.cat([prefix, v], dim=1)
        return self._heads(self.proj_q(q)), self._heads(self.proj_k(k)), self._heads(self.proj_v(v))

    def key_grid(self, grid: tuple[int, int]) -> tuple[int, int]:
        """The (H_kv, W_kv) grid of the keys for queries on ``grid``: the key projection's strided convolution."""
        conv = self.conv_proj_k.conv
        size = [(g + 2 * p - d * (k - 1) - 1) // s + 1  # nn.Conv2d's output size
                for g, k, s, p, d in zip(grid, conv.kernel_size, conv.stride, conv.padding, conv.dilation)]
        return size[0], size[1]

    def attention_probs(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """``softmax(q k^T * scale)`` (B, h, T, T_kv) and the keys' grid, coarser than the queries' by ``stride_kv``
        (for :mod:`convvit.explain`)."""
        q, k, _ = self._qkv(x, grid)
        return ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1), self.key_grid(grid)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, [1 +] H' * W', C) tokens of an H' x W' map -> (B, [1 +] H' * W', D)."""
        B = x.shape[0]
        q, k, v = self._qkv(x, grid)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )
        x = x.transpose(1, 2).reshape(B, -1, self.dim_out)  # (B, T, D)
        return self.proj_drop(self.proj(x))


class QuickGELUMlp(Mlp):
    """``fc2(QuickGELU(fc1(x)))`` computed as ``fc2'(silu(fc1'(x)))``: one pass over the hidden activations, not three.

    ``x * sigmoid(a x) = silu(a x) / a``, so ``fc2(QuickGELU(h)) = fc2.weight @ silu(a h) / a + fc2.bias`` with
    ``a h = a (fc1.weight @ x + fc1.bias)``. Same keys and the same function as ``Mlp(act_layer=QuickGELU)``.
    Where ``a`` goes depends on whether autograd records:

    * training: into the weights (``fc1.weight * a``, ...), a cost per parameter. Passing ``a`` as addmm's
      ``alpha`` instead would make its backward scale the hidden-sized gradients, a cost per token.
    * inference: as the GEMMs' own ``alpha``/``beta`` factors, free; and silu overwrites the hidden
      activations, as no backward needs them: no second hidden-sized buffer.
    """

    __constants__ = ["alpha"]  # TorchScript reads it as a constant
    alpha = 1.702

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha
        if torch.is_grad_enabled():
            h = F.silu(F.linear(x, self.fc1.weight * a, self.fc1.bias * a))
            return self.drop(F.linear(self.drop(h), self.fc2.weight * (1.0 / a), self.fc2.bias))
        shape = x.shape
        h = torch.addmm(self.fc1.bias, x.reshape(-1, shape[-1]), self.fc1.weight.t(), beta=a, alpha=a)  # a * fc1(x)
        h = F.silu(h, inplace=True)
        out = torch.addmm(self.fc2.bias, self.drop(h), self.fc2.weight.t(), alpha=1.0 / a)
        return self.drop(out.view(shape[:-1] + (out.shape[-1],)))


def tokens_to_map(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens (B, H' * W', D) -> map (B, D, H', W')."""
    return x.transpose(1, 2).reshape(x.shape[0], -1, grid[0], grid[1])


class CvTStage(nn.Module):
    """Token embedding, optional class token, and blocks: (B, C, H, W) -> tokens (B, [1 +] H' * W', D) and (H', W').

    A stage also takes the previous stage's output as it comes, tokens and their grid (see :meth:`forward`).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        patch_size: int,
        patch_stride: int,
        patch_padding: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        with_cls_token: bool = False,
        kernel_qkv: int = 3,
        stride_q: int = 1,
        stride_kv: int = 2,
        padding_q: int = 1,
        padding_kv: int = 1,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_eps: float = 1e-5,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: Sequence[float] = (),
    ) -> None:
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.patch_embed = ConvEmbed(in_chans=in_chans, embed_dim=embed_dim, kernel_size=patch_size,
                                     stride=patch_stride, padding=patch_padding, norm_eps=norm_eps)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if with_cls_token else None
        self.num_prefix_tokens = int(with_cls_token)
        drop_path = list(drop_path) or [0.0] * depth
        # Official CvT's QuickGELU MLP, computed in one pass (same keys, same function).
        mlp_layer = QuickGELUMlp if act_layer is QuickGELU else Mlp
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                ConvAttention(
                    dim_in=embed_dim, dim_out=embed_dim, num_heads=num_heads, qkv_bias=qkv_bias,
                    attn_drop=attn_drop, proj_drop=proj_drop, kernel_size=kernel_qkv, stride_q=stride_q,
                    stride_kv=stride_kv, padding_q=padding_q, padding_kv=padding_kv, with_cls_token=with_cls_token,
                ),
                int(embed_dim * mlp_ratio),
                drop_path=drop_path[j],
                act_layer=act_layer,
                norm_layer=norm_layer,
                mlp_layer=mlp_layer,
                proj_drop=proj_drop,
            )
            for j in range(depth)
        )

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """An image or map (B, C, H, W), or, with their ``grid``, the previous stage's tokens (B, H * W, C)."""
        if grid is not None:
            x = tokens_to_map(x, grid)  # (B, C, H, W): CvT puts its class token in the last stage only
        x, grid = self.patch_embed(x)  # (B, N, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)
        for block in self.blocks:
            x = block(x, grid)
        return x, grid


class CvT(TokenModel):
    """Convolutional vision Transformer (three stages; no position embedding, so any input size).

    Args:
        img_size: the nominal input size (for ``pretrained_cfg``; any size works).
        in_chans, num_classes: input channels, classifier outputs (0: no classifier).
        global_pool: ``"token"`` (class token, the paper's) or ``"avg"`` (mean of the last stage's tokens).
        embed_dims, depths, num_heads: per stage.
        patch_sizes, patch_strides, patch_paddings: the convolutional token embeddings.
        act_layer: MLP activation, ``"quick_gelu"`` (official CvT) or ``"gelu"`` (Hugging Face's CvT).
        drop_path_rate: stochastic depth of the last stage (earlier stages: 0, as the official
            configs), rising linearly over its blocks; or one rate per stage.
        cls_token: whether the last stage has a class token (needed by ``global_pool="token"``).
    """

    blocks_attr = "stages"

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        embed_dims: Sequence[int] = (64, 192, 384),
        depths: Sequence[int] = (1, 2, 10),
        num_heads: Sequence[int] = (1, 3, 6),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        patch_sizes: Sequence[int] = (7, 3, 3),
        patch_strides: Sequence[int] = (4, 2, 2),
        patch_paddings: Sequence[int] = (2, 1, 1),
        kernel_qkv: int = 3,
        stride_q: int = 1,
        stride_kv: int = 2,
        padding_q: int = 1,
        padding_kv: int = 1,
        act_layer: str | Callable[[], nn.Module] = "quick_gelu",
        norm_eps: float = 1e-5,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float | Sequence[float] = 0.1,
        cls_token: bool = True,
    ) -> None:
        super().__init__(num_classes, global_pool, int(cls_token), in_chans)
        num_stages = len(embed_dims)
        for name, values in dict(depths=depths, num_heads=num_heads, patch_sizes=patch_sizes,
                                 patch_strides=patch_strides, patch_paddings=patch_paddings).items():
            if len(values) != num_stages:
                raise ValueError(f"{name} has {len(values)} entries but there are {num_stages} stages (embed_dims)")
        if isinstance(drop_path_rate, (int, float)):
            drop_path_rate = [0.0] * (num_stages - 1) + [float(drop_path_rate)]
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.embed_dim = embed_dims[-1]
        act = get_act_layer(act_layer)

        stages, reduction, chans = [], 1, in_chans
        self.feature_info = []
        for i in range(num_stages):
            dpr = self.drop_path_rates(drop_path_rate[i], depths[i])
            stages.append(
                CvTStage(
                    in_chans=chans, embed_dim=embed_dims[i], depth=depths[i], num_heads=num_heads[i],
                    patch_size=patch_sizes[i], patch_stride=patch_strides[i], patch_padding=patch_paddings[i],
                    mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, with_cls_token=cls_token and i == num_stages - 1,
                    kernel_qkv=kernel_qkv, stride_q=stride_q, stride_kv=stride_kv, padding_q=padding_q,
                    padding_kv=padding_kv, act_layer=act, norm_eps=norm_eps, attn_drop=attn_drop_rate,
                    proj_drop=proj_drop_rate, drop_path=dpr,
                )
            )
            chans, reduction = embed_dims[i], reduction * patch_strides[i]
            self.feature_info.append(dict(num_chs=chans, reduction=reduction, module=f"stages.{i}"))
        self.stages = nn.ModuleList(stages)
        self._init_head(embed_dims[-1], partial(nn.LayerNorm, eps=norm_eps), drop_rate)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Official ``trunc_norm`` init: timm's loop (linears trunc-normal(0.02), norms 1/0; convs PyTorch default),
        then the class token trunc-normal(0.02)."""
        self._init_timm_layers()
        for stage in self.stages:
            if stage.cls_token is not None:
                trunc_normal_(stage.cls_token, std=0.02)

    # ------------------------------------------------------------------ timm contract
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(
            stem=r"^stages\.0\.patch_embed",
            blocks=r"^stages\.(\d+)" if coarse else [
                (r"^stages\.(\d+)\.blocks\.(\d+)", None),
                (r"^stages\.(\d+)\.(?:patch_embed|cls_token)", (0,)),
                (r"^norm", (99999,)),
            ],
        )

    # ------------------------------------------------------------------ forward
    def _iter_blocks(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, int, tuple[int, int]]]:
        """One step per stage: its tokens (B, [1 +] N, D), class token first, and its grid."""
        grid: tuple[int, int] | None = None
        for stage in self.stages:
            x, grid = stage(x, grid)
            yield x, stage.num_prefix_tokens, grid

    def _norm_applies(self, index: int) -> bool:
        return index == len(self.stages) - 1  # the final norm has the last stage's width

    # ------------------------------------------------------------------ convvit explain
    def explain_panels(self, maps: Sequence[torch.Tensor], taps: dict[str, torch.Tensor]) -> dict[str, Any]:
        """``cls_attention``: the class token's attention in the last block (mean of the heads) on its key grid
        (H_kv, W_kv), coarser than the rollout's; nothing without a class token."""
        info = maps.infos[-1]
        if info.num_prefix == 0:
            return {}
        row = maps[-1][0, :, 0, info.num_prefix:].mean(dim=0)  # (H_kv * W_kv,)
        return dict(cls_attention=row.reshape(info.key_grid).float())

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised tokens of the last stage (B, [1 +] N, D), class token first."""
        grid: tuple[int, int] | None = None
        for stage in self.stages:
            x, grid = stage(x, grid)
        return self.norm(x)


# ---------------------------------------------------------------------- configs and builders
def _cfg(flops_g: float, params_m: float, **kwargs: Any) -> dict[str, Any]:
    """CvT's recipe keeps the class token (``no_weight_decay()``) out of weight decay; figures from the README
    of microsoft/CvT at the cfg's input size."""
    return model_cfg(
        first_conv="stages.0.patch_embed.proj", fixed_input_size=False, exclude_no_weight_decay=True,
        published=dict(flops_g=flops_g, params_m=params_m, source="CvT"), **kwargs,
    )


# ---------------------------------------------------------------------- checkpoint key formats
# Official CvT -> convvit CvT: the stages are a ModuleList.
_OFFICIAL_TO_CONVVIT = ((r"^stage(\d+)\.", r"stages.\1."),)
# Hugging Face CvtForImageClassification -> official microsoft/CvT names (applied in order), then convvit's.
_HF_TO_OFFICIAL = (
    (r"^cvt\.", ""),
    (r"^encoder\.stages\.(\d+)\.", r"stage\1."),
    (r"\.embedding\.convolution_embeddings\.projection\.", ".patch_embed.proj."),
    (r"\.embedding\.convolution_embeddings\.normalization\.", ".patch_embed.norm."),
    (r"\.layers\.(\d+)\.", r".blocks.\1."),
    (r"\.attention\.attention\.convolution_projection_(query|key|value)\.convolution_projection\.convolution\.",
     r".attn.conv_proj_\1.conv."),
    (r"\.attention\.attention\.convolution_projection_(query|key|value)\.convolution_projection\.normalization\.",
     r".attn.conv_proj_\1.bn."),
    (r"\.attention\.attention\.projection_(query|key|value)\.", r".attn.proj_\1."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"(conv_proj|proj)_query\b", r"\1_q"),
    (r"(conv_proj|proj)_key\b", r"\1_k"),
    (r"(conv_proj|proj)_value\b", r"\1_v"),
    (r"^layernorm\.", "norm."),
    (r"^classifier\.", "head."),
)
register_key_format(KeyFormat(
    "hf_cvt", "a Hugging Face CvtForImageClassification (CvT) checkpoint",
    detect=lambda keys: any(k.startswith(("cvt.encoder.", "encoder.stages.")) for k in keys),
    rules=_HF_TO_OFFICIAL + _OFFICIAL_TO_CONVVIT, models=("cvt_*",),
    metadata={"act_layer": "gelu"},  # Hugging Face's CvT was trained with GELU, the official one with QuickGELU
    reads_hf_config=True, priority=60,
))
register_key_format(KeyFormat(
    "official_cvt", "an official microsoft/CvT checkpoint",
    detect=lambda keys: any(k.startswith("stage0.patch_embed.") for k in keys),
    rules=_OFFICIAL_TO_CONVVIT, models=("cvt_*",), priority=50,
))
register_key_format(KeyFormat(
    "cvt", "a convvit CvT checkpoint",
    detect=lambda keys: any(k.startswith("stages.0.patch_embed.") for k in keys), models=("cvt_*",), priority=40,
))


@register_model(cfg=_cfg(4.5, 19.997))
def cvt_13(pretrained: bool = False, **kwargs: Any) -> CvT:
    """CvT-13: widths 64/192/384, depths 1/2/10, heads 1/3/6 (20.0M params, 4.5 GFLOPs at 224)."""
    model_args = dict(embed_dims=(64, 192, 384), depths=(1, 2, 10), num_heads=(1, 3, 6), drop_path_rate=0.1)
    return build_with_cfg(CvT, "cvt_13", model_args, pretrained, **kwargs)


@register_model(cfg=_cfg(7.1, 31.623))
def cvt_21(pretrained: bool = False, **kwargs: Any) -> CvT:
    """CvT-21: widths 64/192/384, depths 1/4/16, heads 1/3/6 (31.6M params, 7.1 GFLOPs at 224)."""
    model_args = dict(embed_dims=(64, 192, 384), depths=(1, 4, 16), num_heads=(1, 3, 6), drop_path_rate=0.1)
    return build_with_cfg(CvT, "cvt_21", model_args, pretrained, **kwargs)


@register_model(cfg=_cfg(193.2, 277.196, input_size=(3, 384, 384), crop_pct=1.0))
def cvt_w24(pretrained: bool = False, **kwargs: Any) -> CvT:
    """CvT-W24: widths 192/768/1024, depths 2/2/20, heads 3/12/16 (277.2M params, 193 GFLOPs at 384)."""
    model_args = dict(
        img_size=384, embed_dims=(192, 768, 1024), depths=(2, 2, 20), num_heads=(3, 12, 16), drop_path_rate=0.3,
    )
    return build_with_cfg(CvT, "cvt_w24", model_args, pretrained, **kwargs)
