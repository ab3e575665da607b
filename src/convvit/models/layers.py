"""Building blocks shared by the model families: attention, MLP, drop path, activations and norms."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath

__all__ = [
    "Attention", "Block", "DropPath", "Mlp", "QuickGELU", "PlainTokenModel", "TokenClassifier", "check_global_pool", "get_act_layer",
    "get_norm_layer",
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
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, h, N, hd)
        q, k, v = qkv.unbind(0)
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
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``.

    ``attn`` is any module mapping (B, N, C) -> (B, N, C); extra positional arguments of
    ``forward`` are passed to it (CvT passes the token map's height and width).
    """

    def __init__(
        self,
        dim: int,
        attn: nn.Module,
        mlp_dim: int,
        drop_path: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_eps: float = 1e-6,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attn
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, act_layer=act_layer, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, *attn_args) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), *attn_args))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x


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


class TokenClassifier:
    """The classifier half of timm's model contract, shared by the token models (ViT, ConViT, CvT).

    A subclass (also an ``nn.Module``) sets ``global_pool``, ``num_prefix_tokens``, ``num_features``,
    ``num_classes``, ``head_drop`` and ``head``, and implements ``forward_features``.
    """

    global_pool: str
    num_prefix_tokens: int
    num_features: int
    num_classes: int
    head_drop: nn.Module
    head: nn.Module

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool, self.num_prefix_tokens > 0)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, prefix + N, D) -> (B, D): the class token, the mean of the other tokens, or nothing."""
        if self.global_pool == "token":
            return x[:, 0]
        if self.global_pool == "avg":
            return x[:, self.num_prefix_tokens :].mean(dim=1)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class PlainTokenModel(TokenClassifier):
    """timm's contract for a single-stage token model (ViT, ConViT): ``patch_embed``, ``cls_token``,
    ``pos_embed``, ``blocks.N`` and ``norm``, with a ``grad_checkpointing`` flag read by ``forward_features``."""

    grad_checkpointing: bool

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameters timm's optimizer factory keeps out of weight decay (pycls decays them; see training)."""
        return {"pos_embed", "cls_token"}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^cls_token|^pos_embed|^patch_embed",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
