"""Training, evaluation, prediction and export (LightningModule, callbacks, CLI).

``convvit.training.cli.main(argv)`` runs ``convvit fit | validate | test | predict | export``.
"""
from convvit.training.module import CheckpointConflictError, ClassMismatchError, ImageClassifier, NonFiniteLossError

__all__ = ["ImageClassifier", "ClassMismatchError", "CheckpointConflictError", "NonFiniteLossError"]
