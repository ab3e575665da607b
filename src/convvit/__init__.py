"""convvit: vision transformers that see better with convolutions (ViT_C, ViT_P, DeiT, ConViT, CvT).

The model functions load on first use (PEP 562), so that ``import convvit`` -- which the ``convvit`` command
runs before it knows what it will do -- costs no torch import. Loading them registers every model into timm:
after ``convvit.list_models()``, ``convvit.create_model(...)`` or ``import convvit.models``,
``timm.create_model("vit_c_4gf")`` works.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODEL_API = ("create_model", "default_cfg", "is_model", "list_models", "register_model")


def __getattr__(name: str) -> Any:
    if name in _MODEL_API:
        return getattr(importlib.import_module("convvit.models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODEL_API])


def load_checkpoint(model, path, **kwargs):
    """Load a convvit, timm, official or Hugging Face checkpoint file into ``model`` (see convvit.models.weights)."""
    from convvit.models.weights import load_checkpoint as _load

    return _load(model, path, **kwargs)


__all__ = ["create_model", "default_cfg", "is_model", "list_models", "load_checkpoint", "register_model", "__version__"]
