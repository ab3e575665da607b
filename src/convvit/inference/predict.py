"""Classify image files with a trained checkpoint and write the top-k predictions to a CSV file."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from convvit.fileio import write_csv
from convvit.inference.runner import DEFAULT_BATCH_SIZE, InferenceModel
from convvit.inference.trained import eval_transform, load_trained_model

__all__ = ["Predictions", "predict_images", "write_predictions", "prediction_columns", "DEFAULT_OUTPUT"]

DEFAULT_OUTPUT = "predictions.csv"
_logger = logging.getLogger(__name__)


@dataclass
class Predictions:
    """The rows of :func:`predict_images` (one per readable image), the images it could not read with why, and the
    precision the model ran in (``"32"`` or ``"bf16"``) with why."""

    rows: list[dict[str, object]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    precision: str = "32"
    precision_reason: str = ""


def prediction_columns(top_k: int) -> list[str]:
    """``path, pred, prob, pred2, prob2, ..., predK, probK, precision`` (the last: ``32`` or ``bf16``, what ran)."""
    cols = ["path", "pred", "prob"]
    for k in range(2, top_k + 1):
        cols += [f"pred{k}", f"prob{k}"]
    return cols + ["precision"]


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict_images(
    ckpt_path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    top_k: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    weights: str = "auto",
    device: str = "cpu",
    precision: str = "auto",
) -> Predictions:
    """Top-k class names and probabilities for every image in ``paths`` (files or folders, searched recursively).

    Images are read and normalised the way the checkpoint's validation data was
    (``convvit.data.load_image`` / ``build_eval_transform``). One row per image, keys as
    :func:`prediction_columns`. An image that cannot be decoded is skipped with a warning (logger
    ``convvit.inference.predict``) and listed in ``Predictions.skipped``: one bad file must not cost the rest.
    ``precision`` is ``"auto"``, ``"32"`` or ``"bf16"`` (:class:`~convvit.inference.runner.InferenceModel`).
    """
    from convvit.data import BadImageError, list_images, load_image

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    model, info = load_trained_model(ckpt_path, weights)
    inference = InferenceModel(model, device, precision)
    top_k = min(top_k, info["num_classes"])
    files = list_images(list(paths))
    height, width = info["img_size"]
    if height != width:
        raise ValueError(f"predict needs a square input size, the checkpoint's model takes {height}x{width}")
    transform, _, _ = eval_transform(model, info)
    names = info["class_names"]
    result = Predictions(precision=inference.precision, precision_reason=inference.reason)
    for chunk in _batches(files, batch_size):
        readable, images = [], []
        for path in chunk:
            try:
                images.append(transform(load_image(path, info["in_chans"])))
                readable.append(path)
            except BadImageError as err:
                reason = str(err.__cause__ or err)  # PIL's words, without load_image's advice for training
                _logger.warning("skipping unreadable image '%s': %s", path, reason)
                result.skipped.append((path, reason))
        if not images:
            continue
        probs = inference.logits(torch.stack(images)).softmax(dim=-1)
        top_p, top_i = probs.topk(top_k, dim=-1)
        for path, p_row, i_row in zip(readable, top_p.tolist(), top_i.tolist()):
            row: dict[str, object] = {"path": str(path)}
            for k, (p, i) in enumerate(zip(p_row, i_row), start=1):
                suffix = "" if k == 1 else str(k)
                row[f"pred{suffix}"] = names[i]
                row[f"prob{suffix}"] = round(p, 6)
            row["precision"] = inference.precision
            result.rows.append(row)
    return result


def write_predictions(rows: list[dict[str, object]], output: str | os.PathLike, top_k: int,
                      force: bool = False) -> Path:
    """Write :func:`predict_images` rows to a CSV file (header first); returns its path.

    ``output`` may be a folder (existing, or written with a trailing slash): the file is then
    ``predictions.csv`` inside it. A read-only file is replaced only with ``force``.
    """
    is_folder = str(output).endswith(("/", os.sep))
    output = Path(output)
    if is_folder or output.is_dir():
        output = output / DEFAULT_OUTPUT
    top_k = max((sum(1 for key in row if key.startswith("pred")) for row in rows), default=top_k)
    return write_csv(output, prediction_columns(top_k), rows, force=force)
