"""``--trainer.precision auto``: the numeric precision that trains fastest on the machine at hand.

``bf16-mixed`` where :func:`convvit.precision.bf16_is_faster` says bf16 pays (CUDA GPUs with bf16; CPUs with bf16
units, for models large enough), ``32-true`` otherwise. The rule, its measured threshold and its messages live
in :mod:`convvit.precision`, shared with ``convvit predict`` and ``convvit explain``.
"""
from __future__ import annotations

from typing import Any, Literal

import lightning as L
from lightning.fabric.connector import _PRECISION_INPUT

from convvit.precision import AUTO, BF16_MIN_GMACS, bf16_is_faster, cpu_bf16_flags, cpu_model_name

__all__ = ["AUTO", "BF16_MIN_GMACS", "Trainer", "cpu_bf16_flags", "cpu_model_name", "resolve_precision"]


def resolve_precision(requested: Any, accelerator: Any = "auto", gmacs_per_image: float | None = None,
                      cpu_flags: list[str] | None = None) -> tuple[Any, str]:
    """The precision to train in, and why (one phrase, printed beside it).

    ``requested`` other than ``"auto"`` is returned as it is: an explicit choice always wins. ``gmacs_per_image``
    is the model's multiply-adds per image in G (None: unknown, treated as large). ``cpu_flags`` defaults to
    this CPU's (:func:`cpu_bf16_flags`).
    """
    if requested != AUTO:
        return requested, "as given"
    bf16, why = bf16_is_faster(accelerator, gmacs_per_image, cpu_flags)
    return ("bf16-mixed" if bf16 else "32-true"), why


class Trainer(L.Trainer):
    """Lightning's Trainer that also takes ``precision="auto"`` (its default), resolved by :func:`resolve_precision`.

    Here the model's size is unknown, so a CPU with bf16 units gets bf16; ``convvit fit`` resolves ``auto`` before
    building the Trainer, with the model's multiply-adds per image.
    """

    def __init__(self, *args: Any, precision: _PRECISION_INPUT | Literal["auto"] | None = AUTO,
                 **kwargs: Any) -> None:
        if precision == AUTO:
            precision, _ = resolve_precision(AUTO, kwargs.get("accelerator", "auto"))
        super().__init__(*args, precision=precision, **kwargs)
