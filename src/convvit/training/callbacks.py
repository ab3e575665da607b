"""Callbacks that leave a run's results on disk: loss/accuracy curves (PNG) and the final weights (.safetensors)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from convvit.training.export import choose_weights, export_safetensors

__all__ = ["LearningCurves", "FinalWeights", "run_dir"]

_CURVES = ("train/loss", "val/loss", "val/acc1", "val/acc5", "val/acc1_ema", "val/acc5_ema")


def run_dir(trainer: L.Trainer) -> Path:
    """The run's directory (the first logger's ``version_N`` folder, else ``default_root_dir``)."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class LearningCurves(L.Callback):
    """Record per-epoch train loss and validation loss/accuracy, and plot them to ``curves.png`` at the end of fit.

    The history is part of the callback's checkpoint state, so a resumed run plots the whole run.
    """

    def __init__(self, filename: str = "curves.png") -> None:
        self.filename = filename
        self.history: list[dict[str, float]] = []
        self._validated = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": float(trainer.current_epoch + 1), "step": float(trainer.global_step)}
        for key in _CURVES:
            source = f"{key}_epoch" if key.startswith("train/") else key
            if source in metrics and (key.startswith("train/") or self._validated):
                row[key] = float(metrics[source])
        self._validated = False
        self.history.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(r) for r in state_dict.get("history", [])]

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = run_dir(trainer)  # on every rank: finding the run directory is a collective call
        if self.history and trainer.is_global_zero:
            path = plot_curves(self.history, folder / self.filename)
            rank_zero_info(f"curves: {path}")


def plot_curves(history: list[dict[str, float]], path: str | os.PathLike) -> Path:
    """Two panels against epoch: losses, and validation accuracies (%)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    epochs = [r["epoch"] for r in history]
    for ax, keys in ((ax_loss, ("train/loss", "val/loss")), (ax_acc, _CURVES[2:])):
        for key in keys:
            points = [(e, r[key]) for e, r in zip(epochs, history) if key in r and math.isfinite(r[key])]
            if points:
                scale = 100.0 if "acc" in key else 1.0
                ax.plot([p[0] for p in points], [p[1] * scale for p in points], marker="o", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    ax_loss.set_ylabel("loss")
    ax_acc.set_ylabel("accuracy (%)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class FinalWeights(L.Callback):
    """At the end of fit, write the model's weights to ``final.safetensors`` in the run directory.

    ``weights``: "raw", "ema", or "auto" (the EMA weights when they validated at least as well as the raw
    ones). Class names, input size and normalisation go into the file's metadata.
    """

    def __init__(self, filename: str = "final.safetensors", weights: str = "auto") -> None:
        self.filename = filename
        self.weights = weights
        self.path: Path | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = run_dir(trainer)  # on every rank: finding the run directory is a collective call
        if trainer.interrupted or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        ema = getattr(pl_module, "ema_model", None)
        choice = choose_weights(
            self.weights,
            ema is not None,
            float(metrics["val/acc1"]) if "val/acc1" in metrics else None,
            float(metrics["val/acc1_ema"]) if "val/acc1_ema" in metrics else None,
        )
        model = ema.module if choice == "ema" else pl_module.model
        hp = pl_module.hparams
        img_size = hp.img_size if isinstance(hp.img_size, (tuple, list)) else (hp.img_size, hp.img_size)
        info = dict(
            name=hp.name, num_classes=hp.num_classes, in_chans=hp.in_chans, img_size=img_size,
            class_names=hp.class_names or [str(i) for i in range(hp.num_classes)],
            mean=hp.mean, std=hp.std, crop_pct=hp.crop_pct, interpolation=hp.interpolation, weights=choice,
        )
        self.path = export_safetensors(model, folder / self.filename, info)
        rank_zero_info(f"final weights ({choice}): {self.path}")
