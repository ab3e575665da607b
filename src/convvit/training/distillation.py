"""DeiT's knowledge distillation: a frozen teacher's predictions train the student's distillation head.

"Training data-efficient image transformers & distillation through attention", Touvron et al., 2021,
https://arxiv.org/abs/2012.12877; the loss follows ``DistillationLoss`` in facebookresearch/deit ``losses.py``:

* ``soft``: KL divergence between the student's distillation logits and the teacher's, both at temperature
  ``tau``, summed and divided by the number of logits (batch x classes), times ``tau**2``;
* ``hard``: cross-entropy of the distillation logits against the teacher's top-1 class;
* the total is ``(1 - alpha) * base loss + alpha * distillation loss``; the base loss (cross-entropy, label
  smoothing or Mixup's soft targets) trains the class head on the labels.

The teacher sees the student's batch after Mixup/CutMix, as in DeiT, in eval mode and without gradients, on
the student's device and under its autocast; it is not part of the student's checkpoints, which record its
name, file and the file's SHA-256.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from convvit.errors import CheckpointConflictError, ClassMismatchError, UsageError

__all__ = ["Distillation", "distillation_loss", "load_teacher", "teacher_record"]

TYPES = ("none", "soft", "hard")


@dataclass
class Distillation:
    """Distillation settings (``--model.distillation.*``).

    Args:
        type: ``none``, ``soft`` or ``hard`` (DeiT's ``--distillation-type``).
        teacher: a convvit training checkpoint (``.ckpt`` written by ``convvit fit``), or a convvit or timm
            model name whose weights are ``teacher_checkpoint``.
        teacher_checkpoint: the weights of a teacher given by name (any file ``convvit.create_model`` or
            timm's ``load_checkpoint`` reads; nothing is downloaded).
        alpha: weight of the distillation loss (DeiT: 0.5).
        tau: soft distillation temperature (DeiT: 1.0).
    """

    type: str = "none"
    teacher: str | None = None
    teacher_checkpoint: str | None = None
    alpha: float = 0.5
    tau: float = 1.0

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise UsageError(f"--model.distillation.type must be one of {', '.join(TYPES)}, got {self.type!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"--model.distillation.alpha must be in [0, 1], got {self.alpha}")
        if not self.tau > 0:
            raise UsageError(f"--model.distillation.tau must be > 0, got {self.tau}")
        if self.type != "none" and not self.teacher:
            raise UsageError(f"--model.distillation.type {self.type} needs a teacher: --model.distillation.teacher "
                             "CKPT (a convvit fit checkpoint) or MODEL_NAME with "
                             "--model.distillation.teacher_checkpoint")

    @property
    def enabled(self) -> bool:
        return self.type != "none"

    @classmethod
    def coerce(cls, value: Distillation | dict | None) -> Distillation:
        """From what a config, a checkpoint's hyper-parameters or Python code passes."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if hasattr(value, "as_dict"):  # a jsonargparse Namespace
            value = value.as_dict()
        return cls(**dict(value))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def distillation_loss(
        base_loss: torch.Tensor, dist_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str, alpha: float,
        tau: float,
) -> torch.Tensor:
    """DeiT's combined loss from the base loss (class head vs labels) and the distillation head's logits."""
    if kind == "soft":
        # KL(teacher || student) at temperature tau, summed over the batch and classes, then divided by their
        # count as DeiT does (not by the batch size alone, as a 'batchmean' KL would)
        kd = F.kl_div(F.log_softmax(dist_logits / tau, dim=1), F.log_softmax(teacher_logits / tau, dim=1),
                      reduction="sum", log_target=True) * (tau * tau) / dist_logits.numel()
    elif kind == "hard":
        kd = F.cross_entropy(dist_logits, teacher_logits.argmax(dim=1))
    else:
        raise ValueError(f"distillation type must be 'soft' or 'hard', got {kind!r}")
    return base_loss * (1 - alpha) + kd * alpha


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def teacher_record(cfg: Distillation) -> dict[str, str]:
    """What a student's checkpoint records of its teacher: name, file and the file's SHA-256."""
    path = Path(cfg.teacher_checkpoint or cfg.teacher)
    return {"teacher": str(cfg.teacher), "file": str(path), "sha256": _file_sha256(path) if path.is_file() else ""}


def check_same_teacher(saved: dict[str, str] | None, current: dict[str, str]) -> None:
    """A resumed student must learn from the teacher it started with."""
    if saved and saved.get("sha256") and saved["sha256"] != current["sha256"]:
        raise CheckpointConflictError(
            f"this run was distilled from teacher {saved['teacher']!r} ({saved['file']}, sha256 "
            f"{saved['sha256'][:12]}...), but the teacher now is {current['teacher']!r} ({current['file']}, sha256 "
            f"{current['sha256'][:12] or 'missing'}...). Resume with the same teacher file, or start a new run "
            "from the weights with --model.init_checkpoint CKPT."
        )


def _teacher_from_training_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    from convvit.inference.trained import load_trained_model

    model, info = load_trained_model(path)
    return model, {"num_classes": info["num_classes"], "class_names": list(info["class_names"] or []),
                   "in_chans": info["in_chans"], "img_size": tuple(info["img_size"])}


def _teacher_from_name(name: str, weights: Path, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    from convvit.checkpoints.containers import extract_state_dict
    from convvit.checkpoints.files import read_checkpoint_file
    from convvit.models.factory import create_classifier

    try:
        model = create_classifier(name, num_classes, in_chans, img_size)
    except ValueError as e:
        raise UsageError(f"unknown teacher model {name!r} ({e}); name a convvit or timm model, or pass a convvit "
                         "training checkpoint") from None
    obj, _ = read_checkpoint_file(weights)
    state, _, _ = extract_state_dict(obj, use_ema=False,
                                     is_model_keys=lambda keys: bool(keys & set(model.state_dict())))
    target = model.state_dict()
    wrong = [k for k in state if k in target and state[k].shape != target[k].shape]
    missing, unexpected = sorted(set(target) - set(state)), sorted(set(state) - set(target))
    if wrong or missing or unexpected:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(target[k].shape)}" for k in wrong[:3])
        raise ClassMismatchError(
            f"teacher weights {weights} do not fit {name} for {num_classes} classes, {in_chans} channels, "
            f"{img_size} px" + (f": different shapes (file vs model) {shapes}" if wrong else "")
            + (f"; missing {', '.join(missing[:3])}" if missing else "")
            + (f"; unexpected {', '.join(unexpected[:3])}" if unexpected else "")
            + ". Fix: a teacher trained on this data's classes and input size (e.g. a convvit fit checkpoint)."
        )
    model.load_state_dict(state)
    return model


def load_teacher(cfg: Distillation, num_classes: int, in_chans: int, img_size: int | Sequence[int],
                 class_names: Sequence[str] | None = None) -> nn.Module:
    """The frozen teacher (eval mode, no gradients), checked against the student's data."""
    size = img_size if isinstance(img_size, int) else int(img_size[0])
    teacher = Path(cfg.teacher)
    if teacher.suffix == ".ckpt" or (teacher.is_file() and not cfg.teacher_checkpoint):
        if not teacher.is_file():
            raise UsageError(f"teacher checkpoint {teacher} does not exist. Fix: --model.distillation.teacher "
                             "runs/NAME/version_0/checkpoints/last.ckpt of a finished convvit fit")
        model, info = _teacher_from_training_checkpoint(teacher)
        theirs = (info["num_classes"], info["in_chans"], info["img_size"][0])
        if theirs != (num_classes, in_chans, size) or (
                class_names and info["class_names"] and list(class_names) != info["class_names"]):
            raise ClassMismatchError(
                f"teacher {teacher} was trained on {info['num_classes']} classes {info['class_names'][:5]}, "
                f"{info['in_chans']} channels, {info['img_size'][0]} px; the data has {num_classes} classes "
                f"{list(class_names or [])[:5]}, {in_chans} channels, {size} px. Fix: a teacher trained on this data."
            )
    else:
        if not cfg.teacher_checkpoint:
            raise UsageError(f"teacher {cfg.teacher!r} needs its weights: --model.distillation.teacher_checkpoint "
                             "FILE (nothing is downloaded)")
        weights = Path(cfg.teacher_checkpoint)
        if not weights.is_file():
            raise UsageError(f"teacher weights {weights} do not exist. Fix: --model.distillation.teacher_checkpoint "
                             "PATH of an existing file")
        model = _teacher_from_name(cfg.teacher, weights, num_classes, in_chans, size)
    model.eval().requires_grad_(False)
    return model
