"""Classify image files with a trained checkpoint and write the top-k predictions to a CSV file."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch

from convvit.training.export import load_trained_model

__all__ = ["predict_images", "write_predictions", "prediction_columns"]


def prediction_columns(top_k: int) -> list[str]:
    """``path, pred, prob, pred2, prob2, ..., predK, probK``."""
    cols = ["path", "pred", "prob"]
    for k in range(2, top_k + 1):
        cols += [f"pred{k}", f"prob{k}"]
    return cols


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.inference_mode()
def predict_images(
    ckpt_path: str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    top_k: int = 5,
    batch_size: int = 64,
    weights: str = "auto",
    device: str = "cpu",
) -> list[dict[str, object]]:
    """Top-k class names and probabilities for every image in ``paths`` (files or folders, searched recursively).

    Images are read and normalised the way the checkpoint's validation data was
    (``convvit.data.load_image`` / ``build_eval_transform``). One dict per image, keys as
    :func:`prediction_columns`.
    """
    from convvit.data import build_eval_transform, list_images, load_image

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    model, info = load_trained_model(ckpt_path, weights)
    model.to(device)
    top_k = min(top_k, info["num_classes"])
    files = list_images(list(paths))
    height, width = info["img_size"]
    if height != width:
        raise ValueError(f"predict needs a square input size, the checkpoint's model takes {height}x{width}")
    mean, std = info["mean"] or model.pretrained_cfg["mean"], info["std"] or model.pretrained_cfg["std"]
    transform = build_eval_transform(height, info["in_chans"], mean, std, info["crop_pct"], info["interpolation"])
    names = info["class_names"]
    rows: list[dict[str, object]] = []
    for chunk in _batches(files, batch_size):
        x = torch.stack([transform(load_image(p, info["in_chans"])) for p in chunk]).to(device)
        probs = model(x).float().softmax(dim=-1)
        top_p, top_i = probs.topk(top_k, dim=-1)
        for path, p_row, i_row in zip(chunk, top_p.tolist(), top_i.tolist()):
            row: dict[str, object] = {"path": str(path)}
            for k, (p, i) in enumerate(zip(p_row, i_row), start=1):
                suffix = "" if k == 1 else str(k)
                row[f"pred{suffix}"] = names[i]
                row[f"prob{suffix}"] = round(p, 6)
            rows.append(row)
    return rows


def write_predictions(rows: list[dict[str, object]], output: str | os.PathLike, top_k: int) -> Path:
    """Write :func:`predict_images` rows to a CSV file (header first)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    top_k = max((sum(1 for key in row if key.startswith("pred")) for row in rows), default=top_k)
    with open(output, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=prediction_columns(top_k))
        writer.writeheader()
        writer.writerows(rows)
    return output
