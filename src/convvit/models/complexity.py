"""Model complexity in the convention of pycls and the paper's tables.

* ``flops``: multiply-adds of every convolution, linear layer and matrix product (including
  the attention products Q K^T and A V), plus bias additions. Norms, softmax and activations
  add none.
* ``params``: number of parameters (BatchNorm / LayerNorm count their 2 x width affine terms).
* ``acts``: number of output elements of every convolution, linear layer and matrix product,
  attention maps (heads x L x L) included.

Counting intercepts the ATen operators a forward pass runs (a ``TorchDispatchMode``), so it is
exact for any model built from standard layers and needs no per-architecture bookkeeping. Models
can be counted on the ``meta`` device: nothing is allocated or computed.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["count_complexity", "published_figures"]

aten = torch.ops.aten


def _numel(t: Any) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _mm(args, out) -> tuple[int, int]:
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * b.shape[1], _numel(out)


def _addmm(args, out) -> tuple[int, int]:
    _, a, b = args[0], args[1], args[2]
    return a.shape[0] * a.shape[1] * b.shape[1] + _numel(out), _numel(out)


def _bmm(args, out) -> tuple[int, int]:
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2], _numel(out)


def _baddbmm(args, out) -> tuple[int, int]:
    flops, acts = _bmm(args[1:], out)
    return flops + _numel(out), acts


def _convolution(args, out) -> tuple[int, int]:
    weight, bias = args[1], args[2] if len(args) > 2 else None
    per_output = math.prod(weight.shape[1:])  # (C_in / groups) * kh * kw
    flops = _numel(out) * per_output + (_numel(out) if bias is not None else 0)
    return flops, _numel(out)


def _sdpa(args, out) -> tuple[int, int]:
    q, k, v = args[0], args[1], args[2]
    *batch, lq, e = q.shape
    lk, ev = k.shape[-2], v.shape[-1]
    n = math.prod(batch)
    # Q K^T and A V; acts: the attention map and the output.
    return n * lq * lk * (e + ev), n * lq * lk + n * lq * ev


_HANDLERS: dict[Any, Callable[[tuple, Any], tuple[int, int]]] = {
    aten.mm: _mm,
    aten.addmm: _addmm,
    aten.bmm: _bmm,
    aten.baddbmm: _baddbmm,
    aten.convolution: _convolution,
}
for _name in (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
):
    if hasattr(aten, _name):
        _HANDLERS[getattr(aten, _name)] = _sdpa


class _ComplexityCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.flops = 0
        self.acts = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        handler = _HANDLERS.get(func._overloadpacket)
        if handler is not None:
            flops, acts = handler(args, out[0] if isinstance(out, tuple) else out)
            self.flops += flops
            self.acts += acts
        return out


def count_complexity(
    model: nn.Module | str,
    img_size: int | tuple[int, int] | None = None,
    in_chans: int | None = None,
    **model_kwargs: Any,
) -> dict[str, int]:
    """Params, flops (multiply-adds) and acts of one image through ``model``.

    ``model`` is a module or a registered model name (then it is built on the meta device with
    ``img_size``/``in_chans``/``model_kwargs``, which is instant even for the largest models).
    """
    if isinstance(model, str):
        from convvit.models.factory import create_classifier

        with torch.device("meta"):
            model = create_classifier(model, in_chans=in_chans, img_size=img_size, **model_kwargs)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    default_size = cfg.get("input_size", (3, 224, 224))
    if img_size is None:
        img_size = getattr(model, "img_size", default_size[1:])
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    in_chans = in_chans or getattr(model, "in_chans", default_size[0])
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros(1, in_chans, *img_size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    counter = _ComplexityCounter()
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return dict(params=sum(p.numel() for p in model.parameters()), flops=counter.flops, acts=counter.acts)


def published_figures(name: str) -> dict[str, float] | None:
    """The figures the model's paper or official code publishes at its default input size, from its
    ``pretrained_cfg["published"]`` (``flops_g``, ``params_m``, optionally ``acts_m``, and ``source``), or None."""
    from convvit.models.registry import default_cfg

    published = default_cfg(name).get("published")
    return dict(published) if published else None
