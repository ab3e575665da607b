"""Loading checkpoints into convvit models: one entry point for every checkpoint a user is likely to hold.

* convvit's own ``.safetensors`` (see :func:`~convvit.checkpoints.files.save_weights`);
* Lightning training checkpoints (weights under ``"state_dict"``, prefixed ``"model."``; EMA
  weights under ``"ema_model."`` / ``"model_ema."`` are used only with ``use_ema=True``);
* timm checkpoints (DeiT, ConViT): a plain state dict, or one under ``"model"``, ``"state_dict"``
  or ``"state_dict_ema"``;
* official CvT ``.pth`` files (microsoft/CvT) and Hugging Face ``CvtForImageClassification``
  weights (``pytorch_model.bin`` or ``model.safetensors``).

The layers below do the work: :mod:`convvit.checkpoints.files` reads without executing,
:mod:`convvit.checkpoints.containers` finds the weights, the key formats the model families register
(:mod:`.formats`) rename them, :mod:`.fit` fits them to the model. This module is the only one of the
package that uses the registry (to build models for conversion and for the hints of a mismatch error);
the registry does not import it back.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from convvit.checkpoints.containers import extract_state_dict, hf_config_metadata
from convvit.checkpoints.files import PathLike, read_checkpoint_file, read_safetensors_metadata, save_weights
from convvit.errors import CheckpointError
from convvit.models.checkpoints.fit import classifier_names, fit_state_dict, model_grid, square_grid
from convvit.models.checkpoints.formats import UNKNOWN, detect_format, key_format, to_convvit
from convvit.models.registry import build_model, default_cfg, list_models

__all__ = ["load_checkpoint", "read_checkpoint", "read_checkpoint_metadata", "convert_checkpoint"]

_logger = logging.getLogger(__name__)


def _in_a_known_format(keys: set[str]) -> bool:
    return detect_format(keys) is not UNKNOWN


def read_checkpoint(path: PathLike, use_ema: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint file into a convvit-named state dict, without a model.

    Returns ``(state_dict, info)`` with ``info = {"format", "container", "metadata"}``.
    """
    importlib.import_module("convvit.models")  # the families register their key formats
    obj, meta = read_checkpoint_file(path)
    state, container, extra_meta = extract_state_dict(obj, use_ema, is_model_keys=_in_a_known_format)
    state, fmt = to_convvit(state)
    metadata = {**extra_meta, **meta, **(hf_config_metadata(Path(path)) if fmt.reads_hf_config else {})}
    return state, {"format": fmt.name, "container": container, "metadata": metadata}


def read_checkpoint_metadata(path: PathLike) -> dict[str, str]:
    """The metadata stored with a checkpoint (string values; ``class_names`` is a JSON list).

    For convvit ``.safetensors`` files this is the header written by :func:`save_weights`; for
    Lightning checkpoints, the hyper-parameters; for Hugging Face weights, the labels of the
    ``config.json`` beside the file. Keys not stored are absent.
    """
    meta = read_safetensors_metadata(path)
    if meta is not None:
        return meta
    _, info = read_checkpoint(path)
    return info["metadata"]


def _closest_models(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Registered convvit models whose weights (except classifier and position embedding) match ``state``."""
    def skip(k: str) -> bool:
        return k.startswith(("head.", "head_dist.", "pos_embed")) or k.endswith("pos_embed")

    wanted = {k: tuple(v.shape) for k, v in state.items() if not skip(k)}
    names = [n for pattern in detect_format(set(state)).models for n in list_models(pattern)]
    matches = []
    for name in names:
        try:
            with torch.device("meta"):
                candidate = build_model(name)
        except Exception:  # noqa: BLE001  (a builder that cannot run on the meta device)
            continue
        have = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if not skip(k)}
        if have == wanted:
            matches.append(name)
    return matches


def _first_five(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def _mismatch_error(
    path: PathLike, model: nn.Module, fmt: str, meta: Mapping[str, str], missing: list[str],
    unexpected: list[str], wrong_shape: list[str], state: Mapping[str, torch.Tensor],
) -> CheckpointError:
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture", type(model).__name__)
    parts = []
    if missing:
        parts.append(f"missing in the file: {_first_five(missing)}")
    if unexpected:
        parts.append(f"not in the model: {_first_five(unexpected)}")
    if wrong_shape:
        target = model.state_dict()
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in wrong_shape[:5]]
        parts.append("different shapes (file vs model): " + ", ".join(shapes))
    looks = key_format(fmt).description
    if meta.get("architecture"):
        looks += f" that says it holds {meta['architecture']!r}"
    try:
        close = _closest_models(state)
    except Exception:  # noqa: BLE001  (the hint must never hide the real error)
        close = []
    hint = f"; it matches convvit's {', '.join(close)}" if close else ""
    fix = f" Build that model instead: convvit.create_model({close[0]!r}, checkpoint_path=...)." if close else ""
    return CheckpointError(
        f"checkpoint {path} does not fit {arch}: " + "; ".join(parts) + f". The file looks like {looks}{hint}.{fix}"
    )


def load_checkpoint(
    model: nn.Module, path: PathLike, strict: bool = True, use_ema: bool = False
) -> dict[str, Any]:
    """Load a convvit, Lightning, timm, official CvT or Hugging Face CvT checkpoint into ``model``.

    Args:
        model: a convvit model.
        path: the file (or a Hugging Face model folder).
        strict: raise :class:`CheckpointError` when keys are missing or unexpected (the classifier
            of a different ``num_classes`` is never an error: it is left as initialised).
        use_ema: load the EMA weights of a Lightning / timm training checkpoint.

    Returns:
        ``{"format", "container", "metadata", "missing_keys", "unexpected_keys", "head_reset",
        "resampled", "adapted"}``.
    """
    state, info = read_checkpoint(path, use_ema=use_ema)
    return _load_state(model, state, info, path, strict)


def _load_state(
    model: nn.Module, state: dict[str, torch.Tensor], info: dict[str, Any], path: PathLike, strict: bool
) -> dict[str, Any]:
    fmt, meta = info["format"], info["metadata"]
    target = model.state_dict()
    clf = tuple(name + "." for name in classifier_names(model))
    missing = [k for k in target if k not in state and not k.startswith(clf)]
    unexpected = [k for k in state if k not in target and not k.startswith(clf)]
    if strict and (missing or unexpected):
        wrong_shape = [k for k in state if k in target and state[k].shape != target[k].shape and not k.startswith(clf)]
        raise _mismatch_error(path, model, fmt, meta, missing, unexpected, wrong_shape, state)
    state, notes = fit_state_dict(state, model, log_prefix=str(path))
    wrong_shape = [k for k in state if k in target and state[k].shape != target[k].shape]
    if wrong_shape:
        raise _mismatch_error(path, model, fmt, meta, missing, unexpected, wrong_shape, state)
    if "gelu" in (key_format(fmt).metadata.get("act_layer"), meta.get("act_layer")) and _uses_quick_gelu(model):
        _logger.warning(
            "%s: Hugging Face CvT uses GELU, this model QuickGELU (the official CvT's); build it with "
            "act_layer='gelu' to reproduce the Hugging Face outputs exactly.", path,
        )
    model.load_state_dict({k: v for k, v in state.items() if k in target}, strict=False)
    return {**info, "missing_keys": missing, "unexpected_keys": unexpected, **notes}


def _uses_quick_gelu(model: nn.Module) -> bool:
    from convvit.models.layers import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())



# ----------------------------------------------------------------------------- conversion
def convert_checkpoint(src: PathLike, dst: PathLike, model_name: str, **model_kwargs: Any) -> Path:
    """Convert any checkpoint :func:`load_checkpoint` reads into convvit-native ``.safetensors``.

    ``num_classes`` and ``in_chans`` default to the checkpoint's (so a fine-tuned head is kept)
    and ``img_size`` to the one its position embedding was trained at; pass them to override.
    Metadata (class names ...) found in the source is carried over.
    """
    state, info = read_checkpoint(src)
    cfg = default_cfg(model_name)
    clf_weight = state.get(f"{cfg.get('classifier', 'head')}.weight")
    if "num_classes" not in model_kwargs and clf_weight is not None:
        model_kwargs["num_classes"] = clf_weight.shape[0]
    first = state.get(f"{cfg.get('first_conv')}.weight")
    if "in_chans" not in model_kwargs and first is not None and first.ndim == 4:
        model_kwargs["in_chans"] = first.shape[1]
    model = build_model(model_name, **model_kwargs)
    if "img_size" not in model_kwargs and "pos_embed" in state:
        grid = model_grid(model)
        want = model.state_dict().get("pos_embed")
        if grid is not None and want is not None and want.shape != state["pos_embed"].shape:
            prefix = want.shape[1] - grid[0] * grid[1]
            side = square_grid(state["pos_embed"].shape[1] - prefix)
            if side is not None:
                img_side = model.img_size[0] if isinstance(model.img_size, tuple) else model.img_size
                stride = img_side // grid[0]
                model = build_model(model_name, **{**model_kwargs, "img_size": side * stride})
    _load_state(model, dict(state), info, src, strict=True)
    metadata = {k: v for k, v in info["metadata"].items() if k in ("class_names",)}
    metadata["source_format"] = info["format"]
    metadata.update(key_format(info["format"]).metadata)  # e.g. the activation it was trained with
    metadata["source_file"] = Path(src).name
    save_weights(model, dst, metadata=metadata)
    return Path(dst)
