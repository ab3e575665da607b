"""Building blocks shared by the model families: attention, MLP, drop path, activations and norms."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath
from torch.utils.checkpoint import checkpoint

__all__ = [
    "Attention", "Block", "DropPath", "Mlp", "QuickGELU", "check_global_pool", "get_act_layer", "get_norm_layer",
    "head_dim",
]


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the GELU approximation used by CvT (and CLIP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS: dict[str, Callable[[], nn.Module] | None] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "gelu": nn.GELU,
    "quick_gelu": QuickGELU,
    "silu": nn.SiLU,
    "none": None,
}


def get_act_layer(name: str | Callable[[], nn.Module] | None) -> Callable[[], nn.Module] | None:
    """Activation constructor from a name (relu, gelu, quick_gelu, silu, none) or pass a callable through."""
    if name is None or callable(name):
        return name
    key = name.lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[key]


def get_norm_layer(name: str | None) -> str | None:
    """Validate a stem norm name: 'batchnorm', 'layernorm' or 'none' (None)."""
    if name is None:
        return None
    key = name.lower()
    aliases = {"bn": "batchnorm", "batchnorm": "batchnorm", "ln": "layernorm", "layernorm": "layernorm", "none": None}
    if key not in aliases:
        raise ValueError(f"unknown norm {name!r}; choose one of batchnorm, layernorm, none")
    return aliases[key]


def head_dim(dim: int, num_heads: int) -> int:
    """The width of one attention head, or a clear error when ``dim`` does not split evenly."""
    if dim % num_heads:
        raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
    return dim // num_heads


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (flash/fused kernels where available)."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim(dim, num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, h, N, hd)
        q, k, v = qkv.unbind(0)
        return q, k, v

    def attention_probs(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """``softmax(q k^T / sqrt(d))`` (B, h, N, N) for the block input ``x``, from the q and k that
        :meth:`forward` feeds SDPA, and the keys' grid (the queries' ``grid``): the attention contract of
        :class:`~convvit.models._base.TokenModel` (for :mod:`convvit.explain`; the forward never builds it)."""
        q, k, _ = self._qkv(x)
        return ((q * self.head_dim**-0.5) @ k.transpose(-2, -1)).softmax(dim=-1), grid

    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, N, C) -> (B, N, C); ``grid`` (the token map's height and width) is not needed here."""
        B, N, C = x.shape
        q, k, v = self._qkv(x)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """Linear -> activation -> Linear (keys ``fc1``, ``fc2``, as in timm)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x), grid)``, then ``x + mlp(norm2(x))``.

    As timm's ``Block`` (``timm/models/vision_transformer.py``), with the attention passed in built:
    each family has its own (:class:`Attention`, ConViT's gated positional attention, CvT's
    convolutional attention). Every attention takes the token grid ``(H', W')`` as its second
    argument: CvT reshapes tokens to a map with it, ConViT builds relative positions from it.
    ``mlp_layer(dim, mlp_dim, act_layer=..., drop=...)`` and ``norm_layer(dim)`` build the MLP and norms.
    """

    def __init__(
        self,
        dim: int,
        attn: nn.Module,
        mlp_dim: int,
        drop_path: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: Callable[[int], nn.Module] = partial(nn.LayerNorm, eps=1e-6),
        mlp_layer: Callable[..., nn.Module] = Mlp,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.norm1 = norm_layer(dim)
        self.attn = attn
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = mlp_layer(dim, mlp_dim, act_layer=act_layer, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), grid))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, T, C) -> (B, T, C). With gradient checkpointing on (and gradients needed), the block's
        activations are recomputed in the backward pass instead of kept."""
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(self._forward, x, grid, use_reentrant=False)
        return self._forward(x, grid)


def check_global_pool(global_pool: str, has_class_token: bool) -> str:
    """Validate a pooling name: ``"token"`` (class token), ``"avg"`` (``"pooled"``: mean of patch tokens) or ``""``."""
    global_pool = {"pooled": "avg", "mean": "avg"}.get(global_pool, global_pool)
    if global_pool not in ("token", "avg", ""):
        raise ValueError(f"global_pool must be 'token', 'avg' (or 'pooled') or '', got {global_pool!r}")
    if global_pool == "token" and not has_class_token:
        raise ValueError(
            "global_pool='token' needs a class token, and this model has none: build it with one "
            "(class_token=True for ViT, cls_token=True for CvT) or use global_pool='avg'"
        )
    return global_pool
