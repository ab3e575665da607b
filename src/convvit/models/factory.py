"""Models with weights: build a registered model, then load a local checkpoint into it.

This module sits above the two it joins, :mod:`convvit.models.registry` (names and builders) and
:mod:`convvit.models.checkpoints` (reading and fitting weights): the loader imports the registry to build
models for its error hints and conversions, and the registry imports neither of them back.
"""
from __future__ import annotations

import os
from typing import Any

import torch.nn as nn

from convvit.models.checkpoints.loading import load_checkpoint
from convvit.models.registry import build_model, check_name, is_model

__all__ = ["create_model", "create_classifier"]


def create_model(
    name: str,
    pretrained: bool = False,
    checkpoint_path: str | os.PathLike | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``kwargs`` go to the model constructor (``num_classes``, ``img_size``, ``in_chans``,
    ``drop_path_rate``, ...); an unknown argument raises TypeError. ``checkpoint_path``
    loads convvit, timm, official or Hugging Face weights from a local file, re-initialising
    the head when ``num_classes`` differs and resampling position embeddings when
    ``img_size`` differs. ``pretrained=True`` is refused: convvit never downloads weights.
    """
    model = build_model(name, pretrained=pretrained, **kwargs)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path)
    return model


def create_classifier(
    name: str, num_classes: int | None = None, in_chans: int | None = None,
    img_size: int | tuple[int, int] | None = None, checkpoint_path: str | os.PathLike | None = None, **kwargs: Any,
) -> nn.Module:
    """A classifier for data of ``num_classes``, ``in_chans`` and ``img_size`` (None: the model's default): a
    convvit model, or a model only timm has (a convnet, e.g. ``resnet18`` as a distillation teacher), which
    takes no ``img_size``.

    ``checkpoint_path`` loads local weights as :func:`create_model` does (timm's ``load_checkpoint`` for timm's
    own models); an unknown name raises ValueError with the closest convvit names.
    """
    data = {k: v for k, v in dict(num_classes=num_classes, in_chans=in_chans).items() if v is not None}
    if is_model(name):
        size = {} if img_size is None else dict(img_size=img_size)
        return create_model(name, checkpoint_path=checkpoint_path, **data, **size, **kwargs)
    import timm

    if not timm.is_model(name):
        check_name(name)
    return timm.create_model(name, pretrained=False, checkpoint_path=checkpoint_path or "", **data, **kwargs)
