"""Pulling the weights out of the containers checkpoints come in.

A plain state dict; a Lightning training checkpoint (see :mod:`convvit.checkpoints.layout`; weights
under ``"state_dict"``, prefixed ``"model."``, EMA weights under ``"ema_model."`` used only with ``use_ema``);
timm training checkpoints (under ``"model"``, ``"state_dict"`` or ``"state_dict_ema"``, EMA under
``"model_ema."``); DDP / ``torch.compile`` wrappers; and the ``config.json`` beside Hugging Face weights.

This module knows nothing about models or the registry.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from convvit.checkpoints import layout
from convvit.errors import CheckpointError

__all__ = ["extract_state_dict", "hf_config_metadata"]

_logger = logging.getLogger(__name__)

_EMA_PREFIXES = (layout.EMA_ROOT, "model_ema.")  # convvit's LightningModule, timm's train.py
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _plain_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if isinstance(value, str):
            out[str(key)] = value
        else:
            try:
                out[str(key)] = json.dumps(value)
            except TypeError:
                out[str(key)] = str(value)
    return out


def extract_state_dict(
    obj: Any, use_ema: bool, is_model_keys: Callable[[set[str]], bool]
) -> tuple[dict[str, torch.Tensor], str, dict[str, str]]:
    """Find the model weights in a loaded checkpoint: ``(state_dict, container description, metadata)``.

    ``is_model_keys(keys)`` says whether keys are a model's own (the loader asks the key formats the model
    families register); this module knows no model.
    """
    meta: dict[str, str] = {}
    took_ema = False
    if _is_state_dict(obj):
        state, container = dict(obj), "plain state dict"
    elif isinstance(obj, Mapping):
        if isinstance(obj.get("hyper_parameters"), Mapping):
            meta.update(_plain_metadata(obj["hyper_parameters"]))
        if isinstance(obj.get("metadata"), Mapping):
            meta.update(_plain_metadata(obj["metadata"]))
        order = ("state_dict_ema", "model_ema", "state_dict", "model") if use_ema else ("state_dict", "model", "module")
        for key in order:
            if _is_state_dict(obj.get(key)):
                state, container = dict(obj[key]), f'weights under "{key}"'
                took_ema = key in ("state_dict_ema", "model_ema")
                break
        else:
            raise CheckpointError(
                "found no weights in the checkpoint: expected a state dict, or one under "
                f'"state_dict" / "model" / "state_dict_ema"; its top-level keys are {sorted(map(str, obj))[:10]}'
            )
        if "pytorch-lightning_version" in obj or "optimizer_states" in obj:
            container = "Lightning checkpoint"
    else:
        raise CheckpointError(f"the checkpoint holds a {type(obj).__name__}, not a state dict")

    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = _strip(state, prefix)
    # A LightningModule's state dict: the network under "model.", its EMA copy under "ema_model.".
    ema_prefix = next((p for p in _EMA_PREFIXES if any(k.startswith(p) for k in state)), None)
    if use_ema and ema_prefix is not None:
        state, container = _strip(state, ema_prefix), container + f' (EMA weights "{ema_prefix}")'
        for prefix in _WRAPPER_PREFIXES:  # timm's ModelEmaV2 wraps the copy in ".module"
            if all(k.startswith(prefix) for k in state):
                state = _strip(state, prefix)
    elif (any(k.startswith(layout.MODEL_PREFIX) for k in state)
          and not any(k.startswith(layout.MODEL_PREFIX * 2) for k in state)):
        # "model." wraps the network, unless the keys beside the layout's prefixes are a model's own: then it is
        # part of that model's keys
        beside = {k for k in state if not k.startswith((layout.MODEL_PREFIX, *_EMA_PREFIXES))}
        if not is_model_keys(beside):
            dropped = sorted(k for k in state if not k.startswith(layout.MODEL_PREFIX))
            if dropped:
                _logger.info("ignoring %d non-model entries of the checkpoint (e.g. %s)", len(dropped), dropped[0])
            state = _strip(state, layout.MODEL_PREFIX)
    elif use_ema and not took_ema:
        raise CheckpointError("use_ema=True, but the checkpoint has no EMA weights")
    return state, container, meta


def hf_config_metadata(path: Path) -> dict[str, str]:
    """Class names from the ``config.json`` that sits beside a Hugging Face weights file."""
    config = (path if path.is_dir() else path.parent) / "config.json"
    if not config.is_file():
        return {}
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError):
        return {}
    meta = {}
    id2label = cfg.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            names = [id2label[k] for k in sorted(id2label, key=int)]
            meta["class_names"] = json.dumps(names)
            meta["num_classes"] = str(len(names))
        except (ValueError, TypeError):
            pass
    return meta

