"""Training and evaluation (LightningModule, callbacks, checkpoint IO, the LightningCLI).

``convvit fit | validate | test`` (:mod:`convvit.cli.train`) run :class:`convvit.training.lightning_cli.ConvvitCLI`.
The names below load on first use, so that the command can answer ``--help`` and bad options without importing
Lightning.
"""
from __future__ import annotations

import importlib
from typing import Any

from convvit.errors import CheckpointConflictError, ClassMismatchError, NonFiniteLossError

__all__ = ["ImageClassifier", "ClassMismatchError", "CheckpointConflictError", "NonFiniteLossError"]


def __getattr__(name: str) -> Any:
    if name == "ImageClassifier":
        return importlib.import_module("convvit.training.module").ImageClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
