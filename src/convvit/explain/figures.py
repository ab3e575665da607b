"""Figures of ``convvit explain``: one per image (prediction, rollout, family-specific panels) and the
attention-distance plot. Each is written atomically (:func:`convvit.fileio.save_figure`) with a CSV beside it."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convvit.fileio import pyplot, save_figure, write_csv

__all__ = ["distance_figure", "explain_figure", "write_csv", "save_png"]


def save_png(fig, path: str | os.PathLike) -> Path:
    """Save a figure of explain (at its resolution) with the one atomic figure writer."""
    return save_figure(fig, path, dpi=110)


def _show_image(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _overlay(ax, image: np.ndarray, heat: np.ndarray, title: str) -> None:
    """``heat`` (H', W') stretched over ``image`` (H, W[, 3]), scaled to its maximum."""
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    heat = heat / heat.max() if heat.max() > 0 else heat
    ax.imshow(heat, cmap="jet", alpha=0.5, extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5),
              interpolation="bilinear", vmin=0, vmax=1)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _channels(ax_row, maps: np.ndarray, label: str) -> None:
    """A few channels (C, H, W) of a stem stage, one axis each."""
    for i, ax in enumerate(ax_row):
        ax.axis("off")
        if i < len(maps):
            ax.imshow(maps[i], cmap="viridis", interpolation="nearest")
            ax.set_title(f"{label} ch {i}", fontsize=7)


def explain_figure(
    image: np.ndarray,
    title: str,
    predictions: Sequence[tuple[str, float]],
    heat: np.ndarray,
    rollout_title: str,
    stem_maps: tuple[np.ndarray, np.ndarray] | None = None,
    gates: np.ndarray | None = None,
    cls_attention: np.ndarray | None = None,
):
    """The figure of one image: the image with its top-k, the rollout over it, and what the family adds:
    conv stem channels (first and last stage), ConViT gates sigmoid(lambda) (layers x heads), or CvT's
    last-stage class-token attention on its key grid."""
    plt = pyplot()
    extra = 1 if (gates is not None or cls_attention is not None) else 0
    cols = max(2 + extra, 4 if stem_maps is not None else 0)
    rows = 3 if stem_maps is not None else 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for ax in axes[0, 2 + extra:]:
        ax.axis("off")
    top = "\n".join(f"{name}: {p:.1%}" for name, p in predictions)
    _show_image(axes[0, 0], image, f"{title}\n{top}")
    _overlay(axes[0, 1], image, heat, rollout_title)
    if gates is not None:
        ax = axes[0, 2]
        shown = ax.imshow(gates, cmap="magma", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_xlabel("head", fontsize=7)
        ax.set_ylabel("GPSA layer", fontsize=7)
        ax.set_title("gate sigmoid(lambda)\n(1 = positional)", fontsize=8)
        ax.set_xticks(range(gates.shape[1]))
        ax.set_yticks(range(gates.shape[0]))
        ax.tick_params(labelsize=6)
        fig.colorbar(shown, ax=ax, fraction=0.046)
    if cls_attention is not None:
        _overlay(axes[0, 2], image, cls_attention, "last stage: class token\nattention (mean of heads)")
    if stem_maps is not None:
        _channels(axes[1], stem_maps[0], "stem stage 1")
        _channels(axes[2], stem_maps[1], "stem last stage")
    fig.tight_layout()
    return fig


def distance_figure(panels: Sequence[tuple[str, np.ndarray]]):
    """Mean attention distance (pixels) against depth, one dot per head, one panel per (title, (layers, heads))."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False, sharey=True)
    for ax, (title, dist) in zip(axes[0], panels):
        layers = np.repeat(np.arange(1, dist.shape[0] + 1)[:, None], dist.shape[1], axis=1)
        ax.scatter(layers.ravel(), dist.ravel(), s=12, alpha=0.7)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("network depth (layer)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("mean attention distance (pixels)")
    fig.tight_layout()
    return fig
