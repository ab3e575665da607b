"""Optimizers with the papers' weight-decay groups, and the per-step warmup + cosine or linear decay schedule.

The optimizers themselves come from timm's factory (``timm.optim.create_optimizer_v2``); this module
only decides which parameters are decayed and how the learning rate moves.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2, param_groups_weight_decay

__all__ = ["OPTIMIZERS", "excludes_no_weight_decay", "build_optimizer", "fused_supported", "LR_SCHEDULES",
           "WarmupDecay", "warmup_decay"]

OPTIMIZERS = ("adamw", "sgd")

def excludes_no_weight_decay(model: nn.Module) -> bool:
    """The family's weight-decay policy: whether its paper recipe keeps ``model.no_weight_decay()`` (position
    embedding, class token) out of weight decay. Read from ``model.pretrained_cfg["exclude_no_weight_decay"]``
    (pycls's ViT_P / ViT_C decay them; timm, DeiT, ConViT and CvT do not); timm's convention when unset."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return bool(cfg.get("exclude_no_weight_decay", True))


def build_optimizer(
    model: nn.Module,
    name: str = "adamw",
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    momentum: float = 0.9,
    nesterov: bool = True,
    betas: Sequence[float] = (0.9, 0.999),
    exclude_no_weight_decay: bool = True,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """AdamW or SGD over ``model`` with no weight decay on norm gains and biases (every 1-d parameter).

    ``exclude_no_weight_decay`` also keeps the parameters named by ``model.no_weight_decay()`` (position
    embedding, class token) out of weight decay, as timm does; pycls decays them.
    ``fused`` (default: where PyTorch has the kernel) updates all parameters in one kernel; the result is the
    same as the per-parameter loop, in a fraction of its time (benchmarks/results/README.md).
    """
    name = name.lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    skip = set(model.no_weight_decay()) if exclude_no_weight_decay and hasattr(model, "no_weight_decay") else set()
    groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)
    if fused is None:
        fused = fused_supported(model.parameters())
    if name == "adamw":
        return create_optimizer_v2(groups, "adamw", lr=lr, weight_decay=weight_decay, betas=tuple(betas), fused=fused)
    return create_optimizer_v2(
        groups, "sgd" if nesterov else "momentum", lr=lr, weight_decay=weight_decay, momentum=momentum, fused=fused
    )


def fused_supported(params: Iterable[torch.Tensor]) -> bool:
    """Whether PyTorch's fused AdamW/SGD kernels take these parameters: floating point, all on the CPU or all on
    one CUDA device, and none of them a DTensor (FSDP2) or meta tensor."""
    params = list(params)
    if not params:
        return False
    devices = {p.device for p in params}
    if len(devices) != 1 or next(iter(devices)).type not in ("cpu", "cuda"):
        return False
    return all(type(p.data) is torch.Tensor and p.is_floating_point() for p in params)


LR_SCHEDULES = ("cosine", "linear")


class WarmupDecay:
    """LR factor at optimizer step ``t``: linear warmup from ``start_factor`` to 1 over ``warmup_steps``, then a
    decay from 1 down to ``min_factor`` at ``total_steps`` (held there after) -- a half cosine (``"cosine"``) or a
    straight line (``"linear"``: lower than the cosine in the first half of the decay, higher in the second).

    A plain callable object (not a closure) so that ``LambdaLR.state_dict`` saves it with the checkpoint.
    """

    def __init__(self, total_steps: int, warmup_steps: int = 0, start_factor: float = 0.1, min_factor: float = 0.0,
                 shape: str = "cosine"):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if shape not in LR_SCHEDULES:
            raise ValueError(f"unknown lr schedule {shape!r}: choose one of {', '.join(LR_SCHEDULES)}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(min(max(warmup_steps, 0), total_steps))
        self.start_factor = float(start_factor)
        self.min_factor = float(min_factor)
        self.shape = shape

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        remaining = 1.0 - progress if self.shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_factor + (1.0 - self.min_factor) * remaining


def warmup_decay(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    start_factor: float = 0.1,
    min_factor: float = 0.0,
    shape: str = "cosine",
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step :class:`WarmupDecay` schedule on ``optimizer`` (call ``.step()`` after every update)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupDecay(total_steps, warmup_steps, start_factor, min_factor, shape))
