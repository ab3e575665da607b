"""The layout of a convvit training checkpoint (a Lightning ``.ckpt`` written by ``convvit fit``), defined once.

``state_dict`` holds the network under ``model.`` and, when the run keeps an EMA, its average under
``ema_model.module.`` (timm's ``ModelEmaV3`` wraps the copy in ``.module``); ``hyper_parameters`` holds the
model's arguments (name, num_classes, class names, input size, normalisation); ``convvit`` holds what convvit
adds: the run's name and the last validation accuracies of the raw and EMA weights (checkpoints written before the
``RngStates`` callback kept the RNG states there too; they are now that callback's state under ``callbacks``). The
LightningModule writes this layout, and export, prediction and weight loading read it through the functions here.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = [
    "MODEL_PREFIX", "EMA_ROOT", "EMA_PREFIX", "HPARAMS_KEY", "STATE_KEY", "METADATA_KEY",
    "has_ema", "model_weights", "seed_ema", "drop_ema", "convvit_metadata", "validation_results", "run_name",
    "legacy_rng_states",
]

MODEL_PREFIX = "model."
EMA_ROOT = "ema_model."
EMA_PREFIX = EMA_ROOT + "module."
HPARAMS_KEY = "hyper_parameters"
STATE_KEY = "state_dict"
METADATA_KEY = "convvit"

T = TypeVar("T")


def has_ema(state: Mapping[str, Any]) -> bool:
    """True when a training checkpoint's state dict holds EMA weights."""
    return any(k.startswith(EMA_ROOT) for k in state)


def model_weights(state: Mapping[str, T], ema: bool = False) -> dict[str, T]:
    """The network's own state dict (raw or EMA weights) out of a LightningModule's state dict."""
    prefix = EMA_PREFIX if ema else MODEL_PREFIX
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def seed_ema(state: dict[str, Any]) -> None:
    """Start the EMA from the raw weights (in place): for a checkpoint of a run that kept no EMA."""
    for key, value in list(state.items()):
        if key.startswith(MODEL_PREFIX):
            state[EMA_PREFIX + key[len(MODEL_PREFIX):]] = value.clone()


def drop_ema(state: dict[str, Any]) -> None:
    """Remove the EMA weights (in place): for a run that keeps no EMA."""
    for key in [k for k in state if k.startswith(EMA_ROOT)]:
        del state[key]


def convvit_metadata(val_acc1: float | None, val_acc1_ema: float | None, run_name: str | None = None) -> dict[str, Any]:
    """What convvit stores under ``checkpoint["convvit"]``: also the run's name (``runs/NAME/version_N``), which
    a resumed run keeps."""
    return {"val_acc1": val_acc1, "val_acc1_ema": val_acc1_ema, "run_name": run_name}


def run_name(checkpoint: Mapping[str, Any]) -> str | None:
    """The name of the run that wrote ``checkpoint`` (None for checkpoints written before it was kept)."""
    return (checkpoint.get(METADATA_KEY) or {}).get("run_name")


def validation_results(checkpoint: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(val_acc1, val_acc1_ema)`` at the checkpoint's last validation (None where unknown)."""
    extra = checkpoint.get(METADATA_KEY) or {}
    return extra.get("val_acc1"), extra.get("val_acc1_ema")


def legacy_rng_states(checkpoint: Mapping[str, Any]) -> Any:
    """The RNG states where checkpoints written before the ``RngStates`` callback kept them (None if absent)."""
    return (checkpoint.get(METADATA_KEY) or {}).get("rng_states")
