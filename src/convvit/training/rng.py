"""The random generators' states, saved with every checkpoint and restored when a fit resumes.

A resumed run then draws the same Mixup/CutMix choices, augmentations, dropout masks and shuffles as a run that
was never stopped, so that it ends bit-identical to it. The states are the :class:`RngStates` callback's
checkpoint state (``checkpoint["callbacks"]["RngStates"]``), which :class:`convvit.training.module.ImageClassifier`
attaches to every trainer it runs in.
"""
from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch

from convvit.checkpoints import layout

__all__ = ["RngStates", "collect_rng_states", "set_rng_states"]


def collect_rng_states() -> dict[str, Any]:
    """The torch, numpy, Python (and CUDA, once initialised) RNG states, in types ``torch.load(weights_only=True)``
    accepts (no numpy arrays)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`collect_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RngStates(L.Callback):
    """Save the RNG states in every checkpoint; restore them when ``fit`` resumes from one.

    ``validate`` and ``test`` with ``--ckpt_path`` load callback states too, but they continue no random stream,
    so only a fit restores them. Lightning calls :meth:`on_load_checkpoint` just before :meth:`load_state_dict`,
    and only the former sees the trainer.
    """

    def __init__(self) -> None:
        self._resuming_fit = False

    def state_dict(self) -> dict[str, Any]:
        return collect_rng_states()

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._resuming_fit = trainer.state.fn == "fit"
        if self.state_key not in (checkpoint.get("callbacks") or {}):
            legacy = layout.legacy_rng_states(checkpoint)  # written before this callback existed
            if legacy:
                self.load_state_dict(legacy)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._resuming_fit:
            set_rng_states(state_dict)
