"""``convvit fit | validate | test | predict | export``.

fit/validate/test are a LightningCLI over :class:`~convvit.training.module.ImageClassifier` and
:class:`convvit.data.ImageDataModule`: ``--config FILE.yaml``, dotted overrides (``--model.name``,
``--data.dataset``, ``--trainer.max_epochs``, ...), ``--print_config``, ``--ckpt_path`` to resume.
The model's class count, class names, input channels, image size and normalisation come from the data.
predict and export are small argparse commands over :mod:`convvit.training.predict` and
:mod:`convvit.training.export`.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

__all__ = ["main", "ConvvitCLI", "DEFAULT_ROOT_DIR"]

LIGHTNING_COMMANDS = ("fit", "validate", "test")
COMMANDS = (*LIGHTNING_COMMANDS, "predict", "export")
DEFAULT_ROOT_DIR = "runs"
# Linked from the data module into the model (they are not set on the model directly).
DATA_TO_MODEL = ("num_classes", "class_names", "in_chans", "img_size", "mean", "std", "crop_pct")

_USAGE = """usage: convvit {fit,validate,test,predict,export} ...

  fit       train:            convvit fit --config configs/fashion_mnist/vit_c.yaml [--trainer.max_epochs N ...]
  validate  evaluate (val):   convvit validate --config CONFIG --ckpt_path CKPT
  test      evaluate (test):  convvit test --config CONFIG --ckpt_path CKPT
  predict   classify images:  convvit predict --ckpt_path CKPT PATH... [--output predictions.csv] [--top_k 5]
  export    export weights:   convvit export --ckpt_path CKPT --format onnx|safetensors [--output FILE]

`convvit COMMAND --help` lists every option; fit/validate/test also take --print_config.
"""


@functools.lru_cache(maxsize=None)
def _lightning_cli_class():
    """Build the LightningCLI subclass lazily (importing Lightning costs seconds)."""
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.plugins.io import CheckpointIO
    from lightning.pytorch.utilities import rank_zero_info

    from convvit.data import ImageDataModule
    from convvit.training.callbacks import FinalWeights, LearningCurves
    from convvit.training.checkpoint_io import AtomicCheckpointIO
    from convvit.training.module import ImageClassifier, latest_checkpoint

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

    return ConvvitCLI


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


def __getattr__(name: str) -> Any:
    if name == "ConvvitCLI":
        return _lightning_cli_class()
    raise AttributeError(name)


@contextlib.contextmanager
def _argv(argv: Sequence[str]) -> Iterator[None]:
    """Run with ``sys.argv[1:] == argv``: LightningCLI parses it, and Lightning's DDP launcher re-runs it."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "convvit", *argv]
    try:
        yield
    finally:
        sys.argv = saved


def _suggest(message: str) -> str:
    """' (did you mean model.lr?)' for an unknown option, from the signatures the CLI is built on."""
    import difflib
    import inspect

    match = re.search(r"(?:option '|arguments: --)([\w.]+)", message)
    if not match or "." not in match.group(1):
        return ""
    group, key = match.group(1).split(".", 1)
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from convvit.data import ImageDataModule
    from convvit.training.module import ImageClassifier

    owners = {"model": ImageClassifier, "data": ImageDataModule, "trainer": Trainer, "checkpoint": ModelCheckpoint}
    if group not in owners:
        close = difflib.get_close_matches(group, list(owners), n=1)
        return f" (did you mean {close[0]}.{key}?)" if close else ""
    names = [n for n in inspect.signature(owners[group].__init__).parameters if n != "self"]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(f'{group}.{c}' for c in close)}?)" if close else ""


def _predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="convvit predict", description="Classify images with a trained checkpoint; writes a CSV of top-k predictions."
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--ckpt_path", "--ckpt-path", required=True, help="checkpoint written by `convvit fit`")
    p.add_argument("--output", "-o", default="predictions.csv", help="CSV file to write (default: predictions.csv)")
    p.add_argument("--top_k", "--top-k", type=int, default=5, help="predictions per image (default: 5)")
    p.add_argument("--batch_size", "--batch-size", type=int, default=64)
    p.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto",
                   help="raw or EMA weights; auto: EMA when it validated at least as well (default)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convvit export", description="Export a trained checkpoint to ONNX or .safetensors.")
    p.add_argument("--ckpt_path", "--ckpt-path", required=True, help="checkpoint written by `convvit fit`")
    p.add_argument("--format", required=True, choices=("onnx", "safetensors"))
    p.add_argument("--output", "-o", default=None, help="file to write (default: the checkpoint path with the format's suffix)")
    p.add_argument("--weights", choices=("auto", "raw", "ema"), default="auto")
    return p


def _run_predict(argv: Sequence[str]) -> int:
    from convvit.training.predict import predict_images, write_predictions

    args = _predict_parser().parse_args(argv)
    rows = predict_images(args.ckpt_path, args.paths, args.top_k, args.batch_size, args.weights, args.device)
    out = write_predictions(rows, args.output, args.top_k)
    print(f"wrote {len(rows)} predictions to {out}")
    return 0


def _run_export(argv: Sequence[str]) -> int:
    from convvit.training.export import export_checkpoint

    args = _export_parser().parse_args(argv)
    out = export_checkpoint(args.ckpt_path, args.format, args.output, args.weights)
    print(f"wrote {out}")
    return 0


# Lightning warnings that are expected here and say nothing useful to a convvit user.
_QUIET = (
    r"Found \d+ module\(s\) in eval mode",  # the EMA copy is kept in eval mode on purpose
    r"Experiment logs directory .* exists and is not empty",  # CSV and TensorBoard share the run directory
    r".*isinstance\(treespec, LeafSpec\)",
)


def _run_lightning(argv: Sequence[str]) -> int:
    cli_class = _lightning_cli_class()
    with _argv(argv), warnings.catch_warnings():
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        cli_class(args=None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``convvit COMMAND ...``; returns the exit status (errors in the user's input are printed, not raised)."""
    from convvit.training.module import ClassMismatchError, NonFiniteLossError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if argv else 2
    command = argv[0]
    if command not in COMMANDS:
        print(f"convvit: error: unknown command {command!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    runner = {"predict": lambda: _run_predict(argv[1:]), "export": lambda: _run_export(argv[1:])}.get(
        command, lambda: _run_lightning(argv)
    )
    try:
        return runner()
    except SystemExit as exit_:  # argparse/jsonargparse: --help, --print_config, bad arguments
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except argparse.ArgumentError as err:  # jsonargparse: unknown key, bad value, missing file
        print(f"convvit {command}: error: {err}{_suggest(str(err))}", file=sys.stderr)
        print(f"Run `convvit {command} --help` to list the options.", file=sys.stderr)
        return 2
    except (NonFiniteLossError, ClassMismatchError, FileNotFoundError, NotADirectoryError, ValueError) as err:
        if os.environ.get("CONVVIT_DEBUG"):
            raise
        print(f"convvit {command}: error: {err}", file=sys.stderr)
        return 1
