"""convvit: vision transformers that see better with convolutions (ViT_C, ViT_P, DeiT, ConViT, CvT).

The model functions load on first use (PEP 562), so that ``import convvit`` -- which the ``convvit`` command
runs before it knows what it will do -- costs no torch import. Every model is registered into timm as soon as
both are loaded: after ``import convvit``, ``timm.create_model("vit_c_4gf")`` works whichever was imported first.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

__version__ = "0.2.0"

_MODEL_API = ("create_model", "default_cfg", "is_model", "list_models", "register_model")


def __getattr__(name: str) -> Any:
    if name in _MODEL_API:
        return getattr(importlib.import_module("convvit.models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _RegisterWhenTimmLoads(importlib.abc.MetaPathFinder):
    """Registers convvit's models into timm right after timm itself is imported (timm pulls in torch, which
    ``import convvit`` must not, so the registration waits for the user's own ``import timm``)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "timm":
            return None
        sys.meta_path.remove(self)  # one shot; the search below goes through the usual finders
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        exec_timm = spec.loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_timm(module)
            importlib.import_module("convvit.models")  # its builders register into timm's registry

        spec.loader.exec_module = exec_then_register
        return spec


if "timm" in sys.modules:
    importlib.import_module("convvit.models")
elif not any(isinstance(f, _RegisterWhenTimmLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTimmLoads())


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODEL_API])


def load_checkpoint(model, path, **kwargs):
    """Load a convvit, timm, official or Hugging Face checkpoint file into ``model`` (convvit.models.checkpoints)."""
    from convvit.models.checkpoints import load_checkpoint as _load

    return _load(model, path, **kwargs)


__all__ = [
    "create_model", "default_cfg", "is_model", "list_models", "load_checkpoint", "register_model", "__version__",
]
