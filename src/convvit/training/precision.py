"""``--trainer.precision auto``: the numeric precision that trains fastest on the machine at hand.

* CUDA GPUs with bf16 support (Ampere and newer): ``bf16-mixed``.
* CPUs with bf16 units (``avx512_bf16`` or AMX): ``bf16-mixed`` when the model is large enough for the faster
  matrix products to pay for autocast's casts, ``32-true`` below that.
* Everything else, CPUs without bf16 units included (there bf16 matrix products take a slow path, many times
  slower than fp32): ``32-true``.

The size threshold is measured (``python benchmarks/precision.py``; the figures are in the README's Speed
section): bf16 autocast trained the 1.1 and 4.0 GMAC ImageNet ViTs faster than fp32 on both CPUs measured, the
0.014-0.019 GMAC nano models slower on both, and the 0.3 GMAC tiny models faster on one and slower on the other,
so the threshold sits above the tiny models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import lightning as L
import torch
from lightning.fabric.connector import _PRECISION_INPUT

__all__ = ["AUTO", "BF16_MIN_GMACS", "Trainer", "cpu_bf16_flags", "cpu_model_name", "resolve_precision"]

AUTO = "auto"
# Multiply-adds per image (the paper's flops) from which bf16 autocast beats fp32 on a CPU with bf16 units.
BF16_MIN_GMACS = 0.5
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to read, so no bf16 claimed
        return ""


def cpu_bf16_flags(cpuinfo: str | None = None) -> list[str]:
    """The CPU's bf16 instruction-set flags (``avx512_bf16``, ``amx_bf16``) that /proc/cpuinfo lists."""
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return [f for f in _BF16_FLAGS if f in flags]


def cpu_model_name(cpuinfo: str | None = None) -> str:
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _uses_cuda(accelerator: Any) -> bool:
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    return any(word in name.lower() for word in ("auto", "gpu", "cuda")) and torch.cuda.is_available()


def resolve_precision(requested: Any, accelerator: Any = "auto", gmacs_per_image: float | None = None,
                      cpu_flags: list[str] | None = None) -> tuple[Any, str]:
    """The precision to train in, and why (one phrase, printed beside it).

    ``requested`` other than ``"auto"`` is returned as it is: an explicit choice always wins. ``gmacs_per_image``
    is the model's multiply-adds per image in G (None: unknown, treated as large). ``cpu_flags`` defaults to
    this CPU's (:func:`cpu_bf16_flags`).
    """
    if requested != AUTO:
        return requested, "as given"
    if _uses_cuda(accelerator):
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"CUDA GPU with bf16 ({torch.cuda.get_device_name()})"
        return "32-true", f"CUDA GPU without bf16 ({torch.cuda.get_device_name()})"
    flags = cpu_bf16_flags() if cpu_flags is None else cpu_flags
    if not flags:
        return "32-true", "CPU without bf16 units (bf16 would be many times slower)"
    if gmacs_per_image is not None and gmacs_per_image < BF16_MIN_GMACS:
        return "32-true", (f"CPU with {'/'.join(flags)}, but {gmacs_per_image:.3f} GMACs per image is below the "
                           f"{BF16_MIN_GMACS} where bf16 pays")
    return "bf16-mixed", f"CPU with {'/'.join(flags)}"


class Trainer(L.Trainer):
    """Lightning's Trainer that also takes ``precision="auto"`` (its default), resolved by :func:`resolve_precision`.

    Here the model's size is unknown, so a CPU with bf16 units gets bf16; ``convvit fit`` resolves ``auto`` before
    building the Trainer, with the model's multiply-adds per image.
    """

    def __init__(self, *args: Any, precision: Optional[Union[_PRECISION_INPUT, Literal["auto"]]] = AUTO,
                 **kwargs: Any) -> None:
        if precision == AUTO:
            precision, _ = resolve_precision(AUTO, kwargs.get("accelerator", "auto"))
        super().__init__(*args, precision=precision, **kwargs)
