"""Attention maps, attention rollout and mean attention distance.

The models run attention through ``F.scaled_dot_product_attention``, whose fused kernels never
materialise the attention probabilities, so the usual tools (hooks on an attention-dropout module or
on the softmax) see nothing. Instead each attention module exposes ``attention_probs(x, grid)``,
which recomputes the probabilities from the same q and k its forward feeds SDPA and says on which grid
the keys sit (the model contract, :class:`~convvit.models._base.TokenModel`). :func:`capture_attention`
registers forward hooks that call it while the context is active: the forward itself, and so the
model's outputs, are untouched, and the fused path stays the only path for training and inference.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

__all__ = [
    "AttentionMaps", "Explanation", "MapInfo", "attention_distance", "attention_maps", "attention_modules",
    "capture_attention", "explain_image", "rollout",
]

Grid = tuple[int, int]


@dataclass(frozen=True)
class MapInfo:
    """Where the tokens of one captured map sit.

    ``grid``: the (H', W') grid of the query patch tokens; ``key_grid``: that of the key patch tokens
    (CvT's keys are a strided convolution of the map, so it is coarser there; elsewhere equal);
    ``num_prefix``: tokens before the patches (a class token) in queries and keys alike;
    ``pitch``: pixels between neighbouring query patches (height, width).
    """

    grid: Grid
    key_grid: Grid
    num_prefix: int
    pitch: tuple[float, float] = (1.0, 1.0)


class AttentionMaps(list):
    """A list of attention maps (B, heads, N_query, N_key), forward order, with a :class:`MapInfo` per map in
    ``infos``."""

    def __init__(self, maps: Sequence[torch.Tensor] = (), infos: Sequence[MapInfo] = ()) -> None:
        super().__init__(maps)
        self.infos = list(infos)


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that keep the attention contract (``attention_probs(x, grid)``, see
    :class:`~convvit.models._base.TokenModel`), in registration order; empty for a model without attention."""
    return [m for m in model.modules() if callable(getattr(m, "attention_probs", None))]


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[AttentionMaps]:
    """While active, every attention module of ``model`` appends its probabilities to the yielded list.

    Each forward appends one (B, heads, N_query, N_key) map per attention block, in forward order,
    and its :class:`MapInfo` to ``.infos``. Raises ValueError for a model without attention modules.
    Run it without gradients (as :func:`attention_maps` does): with gradient checkpointing on, a
    backward pass would re-run the blocks and append their maps a second time.
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError(f"{type(model).__name__} has no attention layers to explain")
    captured = AttentionMaps()
    image_hw: list[tuple[int, int]] = []

    def on_model(_module: nn.Module, args: tuple) -> None:  # remembers the input size, for the pixel pitch
        image_hw.append(tuple(args[0].shape[-2:]))

    def on_attention(module: nn.Module, args: tuple, _output: torch.Tensor) -> None:
        x, grid = args[0], tuple(args[1])
        probs, key_grid = module.attention_probs(x, grid)
        num_prefix = probs.shape[-2] - grid[0] * grid[1]
        if probs.shape[-1] - num_prefix != key_grid[0] * key_grid[1]:  # a family breaking the contract, not a user
            raise ValueError(f"{type(module).__name__}.attention_probs gave {probs.shape[-1]} keys, which do not fit "
                             f"its key grid {tuple(key_grid)} after {num_prefix} prefix tokens")
        h, w = image_hw[-1] if image_hw else grid
        captured.append(probs.detach())
        captured.infos.append(MapInfo(grid, tuple(key_grid), num_prefix, (h / grid[0], w / grid[1])))

    handles = [model.register_forward_pre_hook(on_model)]
    handles += [m.register_forward_hook(on_attention) for m in modules]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor) -> AttentionMaps:
    """The attention probabilities (B, heads, N_query, N_key) of every attention block, in forward order.

    They are those the forward pass used: for ConViT's GPSA the gated mixture after renormalisation,
    for CvT each stage's own token counts (keys on the strided key grid). Rows sum to 1.
    """
    with capture_attention(model) as maps:
        model(images)
    return maps


@dataclass
class Explanation:
    """One forward pass of one image: its ``logits`` (1, classes), the attention ``maps`` of every block and the
    family's own figure ``panels`` (:meth:`~convvit.models._base.TokenModel.explain_panels`; empty for a model
    without that hook)."""

    logits: torch.Tensor
    maps: AttentionMaps
    panels: dict[str, Any]


@torch.no_grad()
def explain_image(model: nn.Module, image: torch.Tensor) -> Explanation:
    """Classify ``image`` (C, H, W) or (1, C, H, W) in one forward pass that also captures every attention map and
    the outputs the model's ``explain_taps()`` names, then ask the model for its ``explain_panels``.

    Any model that keeps the attention contract of :class:`~convvit.models._base.TokenModel` is explained; the
    two hooks are optional. Raises ValueError for a batch of several images or a model without attention.
    """
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"explain_image takes one image, (C, H, W) or (1, C, H, W), got shape {tuple(image.shape)}")
    taps: dict[str, torch.Tensor] = {}

    def record(name: str) -> Callable[[nn.Module, tuple, torch.Tensor], None]:
        def hook(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
            taps[name] = output.detach()

        return hook

    tap_modules = getattr(model, "explain_taps", dict)()
    handles = [module.register_forward_hook(record(name)) for name, module in tap_modules.items()]
    try:
        with capture_attention(model) as maps:
            logits = model(image)
    finally:
        for handle in handles:
            handle.remove()
    explain_panels = getattr(model, "explain_panels", None)
    panels = explain_panels(maps, taps) if explain_panels is not None else {}
    return Explanation(logits, maps, panels)


def _infer_info(attn: torch.Tensor) -> MapInfo:
    """For a plain tensor: square grids, the tokens beyond the largest square count as prefix tokens."""
    n_q, n_k = attn.shape[-2:]
    side = math.isqrt(n_q)
    prefix = n_q - side * side
    key_side = math.isqrt(n_k - prefix)
    return MapInfo((side, side), (key_side, key_side), prefix)


def _infos(maps: Sequence[torch.Tensor]) -> list[MapInfo]:
    infos = getattr(maps, "infos", None)
    return list(infos) if infos and len(infos) == len(maps) else [_infer_info(a) for a in maps]


def _nearest_index(size: int, key_size: int, device: torch.device) -> torch.Tensor:
    """For each of ``size`` query rows (or columns), the key row whose cell covers it."""
    return (torch.arange(size, device=device) * key_size) // size


def _keys_on_query_grid(attn: torch.Tensor, info: MapInfo) -> torch.Tensor:
    """(B, T, T_kv) -> (B, T, T): each key's weight shared equally by the query-grid patches its cell covers.

    Rows still sum to 1, and rollout can multiply the result with the neighbouring layers' maps.
    """
    if info.key_grid == info.grid:
        return attn
    (h, w), (kh, kw), p = info.grid, info.key_grid, info.num_prefix
    owner = (_nearest_index(h, kh, attn.device)[:, None] * kw + _nearest_index(w, kw, attn.device)[None, :]).flatten()
    counts = torch.bincount(owner, minlength=kh * kw).to(attn.dtype)  # query patches per key patch
    patches = attn[..., p:][..., owner] / counts[owner]  # (B, T, H' W')
    return torch.cat([attn[..., :p], patches], dim=-1)


def _fuse(attn: torch.Tensor, head_fusion: str) -> torch.Tensor:
    if head_fusion == "mean":
        return attn.mean(dim=1)
    if head_fusion == "max":
        return attn.amax(dim=1)
    if head_fusion == "min":
        return attn.amin(dim=1)
    raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")


def _discard(a: torch.Tensor, ratio: float, num_prefix: int) -> torch.Tensor:
    """Zero the weakest ``ratio`` of the patch-to-patch entries; attention from or to a prefix token is kept."""
    patch = a[:, num_prefix:, num_prefix:]
    flat = patch.reshape(a.shape[0], -1)
    k = int(flat.shape[-1] * ratio)
    if k == 0:
        return a
    a = a.clone()
    threshold = flat.kthvalue(k, dim=-1).values[:, None, None]  # (B, 1, 1)
    a[:, num_prefix:, num_prefix:] = torch.where(patch <= threshold, torch.zeros_like(patch), patch)
    return a


def rollout(
    maps: Sequence[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.0
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each patch contributes to the class token.

    Per layer: fuse the heads (``mean``, ``max`` or ``min``), optionally zero the weakest
    ``discard_ratio`` of the patch-to-patch attention, take ``0.5 A + 0.5 I`` and re-normalise the
    rows; then multiply the layers' matrices in forward order. Returns the class token's row over
    the patch tokens (B, N) of the last map's grid (rows of the product sum to 1, so the values lie
    in [0, 1]; they are not re-scaled). A model without a class token gives the mean of the patch
    rows instead (what average pooling reads).

    Token counts that change between blocks:

    * a map with fewer prefix tokens on the same grid (ConViT before its class token joins) is
      embedded with the missing class token attending only to itself: it carries no image
      information until it joins, and the patches' mixing before that is kept;
    * maps on another grid than the last map's (CvT's earlier stages, which have no class token)
      are left out: the rollout covers the trailing blocks on the final grid;
    * keys on a coarser grid than the queries (CvT's strided keys) have their weight shared equally
      by the query-grid patches each key's cell covers (:func:`_keys_on_query_grid`).

    ``maps`` from :func:`attention_maps` carry this layout in ``.infos``; for plain tensors square
    grids are assumed, with the tokens beyond the largest square count as prefix tokens.
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    if len(maps) == 0:
        raise ValueError("rollout needs at least one attention map")
    infos = _infos(maps)
    final = infos[-1]
    prefix = final.num_prefix
    result: torch.Tensor | None = None
    for attn, info in zip(maps, infos):
        if info.grid != final.grid:
            continue
        a = _keys_on_query_grid(_fuse(attn.float(), head_fusion), info)  # (B, T, T)
        a = _discard(a, discard_ratio, info.num_prefix)
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
        missing = prefix - info.num_prefix
        if missing > 0:  # prefix tokens not there yet: they attend to themselves only
            padded = torch.eye(a.shape[-1] + missing, device=a.device, dtype=a.dtype).repeat(a.shape[0], 1, 1)
            padded[:, missing:, missing:] = a
            a = padded
        result = a if result is None else a @ result
    assert result is not None  # the last map is always on the final grid
    if prefix:
        return result[:, 0, prefix:]
    return result[:, prefix:, prefix:].mean(dim=1)


def _positions(
    grid: Grid, pitch: tuple[float, float], scale: tuple[float, float], device: torch.device
) -> torch.Tensor:
    """(H' W', 2) pixel centres of a row-major grid whose cells are ``scale`` query cells of ``pitch`` pixels."""
    ys = (torch.arange(grid[0], device=device, dtype=torch.float64) + 0.5) * scale[0] * pitch[0]
    xs = (torch.arange(grid[1], device=device, dtype=torch.float64) + 0.5) * scale[1] * pitch[1]
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


def attention_distance(
    maps: Sequence[torch.Tensor],
    grid: Grid | None = None,
    patch_size: float | None = None,
) -> torch.Tensor:
    """Mean attention distance (layers, heads) in pixels (the ViT paper's Figure 7 analysis).

    For each head: the attention-weighted mean distance between a query patch and the key patches,
    averaged over query patches and images. Only patch tokens count (attention to a class token has
    no distance; the remaining weights are re-normalised). ``grid`` is the (H', W') patch grid of
    every map (default: each map's own, from ``maps.infos``, else square); ``patch_size`` the pixels
    per patch (default: from ``maps.infos``, else 1, i.e. distance in patches). Layers with fewer
    heads than the widest (CvT's stages) are padded with NaN.
    """
    if len(maps) == 0:
        raise ValueError("attention_distance needs at least one attention map")
    infos = _infos(maps)
    rows = []
    for attn, info in zip(maps, infos):
        q_grid = tuple(grid) if grid is not None else info.grid
        k_grid = info.key_grid if grid is None else q_grid
        pitch = (float(patch_size), float(patch_size)) if patch_size is not None else info.pitch
        p = attn.shape[-2] - q_grid[0] * q_grid[1]
        if p < 0 or attn.shape[-1] - p != k_grid[0] * k_grid[1]:
            raise ValueError(
                f"an attention map of {attn.shape[-2]} x {attn.shape[-1]} tokens does not fit a {q_grid} patch grid"
            )
        w = attn[..., p:, p:].double()  # (B, h, N, N_kv)
        w = w / w.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        q_pos = _positions(q_grid, pitch, (1.0, 1.0), attn.device)
        k_pos = _positions(k_grid, pitch, (q_grid[0] / k_grid[0], q_grid[1] / k_grid[1]), attn.device)
        dist = torch.cdist(q_pos, k_pos)  # (N, N_kv)
        rows.append((w * dist).sum(dim=-1).mean(dim=(0, 2)))  # (h,)
    heads = max(r.numel() for r in rows)
    out = torch.full((len(rows), heads), float("nan"), dtype=torch.float64)
    for i, r in enumerate(rows):
        out[i, : r.numel()] = r.cpu()
    return out.float()
