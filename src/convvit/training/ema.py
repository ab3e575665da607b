"""The exponential moving average of the weights a run keeps beside them (``--model.ema true``).

timm's ``ModelEmaV3``, made picklable for spawned processes, and how a checkpoint's EMA weights are fitted to
a run that does or does not keep an average. The weights live under ``ema_model.module.`` in the checkpoint
(:mod:`convvit.checkpoints.layout`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from timm.utils import ModelEmaV3

from convvit.checkpoints import layout

__all__ = ["ModelEma", "build_ema", "fit_checkpoint_ema"]

# With warmup the decay rises as 1 - (1 + step) ** -power (capped at ``decay``); timm suggests 3/4 for runs well
# under a million steps (0.999 reached at 10K steps) and 2/3 for longer ones.
WARMUP_POWER = 3 / 4


class ModelEma(ModelEmaV3):
    """timm's ModelEmaV3, picklable for spawned processes (DDP spawn).

    A ``torch.Generator`` pickles its state as a temporary tensor, which torch.multiprocessing shares by file
    descriptor and frees before the child reads it ("unable to resize file"). Its state travels as bytes instead.
    """

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        gen = state.pop("_sr_generator", None)
        if gen is not None:
            state["_sr_generator_state"] = (str(gen.device), gen.get_state().numpy().tobytes())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_sr_generator_state", None)
        self.__dict__.update(state)
        if saved is not None:
            device, rng = saved
            self._sr_generator = torch.Generator(device=device)
            self._sr_generator.set_state(torch.frombuffer(bytearray(rng), dtype=torch.uint8))


def build_ema(model: nn.Module, decay: float, warmup: bool) -> ModelEma:
    """An average of ``model``'s weights, its decay warmed up over the first steps when ``warmup``."""
    ema = ModelEma(model, decay=decay, use_warmup=warmup, warmup_power=WARMUP_POWER)
    ema.requires_grad_(False)  # updated by averaging, never by gradients (and ignored by DDP)
    return ema


def fit_checkpoint_ema(state: dict[str, Any], keeps_ema: bool) -> None:
    """Fit a training checkpoint's state dict (in place) to a run that keeps an EMA or not.

    A run with EMA resuming a checkpoint without one starts the average from the checkpoint's weights; a run
    without EMA drops the average a checkpoint has (``ema`` may change on resume).
    """
    if keeps_ema and not layout.has_ema(state):
        layout.seed_ema(state)
    elif not keeps_ema:
        layout.drop_ema(state)
