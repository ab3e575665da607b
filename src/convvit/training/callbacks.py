"""Callbacks of ``convvit fit``: the latest checkpoint, a line per epoch, the model summary, loss/accuracy curves
(PNG) and the final weights (.safetensors)."""
from __future__ import annotations

import logging
import math
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks import ModelSummary as _LightningModelSummary
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.model_summary.model_summary import _format_summary_table

from convvit.durations import format_duration
from convvit.inference.export import export_safetensors
from convvit.inference.trained import TrainedModelInfo, choose_weights

__all__ = ["LastCheckpoint", "EpochSummary", "ModelSummary", "LearningCurves", "FinalWeights", "run_dir"]

_CURVES = ("train/loss", "val/loss", "val/acc1", "val/acc5", "val/acc1_ema", "val/acc5_ema")


def run_dir(trainer: L.Trainer) -> Path:
    """The run's directory (the first logger's ``version_N`` folder, else ``default_root_dir``)."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``, the latest state to resume from: written at the end of every training epoch whatever the
    validation cadence (Lightning's checkpoints follow validation, so a run that validates every 6 epochs
    would otherwise have nothing to resume from for 6 epochs), every ``every_n_train_steps`` steps or
    ``train_time_interval`` when set, and when the run is stopped by Ctrl-C or SIGTERM."""

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "last",
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
    ) -> None:
        super().__init__(
            dirpath=dirpath, filename=filename, monitor=None, save_top_k=1, every_n_train_steps=every_n_train_steps,
            train_time_interval=train_time_interval, save_on_train_epoch_end=True, enable_version_counter=False,
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Lightning raises SIGTERMException only between steps (convvit's Ctrl-C handler asks for the same stop),
        # so the state is consistent; other exceptions may come from the middle of an optimizer step.
        if isinstance(exception, SIGTERMException) and not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))


class EpochSummary(L.Callback):
    """One plain line per training epoch, which reads the same in a terminal and in a log file::

        epoch 3/6  loss 0.4521  val top-1 88.12% (EMA 88.40%)  612 img/s  1m32s

    Images/s counts the training steps only; the time is the whole epoch, validation included.
    """

    def __init__(self) -> None:
        self._start = self._train_end = 0.0
        self._images = 0
        self._validated = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._train_end = time.monotonic()
        self._images = 0
        self._validated = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch does not start that epoch again

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        self._images += len(images) * trainer.world_size
        self._train_end = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = [f"epoch {trainer.current_epoch + 1}{epochs}"]
        if "train/loss_epoch" in metrics:
            parts.append(f"loss {float(metrics['train/loss_epoch']):.4f}")
        if self._validated and "val/acc1" in metrics:
            acc = f"val top-1 {100 * float(metrics['val/acc1']):.2f}%"
            if "val/acc1_ema" in metrics:
                acc += f" (EMA {100 * float(metrics['val/acc1_ema']):.2f}%)"
            parts.append(acc)
        train_time = self._train_end - self._start
        if self._images and train_time > 0:
            parts.append(f"{self._images / train_time:.0f} img/s")
        parts.append(format_duration(time.monotonic() - self._start))
        line = "  ".join(parts)
        bar = trainer.progress_bar_callback
        if bar is not None and getattr(bar, "is_enabled", True):
            bar.print(line)  # above the bar, not through it
        else:
            print(line, flush=True)


class ModelSummary(_LightningModelSummary):
    """Lightning's model summary as a plain-text table, without its FLOPs column and total: Lightning counts FLOPs
    only for a module with an ``example_input_array``, so they always read 0 here (``convvit info MODEL`` has
    the model's real multiply-adds)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        columns = [column for column in summary_data if column[0] != "FLOPs"]
        table = _format_summary_table(
            total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, *columns
        )
        table = "\n".join(line for line in table.splitlines() if not line.endswith("Total Flops"))
        logging.getLogger("lightning.pytorch.callbacks.model_summary").info("\n" + table)


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
    from convvit.fileio import pyplot, save_figure

    fig, (ax_loss, ax_acc) = pyplot().subplots(1, 2, figsize=(10, 4), constrained_layout=True)
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
    return save_figure(fig, path, dpi=100, tight=False)


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
        info = TrainedModelInfo.from_hparams(pl_module.hparams, choice)
        self.path = export_safetensors(model, folder / self.filename, info)
        rank_zero_info(f"final weights ({choice}): {self.path}")
