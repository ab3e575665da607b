"""Model registry: name -> builder, default configs, and registration into timm.

Every builder is a function ``name(pretrained=False, **kwargs) -> nn.Module`` decorated
with :func:`register_model`. The registry builds models and knows nothing of checkpoint files: loading
weights into a built model is :mod:`convvit.models.factory`'s job, which sits above both.
Builders are also registered into timm's registry (only under names timm does not already have), so that after
``import convvit.models`` (which ``convvit.create_model`` and ``convvit.list_models`` do first),
``timm.create_model("vit_c_4gf")`` works.
"""
from __future__ import annotations

import contextlib
import difflib
import fnmatch
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

_builders: dict[str, Callable[..., nn.Module]] = {}
_default_cfgs: dict[str, dict[str, Any]] = {}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def model_cfg(**overrides: Any) -> dict[str, Any]:
    """A timm-style pretrained/default config dict (input size, normalisation, classifier name)."""
    cfg = dict(
        url="",
        hf_hub_id=None,
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=None,
        crop_pct=0.875,
        interpolation="bicubic",
        fixed_input_size=True,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        first_conv="patch_embed.proj",
        classifier="head",
        license="apache-2.0",
    )
    cfg.update(overrides)
    return cfg


def register_model(fn: Callable[..., nn.Module] | None = None, *, cfg: dict[str, Any] | None = None):
    """Register a builder under its function name; usable as ``@register_model`` or ``@register_model(cfg=...)``."""

    def _register(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _builders:
            raise ValueError(f"model {name!r} is registered twice")
        _builders[name] = f
        _default_cfgs[name] = dict(cfg) if cfg is not None else model_cfg()
        _register_into_timm(name, f)
        return f

    return _register(fn) if fn is not None else _register


def _register_into_timm(name: str, fn: Callable[..., nn.Module]) -> None:
    """Add ``fn`` to timm's registry unless timm already has a model of that name (never shadow timm)."""
    try:
        from timm.models import _registry as timm_registry
    except ImportError:  # timm is a dependency, but keep the models usable without it
        return
    if name in timm_registry._model_entrypoints:
        return
    timm_registry._model_entrypoints[name] = fn
    timm_registry._model_to_module[name] = "convvit"
    timm_registry._module_to_models["convvit"].add(name)
    timm_registry._model_with_tags[name].append(name)
    try:
        from collections import deque

        from timm.models._pretrained import DefaultCfg, PretrainedCfg

        fields = PretrainedCfg.__dataclass_fields__
        pcfg = PretrainedCfg(**{k: v for k, v in _default_cfgs[name].items() if k in fields}, architecture=name)
        timm_registry._model_default_cfgs[name] = DefaultCfg(tags=deque([""]), cfgs={"": pcfg})
        timm_registry._model_pretrained_cfgs[name] = pcfg
    except (ImportError, TypeError):  # timm internals moved: the entrypoint alone is enough to build
        pass


def default_cfg(name: str) -> dict[str, Any]:
    """The default config of a registered model (a copy)."""
    check_name(name)
    return dict(_default_cfgs[name])


def is_model(name: str) -> bool:
    return name in _builders


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted (e.g. ``list_models("vit_c*")``)."""
    return sorted(n for n in _builders if fnmatch.fnmatchcase(n, pattern))


def check_name(name: str) -> None:
    """Raise ValueError naming the closest registered models when ``name`` is not one of them."""
    if name not in _builders:
        close = difflib.get_close_matches(name, list(_builders), n=5, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} Run `convvit models` to list all {len(_builders)} models."
        )


def build_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered model with fresh weights (``convvit.create_model`` adds ``checkpoint_path``).

    ``kwargs`` go to the model constructor (``num_classes``, ``img_size``, ``in_chans``,
    ``drop_path_rate``, ...); an unknown argument raises TypeError. ``pretrained=True`` is refused:
    convvit never downloads weights.
    """
    check_name(name)
    if pretrained:
        raise ValueError(
            "convvit does not download weights (pretrained=True). Download the checkpoint yourself and pass "
            "checkpoint_path=PATH (convvit, timm, official or Hugging Face files are recognised)."
        )
    return _builders[name](**kwargs)


def build_with_cfg(
    model_cls: Callable[..., nn.Module],
    name: str,
    arch_kwargs: dict[str, Any],
    pretrained: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Instantiate ``model_cls`` from the architecture's kwargs overridden by the user's, and attach its config.

    Accepts and drops the extra keywords timm's ``create_model`` passes to every entrypoint, and honours
    its factory keywords ``device`` and ``dtype``.
    """
    if pretrained:
        raise ValueError(
            f"{name}: convvit does not download weights. Pass checkpoint_path=PATH to "
            "convvit.create_model (or timm.create_model) to load a local checkpoint."
        )
    pretrained_cfg_overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    for timm_only in ("pretrained_cfg", "cache_dir", "pretrained_strict", "feature_cfg"):
        kwargs.pop(timm_only, None)
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    feature_norm = kwargs.pop("feature_norm", False)
    # timm's factory keywords: build every parameter and buffer on `device`, then cast floats to `dtype`.
    device, dtype = kwargs.pop("device", None), kwargs.pop("dtype", None)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = model_cls(**{**arch_kwargs, **kwargs})
    if dtype is not None:
        model.to(dtype=dtype)
    cfg = {**_default_cfgs.get(name, model_cfg()), **pretrained_cfg_overlay, "architecture": name}
    in_chans = getattr(model, "in_chans", 3)
    img_size = getattr(model, "img_size", cfg["input_size"][1:])
    if isinstance(img_size, int):
        img_size = (img_size, img_size)
    cfg["input_size"] = (in_chans, *img_size)
    cfg["num_classes"] = getattr(model, "num_classes", cfg["num_classes"])
    if in_chans != len(cfg["mean"]):
        cfg["mean"] = (sum(cfg["mean"]) / len(cfg["mean"]),) * in_chans
        cfg["std"] = (sum(cfg["std"]) / len(cfg["std"]),) * in_chans
    model.pretrained_cfg = cfg
    model.default_cfg = cfg
    if features_only:  # a backbone returning intermediate maps, as timm's features_only=True
        from timm.models._features import FeatureGetterNet

        default_indices = len(getattr(model, "feature_info", [])) if out_indices is None else out_indices
        model = FeatureGetterNet(model, out_indices=default_indices or 4, norm=feature_norm)
        model.pretrained_cfg = model.default_cfg = cfg
    return model
