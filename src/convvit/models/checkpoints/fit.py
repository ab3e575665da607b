"""Fitting a state dict to a model: each adaptation a function of its own.

* :func:`reset_head` -- a classifier of another ``num_classes`` is dropped (the model keeps its fresh one);
* :func:`resample_pos_embed` -- absolute position embeddings of another grid are resampled (bicubic);
* :func:`adapt_in_chans` -- the first convolution of another number of input channels is adapted
  (timm's ``adapt_input_conv``).

:func:`fit_state_dict` runs all three. The model's ``pretrained_cfg`` names its classifier and first
convolution; nothing here looks at the registry.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn as nn

__all__ = ["fit_state_dict", "reset_head", "resample_pos_embed", "adapt_in_chans", "classifier_names",
           "model_grid", "square_grid"]

_logger = logging.getLogger(__name__)


def classifier_names(model: nn.Module) -> tuple[str, ...]:
    """The model's classifier modules (timm's ``pretrained_cfg["classifier"]``: a name, or a tuple of them for
    models with several heads, as DeiT's distilled ones)."""
    clf = (getattr(model, "pretrained_cfg", None) or {}).get("classifier", "head")
    return (clf,) if isinstance(clf, str) else tuple(clf)


def _first_conv_name(model: nn.Module) -> str | None:
    return (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")


def square_grid(num_tokens: int) -> int | None:
    side = math.isqrt(num_tokens)
    return side if side * side == num_tokens else None


def model_grid(model: nn.Module) -> tuple[int, int] | None:
    patch_embed = getattr(model, "patch_embed", None)
    grid = getattr(patch_embed, "grid_size", None)
    return tuple(grid) if grid is not None else None


def reset_head(state: dict[str, torch.Tensor], model: nn.Module, *, log_prefix: str) -> bool:
    """Drop the classifiers of ``state`` (in place) that do not fit ``model``'s; True when a classifier of the
    model keeps its fresh initialisation (dropped, or absent from the checkpoint)."""
    fresh = False
    for clf in classifier_names(model):
        fresh |= _reset_one_head(state, model, clf, log_prefix)
    return fresh


def _reset_one_head(state: dict[str, torch.Tensor], model: nn.Module, clf: str, log_prefix: str) -> bool:
    target = model.state_dict()
    head_keys = [k for k in (f"{clf}.weight", f"{clf}.bias") if k in state]
    model_classes = getattr(model, "num_classes", None)
    if head_keys and any(k not in target or target[k].shape != state[k].shape for k in head_keys):
        ckpt_classes = state[head_keys[0]].shape[0]
        for k in head_keys:
            del state[k]
        _logger.warning(
            "%s: the checkpoint's classifier %s has %d classes, the model %s; it is not loaded and keeps the "
            "model's fresh initialisation (fine-tune it).", log_prefix, clf, ckpt_classes, model_classes,
        )
        return True
    if not head_keys and any(k.startswith(clf + ".") for k in target):
        _logger.warning(
            "%s: the checkpoint has no classifier %s; the model's %s-class classifier keeps its fresh "
            "initialisation.", log_prefix, clf, model_classes,
        )
        return True
    return False


def resample_pos_embed(
    state: dict[str, torch.Tensor], model: nn.Module, *, log_prefix: str
) -> list[str]:
    """Resample (in place) the absolute position embeddings of ``state`` trained on another square grid to
    ``model``'s grid; returns the resampled keys."""
    from timm.layers import resample_abs_pos_embed

    target, grid = model.state_dict(), model_grid(model)
    resampled = []
    for key, value in list(state.items()):
        want = target.get(key)
        if (
            grid is None or want is None or want.shape == value.shape or not key.endswith("pos_embed")
            or value.ndim != 3 or want.ndim != 3 or value.shape[2] != want.shape[2]
        ):
            continue
        prefix = want.shape[1] - grid[0] * grid[1]
        old = square_grid(value.shape[1] - prefix) if prefix >= 0 else None
        if old is None:
            continue  # reported as a shape mismatch
        state[key] = resample_abs_pos_embed(value, list(grid), [old, old], num_prefix_tokens=prefix)
        resampled.append(key)
        _logger.info("%s: resampled %s from a %dx%d to a %dx%d grid", log_prefix, key, old, old, *grid)
    return resampled


def adapt_in_chans(state: dict[str, torch.Tensor], model: nn.Module, *, log_prefix: str) -> list[str]:
    """Adapt (in place) the first convolution of ``state`` to ``model``'s number of input channels; returns the
    adapted keys."""
    from timm.models import adapt_input_conv

    first = _first_conv_name(model)
    key = f"{first}.weight"
    value, want = state.get(key), model.state_dict().get(key)
    if (
        not first or value is None or want is None or value.shape == want.shape or value.ndim != 4
        or value.shape[0] != want.shape[0] or value.shape[2:] != want.shape[2:]
    ):
        return []
    state[key] = adapt_input_conv(want.shape[1], value)
    _logger.info("%s: adapted %s from %d to %d input channels", log_prefix, key, value.shape[1], want.shape[1])
    return [key]


def fit_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module, *, log_prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Adapt head, position embedding and first convolution of ``state`` to ``model``:
    ``(state, {"head_reset", "resampled", "adapted"})``."""
    notes: dict[str, Any] = {"head_reset": reset_head(state, model, log_prefix=log_prefix)}
    notes["resampled"] = resample_pos_embed(state, model, log_prefix=log_prefix)
    notes["adapted"] = adapt_in_chans(state, model, log_prefix=log_prefix)
    return state, notes
