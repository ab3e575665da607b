"""The LightningCLI behind ``convvit fit | validate | test``.

:class:`ConvvitCLI` trains :class:`~convvit.training.module.ImageClassifier` on
:class:`convvit.data.ImageDataModule`. The model's class count, class names, input channels, image size and
normalisation are linked from the data. Each run writes to ``DEFAULT_ROOT_DIR/NAME/version_N``: the resolved
``config.yaml``, top-k and ``last.ckpt`` checkpoints (written atomically), ``metrics.csv``, TensorBoard
events, ``curves.png`` and ``final.safetensors``; after fit the final weights are tested and the result printed.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Sequence

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from convvit.data import ImageDataModule
from convvit.training.callbacks import FinalWeights, LearningCurves
from convvit.training.checkpoint_io import AtomicCheckpointIO, explained_load_errors
from convvit.training.cli import LIGHTNING_COMMANDS
from convvit.training.module import ImageClassifier, latest_checkpoint

__all__ = ["ConvvitCLI", "DEFAULT_ROOT_DIR", "DATA_TO_MODEL"]

DEFAULT_ROOT_DIR = "runs"
# Linked from the data module into the model (they are not set on the model directly).
DATA_TO_MODEL = ("num_classes", "class_names", "in_chans", "img_size", "mean", "std", "crop_pct")


class ConvvitCLI(LightningCLI):
    """LightningCLI with convvit's links, run directory, loggers, checkpointing and end-of-fit test."""

    def __init__(self, args: Sequence[str] | None = None) -> None:
        super().__init__(
            ImageClassifier,
            ImageDataModule,
            args=args,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_kwargs={
                "prog": "convvit", "env_prefix": "CONVVIT", "exit_on_error": False,
                **{cmd: {"exit_on_error": False} for cmd in LIGHTNING_COMMANDS},
            },
            trainer_defaults={
                "default_root_dir": DEFAULT_ROOT_DIR,
                "max_epochs": 10,
                "log_every_n_steps": 20,
                "callbacks": [LearningRateMonitor("step"), LearningCurves(), FinalWeights()],
            },
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key in DATA_TO_MODEL:
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
        parser.link_arguments("data", "model.interpolation", _data_interpolation, apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc1",
                "checkpoint.mode": "max",
                "checkpoint.save_top_k": 1,
                "checkpoint.filename": "epoch{epoch:03d}-acc{val/acc1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        # The latest state, always (Lightning's save_last only follows the top-k saves): resume from it.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.filename": "last",
                "last_checkpoint.monitor": None,
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_argument(
            "--name", type=Optional[str], default=None,
            help="Run name: each run writes to DEFAULT_ROOT_DIR/NAME/version_N (default: DATASET-MODEL).",
        )
        parser.add_argument(
            "--test_after_fit", type=bool, default=True,
            help="After fit, evaluate the final weights on the test split (when the data has one) and print it.",
        )

    def instantiate_trainer(self, **kwargs: Any):
        cfg = self._get(self.config_init, "trainer")
        if cfg.get("logger") in (None, True):
            root = cfg.get("default_root_dir") or DEFAULT_ROOT_DIR
            name = self._get(self.config, "name") or self._default_run_name()
            version = _next_version(Path(root) / name)
            kwargs["logger"] = [
                TensorBoardLogger(root, name=name, version=version, default_hp_metric=False),
                CSVLogger(root, name=name, version=version),
            ]
        plugins = cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyper-parameters here, before the Trainer does
        ckpt_path = (self.config.get(self.config.get("subcommand") or "") or {}).get("ckpt_path")
        with explained_load_errors(ckpt_path or "."):
            super()._parse_ckpt_path()

    def _default_run_name(self) -> str:
        data = self._get(self.config, "data")
        model = self._get(self.config, "model")
        return f"{data.get('dataset', 'data')}-{model.get('name', 'model')}"

    def before_fit(self) -> None:
        strategy = type(self.trainer.strategy).__name__
        if self.model.has_ema and "FSDP" in strategy:
            raise ValueError("--model.ema true is not supported with FSDP; use DDP or turn EMA off")

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.interrupted:
            return
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.best_model_path:
            rank_zero_info(f"best checkpoint: {ckpt.best_model_path}")
        last = latest_checkpoint(trainer)
        if last:
            rank_zero_info(f"last checkpoint: {last}")
        if not self._get(self.config, "test_after_fit") or not _has_test_split(self.datamodule):
            return
        results = trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        metrics = results[0] if results else {}
        if trainer.is_global_zero and "test/acc1" in metrics:
            line = f"test top-1 {100 * metrics['test/acc1']:.2f}%  top-5 {100 * metrics['test/acc5']:.2f}%"
            if "test/acc1_ema" in metrics:
                line += f"  |  EMA top-1 {100 * metrics['test/acc1_ema']:.2f}%  top-5 {100 * metrics['test/acc5_ema']:.2f}%"
            print(line, flush=True)


def _data_interpolation(datamodule: Any) -> str:
    return datamodule.hparams.interpolation


def _has_test_split(datamodule: Any) -> bool:
    has_test = getattr(datamodule, "has_test", None)
    if has_test is not None:
        return bool(has_test() if callable(has_test) else has_test)
    return True


def _next_version(run_root: Path) -> int:
    """The next free ``version_N`` under ``run_root`` (what Lightning's loggers pick, decided once for both)."""
    versions = [int(m.group(1)) for p in run_root.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return max(versions, default=-1) + 1
