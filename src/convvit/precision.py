"""Whether bf16 runs a model faster than fp32 on the machine at hand: the one rule training and inference share.

* CUDA GPUs with bf16 support (Ampere and newer): bf16.
* CPUs with bf16 units (``avx512_bf16`` or AMX): bf16 when the model is large enough for the faster matrix
  products to pay for the casts, fp32 below that.
* Everything else, CPUs without bf16 units included (there bf16 matrix products take a slow path, many times
  slower than fp32): fp32.

The size threshold is measured (``python benchmarks/precision.py``; the figures are in the README's Speed
section): bf16 autocast trained the 1.1 and 4.0 GMAC ImageNet ViTs faster than fp32 on both CPUs measured, the
0.014-0.019 GMAC nano models slower on both, and the 0.3 GMAC tiny models faster on one and slower on the other,
so the threshold sits above the tiny models.

Training (:mod:`convvit.training.precision`) names the outcome as Lightning does (``bf16-mixed`` / ``32-true``),
inference (:mod:`convvit.inference.runner`) as ``bf16`` / ``32`` (:data:`INFERENCE_PRECISIONS`). This module
imports torch only when a rule runs, so that commands can name the choices in their options without importing it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["AUTO", "BF16_MIN_GMACS", "INFERENCE_PRECISIONS", "bf16_is_faster", "cpu_bf16_flags", "cpu_model_name",
           "uses_cuda"]

AUTO = "auto"
# What `convvit predict --precision` and `convvit explain --precision` take.
INFERENCE_PRECISIONS = (AUTO, "32", "bf16")
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


def uses_cuda(device: Any) -> bool:
    """Whether ``device`` (a Lightning accelerator name or object, or a torch device) runs on a CUDA GPU here."""
    import torch

    name = device if isinstance(device, str) else str(device) if isinstance(device, torch.device) \
        else type(device).__name__.lower()
    return any(word in name.lower() for word in ("auto", "gpu", "cuda")) and torch.cuda.is_available()


def bf16_is_faster(device: Any = AUTO, gmacs_per_image: float | None = None,
                   cpu_flags: list[str] | None = None) -> tuple[bool, str]:
    """Whether bf16 beats fp32 for a model of ``gmacs_per_image`` G multiply-adds on ``device``, and why (one
    phrase, printed beside the choice).

    ``device`` is a Lightning accelerator (``"auto"``, ``"gpu"``, ``"cpu"``, an Accelerator) or a torch device
    (``"cuda:1"``); ``gmacs_per_image`` None means unknown, treated as large; ``cpu_flags`` defaults to this CPU's
    (:func:`cpu_bf16_flags`).
    """
    import torch

    if uses_cuda(device):
        if torch.cuda.is_bf16_supported():
            return True, f"CUDA GPU with bf16 ({torch.cuda.get_device_name()})"
        return False, f"CUDA GPU without bf16 ({torch.cuda.get_device_name()})"
    flags = cpu_bf16_flags() if cpu_flags is None else cpu_flags
    if not flags:
        return False, "CPU without bf16 units (bf16 would be many times slower)"
    if gmacs_per_image is not None and gmacs_per_image < BF16_MIN_GMACS:
        return False, (f"CPU with {'/'.join(flags)}, but {gmacs_per_image:.3f} GMACs per image is below the "
                       f"{BF16_MIN_GMACS} where bf16 pays")
    return True, f"CPU with {'/'.join(flags)}"
