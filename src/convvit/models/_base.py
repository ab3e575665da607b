"""The base class every convvit model family shares: timm's model contract, written once.

A family (``vit.py``, ``convit.py``, ``cvt.py``) subclasses :class:`TokenModel` and

1. calls ``super().__init__(num_classes, global_pool, num_prefix_tokens, in_chans)`` first,
2. builds its stem and blocks (drop-path rates from :meth:`TokenModel.drop_path_rates`),
3. calls :meth:`TokenModel._init_head` last (final norm, head dropout, classifier), so that the
   modules are created -- and the random generator is drawn from -- in the same order as timm's,
4. implements ``forward_features(x)`` -> normalised tokens (B, prefix + N, D) and ``_iter_blocks(x)``,
   a generator of ``(tokens, num_prefix, grid)`` after each block (or stage), which drives
   :meth:`TokenModel.forward_intermediates`,
5. gives each attention module ``forward(x, grid)`` (tokens (B, prefix + H' * W', C) and their grid (H', W'))
   and ``attention_probs(x, grid)`` -> ``(probabilities (B, heads, N_query, N_key), key grid (H_kv, W_kv))``,
   the probabilities its forward applies to the values (recomputed: the forward may use fused attention);
   any prefix tokens lead queries and keys alike. :mod:`convvit.explain` needs nothing else to draw a family;
   a family with panels of its own in the figure overrides :meth:`TokenModel.explain_taps` and
   :meth:`TokenModel.explain_panels`.

Everything else -- pooling, head, ``reset_classifier``, ``no_weight_decay``, ``group_matcher``,
gradient checkpointing, ``forward_intermediates``, ``prune_intermediate_layers``, the timm init
loop and position-embedding resampling -- lives here. The contract is timm's
(https://github.com/huggingface/pytorch-image-models, ``timm/models/vision_transformer.py``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn as nn
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models._features import feature_take_indices

from convvit.models.layers import Block, check_global_pool

__all__ = ["TokenModel"]


class TokenModel(nn.Module):
    """An image classifier over a sequence of tokens (optionally led by a class token).

    Attributes every model has: ``num_classes``, ``in_chans``, ``global_pool`` (``"token"``, ``"avg"``
    or ``""``), ``num_prefix_tokens`` (class tokens in the output of ``forward_features``),
    ``num_features`` (= ``head_hidden_size``), ``norm``, ``head_drop``, ``head``, ``feature_info``.
    """

    # The ModuleList that ``prune_intermediate_layers`` truncates and ``feature_info`` describes.
    blocks_attr = "blocks"

    def __init__(self, num_classes: int, global_pool: str, num_prefix_tokens: int, in_chans: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.num_prefix_tokens = num_prefix_tokens
        self.global_pool = check_global_pool(global_pool, num_prefix_tokens > 0)
        self.grad_checkpointing = False

    # ------------------------------------------------------------------ construction
    @staticmethod
    def drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
        """Stochastic depth rising linearly from 0 at the first block to ``drop_path_rate`` at the last."""
        return [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]

    def _init_head(self, num_features: int, norm_layer: Callable[[int], nn.Module], drop_rate: float) -> None:
        """Final norm, head dropout and classifier; called after the blocks are built."""
        self.num_features = self.head_hidden_size = num_features
        self.norm = norm_layer(num_features)
        self.head_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.head = nn.Linear(num_features, self.num_classes) if self.num_classes > 0 else nn.Identity()

    @torch.no_grad()
    def _init_timm_layers(self) -> None:
        """timm's init loop: Linear weights trunc-normal(0.02) with zero biases; norm gains 1, biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ position embedding
    def _pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """``self.pos_embed`` for a ``grid`` of patches, bicubically resampled from the grid it was built for.

        Prefix slots (a class token's) are the leading entries beyond the built grid and are kept as they are.
        """
        built = self.patch_embed.grid_size
        pos_embed = self.pos_embed
        if grid[0] == built[0] and grid[1] == built[1]:
            return pos_embed
        num_prefix = pos_embed.shape[1] - built[0] * built[1]
        return resample_abs_pos_embed(pos_embed, [grid[0], grid[1]], [built[0], built[1]], num_prefix_tokens=num_prefix)

    # ------------------------------------------------------------------ classifier
    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for ``num_classes`` (0: none), on the model's device and dtype and in its mode."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool, self.num_prefix_tokens > 0)
        if num_classes > 0:
            ref = next(self.parameters())
            self.head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype)
        else:
            self.head = nn.Identity()
        self.head.train(self.training)

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

    # ------------------------------------------------------------------ optimizer and training hooks
    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        """Parameters timm's optimizer factory keeps out of weight decay: the embeddings that exist.

        Whether a recipe honours this is the family's policy, ``pretrained_cfg["exclude_no_weight_decay"]``
        (pycls decays them).
        """
        names = {n for n, _ in self.named_parameters()}
        return {n for n in names if n.split(".")[-1] in ("pos_embed", "cls_token", "dist_token")}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for layer-wise lr decay: stem, then one group per block, then the final norm."""
        return dict(
            stem=r"^cls_token|^dist_token|^pos_embed|^patch_embed",
            blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (the guard is in :class:`Block`)."""
        self.grad_checkpointing = enable
        for m in self.modules():
            if isinstance(m, Block):
                m.grad_checkpointing = enable

    # ------------------------------------------------------------------ intermediates
    def _iter_blocks(self, x: torch.Tensor) -> Iterator[tuple[torch.Tensor, int, tuple[int, int]]]:
        """Yield ``(tokens (B, prefix + N, D), prefix, (H', W'))`` after each block (or stage) of ``x``."""
        raise NotImplementedError

    def _final_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The output of ``forward_features`` from the last block's tokens."""
        return self.norm(x)

    def _norm_applies(self, index: int) -> bool:
        """Whether ``forward_intermediates(norm=True)`` normalises intermediate ``index`` with the final norm."""
        return True

    @torch.jit.ignore
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Outputs of the chosen blocks (timm's contract): the last ``indices`` if an int, else those indices.

        Intermediates hold the patch tokens as (B, D, H', W') maps (``"NCHW"``) or (B, N, D) (``"NLC"``);
        with ``return_prefix_tokens`` (on a model with a class token) each comes as ``(tokens, prefix)``,
        the prefix (B, 0, D) where the class token has not joined yet. ``stop_early`` stops after the last
        block asked for; the first output is then the normalised tokens of that block.
        """
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(getattr(self, self.blocks_attr)), indices)
        intermediates = []
        blocks = self._iter_blocks(x)
        for i, (x, num_prefix, grid) in enumerate(blocks):
            if i in take_indices:
                y = self.norm(x) if norm and self._norm_applies(i) else x
                tokens = y[:, num_prefix:]
                if output_fmt == "NCHW":
                    tokens = tokens.reshape(y.shape[0], grid[0], grid[1], -1).permute(0, 3, 1, 2).contiguous()
                keep_prefix = return_prefix_tokens and self.num_prefix_tokens > 0
                intermediates.append((tokens, y[:, :num_prefix]) if keep_prefix else tokens)
            if stop_early and i >= max_index:
                break
        if intermediates_only:
            return intermediates
        return self._final_tokens(x), intermediates

    def _prune_blocks(self, keep: int) -> None:
        """Keep the first ``keep`` blocks (or stages)."""
        setattr(self, self.blocks_attr, getattr(self, self.blocks_attr)[:keep])

    @torch.jit.ignore
    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the blocks after the last one ``indices`` asks for (and optionally norm and head)."""
        take_indices, max_index = feature_take_indices(len(getattr(self, self.blocks_attr)), indices)
        self._prune_blocks(max_index + 1)
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices

    # ------------------------------------------------------------------ convvit explain
    def explain_taps(self) -> dict[str, nn.Module]:
        """Modules whose outputs :meth:`explain_panels` draws, by name: :func:`convvit.explain.explain_image` records
        them in the same forward pass as the attention maps. None here."""
        return {}

    def explain_panels(self, maps: Sequence[torch.Tensor], taps: dict[str, torch.Tensor]) -> dict[str, Any]:
        """This family's own panels in the ``convvit explain`` figure of one image, by the figure's keyword
        (``stem_maps``, ``gates``, ``cls_attention``: :func:`convvit.explain.figures.explain_figure`), as tensors.

        ``maps``: the attention maps of that image's forward pass (batch of one), with the
        :class:`convvit.explain.MapInfo` of each in ``maps.infos``; ``taps``: the outputs of :meth:`explain_taps`'
        modules in that pass. None here: the figure shows the prediction and the attention rollout.
        """
        return {}
