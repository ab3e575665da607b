"""A trained model set up to classify as fast as the hardware allows: what ``convvit predict`` and ``explain`` run.

``--precision auto`` follows training's rule (:func:`convvit.precision.bf16_is_faster`): bf16 on CUDA GPUs with
bf16 and on CPUs with bf16 units for models of at least ``BF16_MIN_GMACS``, fp32 otherwise. bf16 here means bf16
weights and inputs, not autocast: with no backward pass there is nothing that needs fp32 master weights, and
autocast's per-call casts of every weight are what made it slower than bf16 weights on the AMX Xeon of issue 25.
Logits come back as fp32.

The other settings were chosen by timing the forward pass (``python benchmarks/predict.py --tune``; figures in
benchmarks/results/predict_tune.csv and the README): see ``DEFAULT_BATCH_SIZE`` and ``CHANNELS_LAST``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from convvit import precision as precision_rule
from convvit.precision import AUTO, bf16_is_faster, uses_cuda
from convvit.precision import INFERENCE_PRECISIONS as PRECISIONS

__all__ = ["PRECISIONS", "DEFAULT_BATCH_SIZE", "CHANNELS_LAST", "InferenceModel", "resolve_inference_precision"]

# Batches of 1 and 8 ran well below 32 and 64, which ran alike (64 holds twice the images in memory for nothing).
DEFAULT_BATCH_SIZE = 32
# Channels-last and inference_mode were at least as fast as contiguous and no_grad in every measurement, and cost
# nothing; on a shared 2-core CPU their gains were within the rounds' spread. Channels-last is what the conv stems'
# and CvT's depthwise convs take in training too.
CHANNELS_LAST = True


def resolve_inference_precision(requested: str, device: str | torch.device = "cpu",
                                gmacs_per_image: float | None = None,
                                cpu_flags: list[str] | None = None) -> tuple[str, str]:
    """``"32"`` or ``"bf16"`` for ``requested`` (one of :data:`PRECISIONS`) on ``device``, and why.

    An explicit choice always wins; forcing bf16 on a CPU without bf16 units says, in the reason, that it is slow.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested != AUTO:
        # read through the module, as bf16_is_faster does: one reader of this CPU's flags for both paths
        flags = precision_rule.cpu_bf16_flags() if cpu_flags is None else cpu_flags
        if requested == "bf16" and not uses_cuda(device) and not flags:
            return requested, "as given; this CPU has no bf16 units, so bf16 runs many times slower than 32"
        return requested, "as given"
    bf16, why = bf16_is_faster(device, gmacs_per_image, cpu_flags)
    return ("bf16" if bf16 else "32"), why


class InferenceModel:
    """``model`` in eval mode on ``device`` in the resolved precision, channels-last; :meth:`logits` runs it under
    ``torch.inference_mode``.

    ``gmacs_per_image`` (the model's multiply-adds per image, in G) is what ``auto`` weighs on a CPU with bf16
    units; None counts it with one forward pass of ``model`` (:func:`convvit.models.complexity.count_complexity`).
    ``precision`` and ``reason`` say what was chosen and why.
    """

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu", precision: str = AUTO,
                 gmacs_per_image: float | None = None) -> None:
        if precision == AUTO and gmacs_per_image is None:
            from convvit.models.complexity import count_complexity

            gmacs_per_image = count_complexity(model)["flops"] / 1e9
        self.precision, self.reason = resolve_inference_precision(precision, device, gmacs_per_image)
        self.device = torch.device(device)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.memory_format = torch.channels_last if CHANNELS_LAST else torch.contiguous_format
        self.model = model.eval().to(device=self.device, dtype=self.dtype, memory_format=self.memory_format)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (B, C, H, W) as the model takes them: its device, dtype and memory layout."""
        return images.to(device=self.device, dtype=self.dtype, memory_format=self.memory_format)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """fp32 logits (B, num_classes) of a batch of normalised images."""
        return self.model(self.inputs(images)).float()
