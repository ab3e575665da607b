"""ConViT: vision transformers with gated positional self-attention (GPSA).

Paper: "ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases",
d'Ascoli et al., 2021, https://arxiv.org/abs/2103.10697 -- official code
https://github.com/facebookresearch/convit (also timm's ``convit.py``).

The first ``local_up_to_layer`` blocks (10 of 12) use GPSA: each head mixes content attention
``softmax(q k^T / sqrt(d))`` with a positional attention ``softmax(pos_proj(r_ij))`` over the
relative positions ``r_ij = (dx, dy, dx^2 + dy^2)`` of the patches, through a learned gate
``sigmoid(gating_param)``, and is initialised to attend locally like a convolution. The class
token joins just before the first plain self-attention block. State-dict keys are timm's, so
timm and official ConViT checkpoints load as they are.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_

from convvit.models._base import TokenModel
from convvit.models.checkpoints.formats import KeyFormat, register_key_format
from convvit.models.layers import Attention, Block, head_dim
from convvit.models.registry import build_with_cfg, model_cfg, register_model
from convvit.models.stems import PatchifyStem, token_grid

__all__ = ["ConViT", "GatedPositionalAttention", "relative_positions"]


def relative_positions(
    grid: tuple[int, int], device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(N, N, 3)`` tensor of ``[dx, dy, dx^2 + dy^2]`` from patch n to patch m (row-major patches)."""
    rows = torch.arange(grid[0], device=device).repeat_interleave(grid[1])  # (N,)
    cols = torch.arange(grid[1], device=device).repeat(grid[0])  # (N,)
    dx = cols[None, :] - cols[:, None]  # (N, N), integers: exact in any dtype they are cast to
    dy = rows[None, :] - rows[:, None]
    return torch.stack([dx, dy, dx * dx + dy * dy], dim=-1).to(dtype)


class GatedPositionalAttention(nn.Module):
    """Gated positional self-attention (GPSA), keys ``qk``, ``v``, ``proj``, ``pos_proj``, ``gating_param``.

    ``attn = (1 - sigmoid(g)) * softmax(q k^T / sqrt(d)) + sigmoid(g) * softmax(pos_proj(r))``;
    both terms are row-stochastic, so the renormalisation of the original code is the identity and
    the content part runs through ``F.scaled_dot_product_attention``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        locality_strength: float = 1.0,
        grid_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim(dim, num_heads)
        self.scale = self.head_dim**-0.5
        self.locality_strength = locality_strength
        self.qk = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()
        self.pos_proj = nn.Linear(3, num_heads)
        self.gating_param = nn.Parameter(torch.ones(num_heads))
        # The relative positions depend on the token grid alone: built once for the grid the model is built for
        # (``grid_size``) instead of in every forward. Integers, so that dtype casts of the model (``.half()``, a
        # bfloat16 round trip) never round them; not persistent, so the state dict keeps timm's keys.
        self.rel_pos_grid: tuple[int, int] = (int(grid_size[0]), int(grid_size[1])) if grid_size is not None else (0, 0)
        self.register_buffer("rel_pos", relative_positions(self.rel_pos_grid, dtype=torch.int32), persistent=False)

    @torch.no_grad()
    def local_init(self) -> None:
        """Start as a convolution: value = identity; head (h1, h2) of a k x k grid attends around offset (h1, h2)."""
        self.v.weight.copy_(torch.eye(self.v.weight.shape[0]))
        k = int(self.num_heads**0.5)
        center = (k - 1) / 2
        for h1 in range(k):
            for h2 in range(k):
                row = h1 + k * h2
                self.pos_proj.weight[row] = torch.tensor([2 * (h2 - center), 2 * (h1 - center), -1.0])
        self.pos_proj.weight.mul_(self.locality_strength)

    def relative_positions_for(self, grid: tuple[int, int], x: torch.Tensor) -> torch.Tensor:
        """The relative positions of ``grid`` in ``x``'s dtype: the kept ones for the built grid, else built now
        (an input of another size, with ``dynamic_img_size``)."""
        if grid[0] == self.rel_pos_grid[0] and grid[1] == self.rel_pos_grid[1]:
            return self.rel_pos.to(x.dtype)
        return relative_positions(grid, x.device, x.dtype)

    def positional_attention(self, rel_pos: torch.Tensor) -> torch.Tensor:
        """``softmax(pos_proj(r))``: (heads, N, N), the same for every image."""
        return self.pos_proj(rel_pos).permute(2, 0, 1).softmax(dim=-1)

    def _gate(self) -> torch.Tensor:
        return torch.sigmoid(self.gating_param).view(-1, 1, 1)  # (h, 1, 1)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, C = x.shape
        q, k = self.qk(x).reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        v = self.v(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, hd)
        return q, k, v

    def attention_map(self, x: torch.Tensor, rel_pos: torch.Tensor) -> torch.Tensor:
        """The gated attention (B, heads, N, N), e.g. to plot it; ``x`` is the normalised block input."""
        q, k, _ = self._qkv(x)
        content = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        gate = self._gate()
        attn = (1.0 - gate) * content + gate * self.positional_attention(rel_pos)
        return attn / attn.sum(dim=-1, keepdim=True)

    def attention_probs(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """The gated, renormalised attention (B, heads, N, N) the forward applies, and the keys' grid (the
        queries' ``grid``), for :mod:`convvit.explain`."""
        return self.attention_map(x, self.relative_positions_for(grid, x)), grid

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) patch tokens on a ``grid`` of H' x W' patches -> (B, N, C)."""
        B, N, C = x.shape
        rel_pos = self.relative_positions_for(grid, x)  # (N, N, 3)
        if self.training and self.attn_drop > 0:  # dropout acts on the gated map: build it
            q, k, v = self._qkv(x)
            attn = F.dropout(self.attention_map(x, rel_pos), self.attn_drop)
            x = attn @ v
        else:
            q, k, v = self._qkv(x)
            content = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, hd)
            pos = self.positional_attention(rel_pos).to(v.dtype)  # (h, N, N)
            # One (h, N, N) @ (h, N, B * hd) product instead of expanding the positional map per image.
            v_all = v.permute(1, 2, 0, 3).reshape(self.num_heads, N, B * self.head_dim)
            positional = torch.bmm(pos, v_all).view(self.num_heads, N, B, self.head_dim).permute(2, 0, 1, 3)
            x = torch.lerp(content, positional, self._gate().to(content.dtype))  # (1 - g) c + g p
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return self.proj_drop(self.proj(x))


class ConViT(TokenModel):
    """ConViT: a DeiT whose first ``local_up_to_layer`` blocks use gated positional self-attention.

    Args:
        img_size: input size (the position embedding is built for it).
        patch_size: patch size of the patchify stem.
        in_chans, num_classes: input channels, classifier outputs (0: no classifier).
        global_pool: ``"token"`` (class token, the paper's) or ``"avg"`` (mean of patch tokens).
        embed_dim, depth, num_heads, mlp_ratio: width (total, not per head), blocks, heads, MLP ratio.
        local_up_to_layer: number of GPSA blocks; the class token joins before the next one.
        locality_strength: scale of the local initialisation of the positional attention.
        dynamic_img_size: accept other input sizes, resampling the position embedding on the fly.
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
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        local_up_to_layer: int = 10,
        locality_strength: float = 1.0,
        use_pos_embed: bool = True,
        norm_eps: float = 1e-6,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dynamic_img_size: bool = False,
    ) -> None:
        # num_prefix_tokens counts the class token of the output sequence; the position embedding has no class slot
        super().__init__(num_classes, global_pool, 1, in_chans)
        if not 0 <= local_up_to_layer <= depth:
            raise ValueError(f"local_up_to_layer must be in [0, depth={depth}], got {local_up_to_layer}")
        self.embed_dim = embed_dim
        self.local_up_to_layer = local_up_to_layer
        self.dynamic_img_size = dynamic_img_size
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)

        self.patch_embed = PatchifyStem(img_size, patch_size, in_chans, embed_dim)
        self.img_size = self.patch_embed.img_size
        self.patch_size = patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim)) if use_pos_embed else None
        )
        self.pos_drop = nn.Dropout(pos_drop_rate) if pos_drop_rate > 0 else nn.Identity()

        dpr = self.drop_path_rates(drop_path_rate, depth)
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                GatedPositionalAttention(
                    embed_dim, num_heads, qkv_bias, attn_drop_rate, proj_drop_rate, locality_strength,
                    grid_size=self.patch_embed.grid_size,
                )
                if i < local_up_to_layer
                else Attention(embed_dim, num_heads, qkv_bias, attn_drop_rate, proj_drop_rate),
                int(embed_dim * mlp_ratio),
                drop_path=dpr[i],
                norm_layer=norm_layer,
                proj_drop=proj_drop_rate,
            )
            for i in range(depth)
        )
        self.feature_info = [dict(module=f"blocks.{i}", num_chs=embed_dim, reduction=patch_size) for i in range(depth)]
        self._init_head(embed_dim, norm_layer, drop_rate)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """timm / official init: trunc-normal(0.02) embeddings, timm's loop, then GPSA's local init."""
        if self.pos_embed is not None:
            trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self._init_timm_layers()
        for m in self.modules():
            if isinstance(m, GatedPositionalAttention):
                m.local_init()

    # ------------------------------------------------------------------ forward
    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, C, H, W) -> patch tokens with position embedding (B, N, D) (no class token yet) and the grid."""
        grid = token_grid(x.shape[-2], x.shape[-1], self.img_size, self.patch_size, self.dynamic_img_size)
        x = self.patch_embed(x)  # (B, N, D)
        if self.pos_embed is not None:
            x = x + self._pos_embed_for(grid)
        return self.pos_drop(x), grid

    def _join_class_token(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1 + N, D)

    def _iter_blocks(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, int, tuple[int, int]]]:
        x, grid = self._embed(x)
        for i, block in enumerate(self.blocks):
            if i == self.local_up_to_layer:
                x = self._join_class_token(x)
            x = block(x, grid)
            yield x, int(i >= self.local_up_to_layer), grid

    def _final_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if self.local_up_to_layer >= len(self.blocks):  # no plain block: the class token joins at the end
            x = self._join_class_token(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> normalised tokens (B, 1 + N, D), class token first."""
        x, grid = self._embed(x)
        for i, block in enumerate(self.blocks):
            if i == self.local_up_to_layer:
                x = self._join_class_token(x)
            x = block(x, grid)
        return self._final_tokens(x)

    def _prune_blocks(self, keep: int) -> None:
        super()._prune_blocks(keep)
        self.local_up_to_layer = min(self.local_up_to_layer, keep)

    # ------------------------------------------------------------------ convvit explain
    def explain_panels(self, maps: Sequence[torch.Tensor], taps: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The ``gates`` sigmoid(lambda) of every head of every GPSA layer (layers, heads): 1 is positional
        attention."""
        gates = [torch.sigmoid(m.gating_param.detach().float()) for m in self.modules()
                 if isinstance(m, GatedPositionalAttention)]
        return dict(gates=torch.stack(gates)) if gates else {}


# ---------------------------------------------------------------------- configs and builders
def _cfg(flops_g: float, params_m: float) -> dict[str, Any]:
    """ConViT trains with DeiT's recipe: ``no_weight_decay()`` stays out of weight decay."""
    return model_cfg(exclude_no_weight_decay=True, published=dict(flops_g=flops_g, params_m=params_m, source="ConViT"))


# timm's and facebookresearch/convit's keys are convvit's; recognised by the gating parameters.
register_key_format(KeyFormat(
    "convit", "a ConViT checkpoint (timm / facebookresearch/convit layout)",
    detect=lambda keys: any(k.endswith("attn.gating_param") for k in keys), models=("convit_*",), priority=30,
))


@register_model(cfg=_cfg(1.26, 5.71))
def convit_tiny(pretrained: bool = False, **kwargs: Any) -> ConViT:
    """ConViT-Ti: 4 heads x 48 = 192 wide, 12 blocks, 10 of them GPSA (5.7M params)."""
    model_args = dict(embed_dim=192, num_heads=4, depth=12, local_up_to_layer=10, locality_strength=1.0)
    return build_with_cfg(ConViT, "convit_tiny", model_args, pretrained, **kwargs)


@register_model(cfg=_cfg(5.76, 27.78))
def convit_small(pretrained: bool = False, **kwargs: Any) -> ConViT:
    """ConViT-S: 9 heads x 48 = 432 wide, 12 blocks, 10 of them GPSA (27.8M params)."""
    model_args = dict(embed_dim=432, num_heads=9, depth=12, local_up_to_layer=10, locality_strength=1.0)
    return build_with_cfg(ConViT, "convit_small", model_args, pretrained, **kwargs)


@register_model(cfg=_cfg(17.52, 86.54))
def convit_base(pretrained: bool = False, **kwargs: Any) -> ConViT:
    """ConViT-B: 16 heads x 48 = 768 wide, 12 blocks, 10 of them GPSA (86.5M params)."""
    model_args = dict(embed_dim=768, num_heads=16, depth=12, local_up_to_layer=10, locality_strength=1.0)
    return build_with_cfg(ConViT, "convit_base", model_args, pretrained, **kwargs)
