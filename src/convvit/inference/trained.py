"""Loading a trained model for inference: the model of a ``convvit fit`` checkpoint (layout:
:mod:`convvit.checkpoints.layout`) with its raw or EMA weights, what the checkpoint knows about it, and the
transform its validation images went through. ``predict``, ``explain``, ``export`` and distillation's teacher
load through here."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from convvit.checkpoints import layout
from convvit.checkpoints.files import read_checkpoint_file
from convvit.errors import CheckpointError
from convvit.models.factory import create_classifier

__all__ = ["WEIGHTS", "TrainedModelInfo", "choose_weights", "eval_transform", "load_trained_model"]

WEIGHTS = ("auto", "raw", "ema")


class TrainedModelInfo(dict):
    """What a checkpoint knows about its model: name, num_classes, class_names, in_chans, img_size, mean,
    std, and which weights were taken (``weights``: "raw" or "ema")."""

    @classmethod
    def from_hparams(cls, hp: Any, weights: str) -> TrainedModelInfo:
        """From the LightningModule's hyper-parameters (``checkpoint["hyper_parameters"]``, or ``module.hparams``)."""
        img_size = hp["img_size"]
        return cls(
            name=hp["name"],
            num_classes=hp["num_classes"],
            class_names=list(hp.get("class_names") or [str(i) for i in range(hp["num_classes"])]),
            in_chans=hp["in_chans"],
            img_size=tuple(img_size) if isinstance(img_size, (list, tuple)) else (img_size, img_size),
            mean=tuple(hp["mean"]) if hp.get("mean") is not None else None,
            std=tuple(hp["std"]) if hp.get("std") is not None else None,
            crop_pct=hp.get("crop_pct"),
            interpolation=hp.get("interpolation", "bicubic"),
            weights=weights,
        )


def choose_weights(weights: str, has_ema: bool, val_acc1: float | None, val_acc1_ema: float | None) -> str:
    """Resolve ``weights`` ("auto", "raw", "ema") to "raw" or "ema".

    "auto" takes the EMA weights when there are any and they validated at least as well as the raw
    weights at the last validation (or when no validation result is known), else the raw weights.
    """
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    if weights == "ema" and not has_ema:
        raise ValueError("weights='ema' but the run kept no EMA (train with --model.ema true), use 'raw' or 'auto'")
    if weights != "auto":
        return weights
    if not has_ema:
        return "raw"
    if val_acc1 is None or val_acc1_ema is None:
        return "ema"
    return "ema" if val_acc1_ema >= val_acc1 else "raw"


def _load_lightning_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--ckpt_path {path} is a folder. Fix: pass a .ckpt file, e.g. {path}/last.ckpt")
    ckpt, _ = read_checkpoint_file(path)  # never runs code from the file; clear errors for damaged files
    hp = ckpt.get(layout.HPARAMS_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "name" not in hp or layout.STATE_KEY not in ckpt:
        raise CheckpointError(
            f"{path} is not a convvit training checkpoint (a Lightning .ckpt written by `convvit fit`). Fix: pass "
            "a run's checkpoints/*.ckpt; plain weights files load with convvit.create_model(name, checkpoint_path=...)"
        )
    return ckpt


def load_trained_model(ckpt_path: str | os.PathLike, weights: str = "auto") -> tuple[nn.Module, TrainedModelInfo]:
    """Build the model of a ``convvit fit`` checkpoint with its raw or EMA weights, in eval mode, on CPU."""
    ckpt = _load_lightning_checkpoint(ckpt_path)
    hp, state = ckpt[layout.HPARAMS_KEY], ckpt[layout.STATE_KEY]
    choice = choose_weights(weights, layout.has_ema(state), *layout.validation_results(ckpt))
    model = create_classifier(hp["name"], hp["num_classes"], hp["in_chans"], hp["img_size"],
                              **(hp.get("model_kwargs") or {}))
    model.load_state_dict(layout.model_weights(state, ema=choice == "ema"))
    model.eval()
    return model, TrainedModelInfo.from_hparams(hp, choice)


def eval_transform(model: nn.Module, info: TrainedModelInfo) -> tuple[Callable[[Any], Any], tuple, tuple]:
    """The transform of the checkpoint's validation images (PIL image -> normalised tensor), and the mean and std
    it normalises with (the checkpoint's, else the model's pretrained config)."""
    from convvit.data import build_eval_transform

    mean, std = info["mean"] or model.pretrained_cfg["mean"], info["std"] or model.pretrained_cfg["std"]
    transform = build_eval_transform(info["img_size"][0], info["in_chans"], mean, std, info["crop_pct"],
                                     info["interpolation"])
    return transform, mean, std
