"""The LightningCLI behind ``convvit fit | validate | test``.

:class:`ConvvitCLI` trains :class:`~convvit.training.module.ImageClassifier` on
:class:`convvit.data.ImageDataModule`. The model's class count, class names, input channels, image size and
normalisation are linked from the data. Each run writes to its own ``DEFAULT_ROOT_DIR/NAME/version_N``
(claimed atomically, so that runs started together never share one): the resolved ``config.yaml``, top-k
checkpoints and ``last.ckpt`` (every epoch; written atomically), ``metrics.csv``, TensorBoard events,
``curves.png`` and ``final.safetensors``. After fit the final weights are evaluated on the test split (the
validation split when there is none) and the result printed.

``--ckpt_path`` resumes a run as it was trained: a setting given explicitly that differs from the
checkpoint's is an error (``--model.init_checkpoint`` starts new training from its weights instead).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichModelSummary
from lightning.pytorch.callbacks import ModelSummary as LightningModelSummary
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from convvit import settings as convvit_settings
from convvit.checkpoints import layout
from convvit.data import ImageDataModule
from convvit.data import settings as data_settings
from convvit.errors import UsageError
from convvit.training import settings
from convvit.training.callbacks import EpochSummary, FinalWeights, LastCheckpoint, LearningCurves, ModelSummary
from convvit.training.checkpoint_io import AtomicCheckpointIO, explained_load_errors
from convvit.training.interrupts import StopOnSignal
from convvit.training.module import CheckpointConflictError, ImageClassifier, latest_checkpoint
from convvit.training.option_names import given_options
from convvit.training.precision import AUTO, Trainer, resolve_precision
from convvit.training.runs import (
    claim_version_dir,
    default_run_name,
    discard_if_unused,
    remove_abandoned_writes,
    versions,
)

__all__ = ["ConvvitCLI", "DEFAULT_ROOT_DIR", "LIGHTNING_COMMANDS", "parse_options"]

LIGHTNING_COMMANDS = ("fit", "validate", "test")  # the LightningCLI subcommands convvit offers

DEFAULT_ROOT_DIR = "runs"
# Which model settings come from the data, may change on resume or only shape training: declared beside each
# field in convvit.training.settings.
# A process that DDP's launcher starts for another rank finds the run directory rank 0 claimed here.
_RUN_DIR_ENV = "_CONVVIT_RUN_DIR"
# where rank_zero_info logs (Lightning points it at the pytorch one when lightning.pytorch is imported)
_LIGHTNING_INFO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _QuietLightning(logging.Filter):
    """Lightning messages that say nothing to a convvit user: the advertisements for its cloud services
    ("💡 Tip: ... litlogger") and its Ctrl-C notice (convvit prints where the run stopped instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith(("💡 Tip", "Detected KeyboardInterrupt"))


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    quiet, loggers = _QuietLightning(), [logging.getLogger(name) for name in _LIGHTNING_INFO_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


class ConvvitCLI(LightningCLI):
    """LightningCLI with convvit's links, run directory, loggers, checkpointing and end-of-fit test."""

    def __init__(self, args: Sequence[str] | None = None, parse_only: bool = False) -> None:
        self._args = args if args is not None else sys.argv[1:]
        self._parse_only = parse_only
        self._run_dir: Path | None = None  # the version folder this process claimed
        self._ckpt_hparams: dict[str, Any] | None = None  # the hyper-parameters of --ckpt_path
        self._ckpt_data_hparams: dict[str, Any] | None = None  # and its data module's
        self._ckpt_run_name: str | None = None  # the name of the run that wrote --ckpt_path: a resumed run keeps it
        try:
            with _quiet_lightning():
                super().__init__(
                    ImageClassifier,
                    ImageDataModule,
                    trainer_class=Trainer,
                    args=args,
                    seed_everything_default=0,
                    save_config_kwargs={"overwrite": True},
                    auto_configure_optimizers=False,
                    # no abbreviated options (argparse's --trainer.max_epoch for --trainer.max_epochs): the fast
                    # check in option_names refuses them, and a new option could make one ambiguous
                    parser_kwargs={
                        "prog": "convvit", "env_prefix": "CONVVIT", "exit_on_error": False, "allow_abbrev": False,
                        **{cmd: {"exit_on_error": False, "allow_abbrev": False} for cmd in LIGHTNING_COMMANDS},
                    },
                    trainer_defaults={
                        "default_root_dir": DEFAULT_ROOT_DIR,
                        "max_epochs": 10,
                        "log_every_n_steps": 20,
                        # redrawn in place, a progress bar is noise in a log file: the epoch lines say it there
                        "enable_progress_bar": sys.stdout.isatty(),
                        "callbacks": [
                            LearningRateMonitor("step"), LearningCurves(), FinalWeights(), EpochSummary(),
                            StopOnSignal(),
                        ],
                    },
                )
        except BaseException:
            if self._run_dir is not None:  # failed or interrupted before training: no empty version folder
                discard_if_unused(self._run_dir)
            raise

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for key in settings.from_data():
            parser.link_arguments(f"data.{key}", f"model.{key}", apply_on="instantiate")
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
        # The latest state, every epoch whatever the validation cadence (Lightning's save_last only follows
        # the top-k saves, which follow validation): resume from it.
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_argument(
            "--name", type=Optional[str], default=None,  # noqa: UP045 (a type object given at run time, in jsonargparse's documented form)
            help="Run name: each run writes to DEFAULT_ROOT_DIR/NAME/version_N (default: DATA-MODEL, after the "
                 "data used: the dataset, or an image folder's name).",
        )
        parser.add_argument(
            "--test_after_fit", type=bool, default=True,
            help="After fit, evaluate the final weights on the test split (the validation split when the data "
                 "has no test split) and print it.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        if self._parse_only:  # LightningCLI has no parse-only mode: its __init__ goes on to build and run
            raise _Parsed(self.config)

    # ------------------------------------------------------------------ resuming: what the command line says runs
    def _parse_ckpt_path(self) -> None:
        """Lightning's: the model settings of a run resumed (or evaluated) with ``--ckpt_path`` are the checkpoint's,
        and so are the data settings the checkpoint holds (each group's policies say which: see
        :mod:`convvit.settings`). Settings given explicitly that differ from them are refused instead of silently
        replaced."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        with explained_load_errors(ckpt_path):  # a damaged or code-holding file: one line, not torch's traceback
            checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        self._ckpt_run_name = layout.run_name(checkpoint) or _run_name_from_path(Path(ckpt_path))
        hparams = dict(checkpoint.get(layout.HPARAMS_KEY) or {})
        hparams.pop("_instantiator", None)
        self._ckpt_hparams = hparams
        if not hparams:
            return
        model, data = self.config[subcommand].model, self.config[subcommand].data
        given = {key: source for key, source in _given_settings(self._args, subcommand, "model").items()
                 if key in model}
        if subcommand == "fit" and model.get("init_checkpoint") and "init_checkpoint" in given:
            raise CheckpointConflictError(
                f"--model.init_checkpoint and --ckpt_path {ckpt_path} both give the weights to start from; choose "
                "one: --ckpt_path resumes the run as it was (optimizer, schedule, epoch), --model.init_checkpoint "
                "starts new training from the file's weights with the settings given"
            )
        evaluating = subcommand != "fit"
        model_exempt = convvit_settings.exempt_from_checkpoint(settings.MODEL_GROUPS, evaluating)
        # the data module's own hyper-parameters (Lightning saves them beside the model's); checkpoints written
        # without them hold no data settings to take
        data_hparams = dict(checkpoint.get(ImageDataModule.CHECKPOINT_HYPER_PARAMS_KEY) or {})
        self._ckpt_data_hparams = data_hparams
        data_exempt = convvit_settings.exempt_from_checkpoint(data_settings.DATA_GROUPS, evaluating)
        data_given = {key: source for key, source in _given_settings(self._args, subcommand, "data").items()
                      if key in data}
        conflicts = [
            *_conflicts("model", model, given, hparams, model_exempt),
            *_conflicts("data", data, data_given, data_hparams, data_exempt),
        ]
        if conflicts:
            raise CheckpointConflictError(_conflict_message(conflicts, ckpt_path, subcommand))
        may_change = settings.with_policy(settings.RESUME_MAY_CHANGE)
        keep = {key: model[key] for key in given if key in may_change}
        taken_data = {key: value for key, value in data_hparams.items() if key in data and key not in data_exempt}
        self.config = self.parser.parse_object(
            {subcommand: {"model": hparams, **({"data": taken_data} if taken_data else {})}}, self.config)
        for key, value in keep.items():
            self.config[subcommand].model[key] = value
        # the weights come from the checkpoint: a file the run once started from is not read again (or needed)
        self.config[subcommand].model.init_checkpoint = None

    def _check_data_against_checkpoint(self) -> None:
        """The data decides the model's input size, channels and normalisation: they must be the checkpoint's.
        Data settings declared ``fixed_by_checkpoint`` are compared as resolved (the dataset's image size when none
        is given): through the model setting linked from them, else as the data module holds them."""
        if not self._ckpt_hparams:
            return
        linked = settings.data_fixed_by_checkpoint()
        conflicts = [
            (f"--data.{key}", self.model.hparams.get(key), self._ckpt_hparams[key], "data")
            for key in linked
            if key in self._ckpt_hparams and not _same(self.model.hparams.get(key), self._ckpt_hparams[key])
        ]
        saved = self._ckpt_data_hparams or {}
        conflicts += [
            (f"--data.{key}", self.datamodule.hparams.get(key), saved[key], "data")
            for key in convvit_settings.fixed_by_checkpoint(data_settings.DATA_GROUPS)
            if key not in linked and key in saved and not _same(self.datamodule.hparams.get(key), saved[key])
        ]
        if conflicts:
            ckpt_path = self._get(self.config, "ckpt_path")
            raise CheckpointConflictError(_conflict_message(conflicts, ckpt_path, self.subcommand))

    # ------------------------------------------------------------------ the run directory
    def instantiate_trainer(self, **kwargs: Any):
        cfg = self._get(self.config_init, "trainer")
        if self.subcommand == "fit" and cfg.get("max_epochs") == 0:  # before a run folder is claimed
            raise UsageError(
                "--trainer.max_epochs 0 trains nothing: the run would save untrained weights as final and test them. "
                "Fix: give --trainer.max_epochs 1 or more; to evaluate a checkpoint, use `convvit test --ckpt_path`"
            )
        if cfg.get("precision") == AUTO:
            kwargs["precision"] = self._resolve_auto_precision(cfg.get("accelerator", "auto"))
        if cfg.get("logger") in (None, True):
            root = cfg.get("default_root_dir") or DEFAULT_ROOT_DIR
            name = self._get(self.config, "name") or self._ckpt_run_name or default_run_name(
                self.datamodule.dataset, self._get(self.config, "data").get("path"), self.model.hparams.name
            )
            version = self._version_dir(Path(root) / name).name
            kwargs["logger"] = [
                TensorBoardLogger(root, name=name, version=version, default_hp_metric=False),
                CSVLogger(root, name=name, version=version),
            ]
        plugins = cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        trainer = super().instantiate_trainer(**kwargs)
        # Lightning's default summary (a Rich table when rich is installed) has a FLOPs column that reads 0 here
        trainer.callbacks = [
            ModelSummary(max_depth=cb._max_depth) if type(cb) in (LightningModelSummary, RichModelSummary) else cb
            for cb in trainer.callbacks
        ]
        return trainer

    def _resolve_auto_precision(self, accelerator: Any) -> str:
        """``--trainer.precision auto`` for this model on this machine; printed, and saved in config.yaml."""
        from convvit.models.complexity import count_complexity

        hp = self.model.hparams
        macs = count_complexity(hp.name, img_size=hp.img_size, in_chans=hp.in_chans, **(hp.model_kwargs or {}))
        precision, why = resolve_precision(AUTO, accelerator, macs["flops"] / 1e9)
        self._get(self.config, "trainer").precision = precision  # the run's config.yaml says what ran
        if rank_zero_only.rank == 0:  # stdout, like the epoch lines: it belongs in the run's log
            print(f"precision: {precision} (auto: {why})", flush=True)
        return precision

    def _version_dir(self, parent: Path) -> Path:
        """Rank 0 claims a new ``version_N``; processes DDP starts for the other ranks use the one it claimed."""
        if rank_zero_only.rank != 0:
            inherited = os.environ.get(_RUN_DIR_ENV)
            if inherited and Path(inherited).parent == parent:
                return Path(inherited)
            # only a label for this rank's loggers, which write nothing: Lightning broadcasts rank 0's run directory
            return parent / f"version_{max(versions(parent), default=0)}"
        self._run_dir = claim_version_dir(parent)
        os.environ[_RUN_DIR_ENV] = str(self._run_dir)
        ckpt_path = self._get(self.config, "ckpt_path")
        # partial checkpoint writes of killed runs: in this run's family, and beside the checkpoint resumed
        remove_abandoned_writes(*parent.glob("version_*"), *([Path(ckpt_path).parent] if ckpt_path else []))
        return self._run_dir

    # ------------------------------------------------------------------ fit / validate / test
    def before_fit(self) -> None:
        strategy = type(self.trainer.strategy).__name__
        if self.model.has_ema and "FSDP" in strategy:
            raise ValueError("--model.ema true is not supported with FSDP; use DDP or turn EMA off")
        self._check_data_against_checkpoint()
        trainer = self.trainer
        every = trainer.check_val_every_n_epoch
        if every and trainer.max_epochs and 0 < trainer.max_epochs < every and trainer.limit_val_batches != 0:
            _warn(
                f"--trainer.max_epochs {trainer.max_epochs} is less than --trainer.check_val_every_n_epoch {every}: "
                "this run will not validate, so it keeps no best checkpoint (last.ckpt is still written every epoch)"
            )

    def before_validate(self) -> None:
        self._check_data_against_checkpoint()

    def before_test(self) -> None:
        self._check_data_against_checkpoint()

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
        if not self._get(self.config, "test_after_fit"):
            return
        results = trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        metrics = results[0] if results else {}
        if trainer.is_global_zero and "test/acc1" in metrics:
            # image folders without test/ are tested on their validation split: say which split it was
            split = "test" if getattr(self.datamodule, "test_split", "test") == "test" else "validation"
            line = f"{split} top-1 {100 * metrics['test/acc1']:.2f}%  top-5 {100 * metrics['test/acc5']:.2f}%"
            if "test/acc1_ema" in metrics:
                line += (f"  |  EMA top-1 {100 * metrics['test/acc1_ema']:.2f}%  "
                         f"top-5 {100 * metrics['test/acc5_ema']:.2f}%")
            if split == "validation":
                line += "  (the data has no test split)"
            print(line, flush=True)


class _Parsed(Exception):
    """Ends :class:`ConvvitCLI` right after parsing (``parse_only``), carrying the parsed config."""

    def __init__(self, config: Any) -> None:
        super().__init__("parsed")
        self.config = config


def parse_options(argv: Sequence[str]) -> Any:
    """``argv`` (``fit|validate|test`` and its options) parsed as the command parses it, nothing built or run;
    the parsed config (a jsonargparse Namespace). A bad option or value raises ``argparse.ArgumentError``."""
    saved = sys.argv
    sys.argv = saved[:1]  # LightningCLI warns when it is given args while sys.argv holds others
    try:
        with _quiet_lightning():
            ConvvitCLI(list(argv), parse_only=True)
    except _Parsed as parsed:
        return parsed.config
    finally:
        sys.argv = saved
    raise AssertionError("ConvvitCLI(parse_only=True) returned without parsing")  # pragma: no cover


def _run_name_from_path(ckpt_path: Path) -> str | None:
    """NAME of ``.../NAME/version_N/checkpoints/X.ckpt``, for checkpoints written before the name was kept."""
    parts = ckpt_path.resolve().parts
    if len(parts) >= 4 and parts[-2] == "checkpoints" and parts[-3].startswith("version_"):
        return parts[-4]
    return None


@rank_zero_only
def _warn(message: str) -> None:
    print(f"convvit: warning: {message}", file=sys.stderr, flush=True)


def _given_settings(args: Any, subcommand: str, group: str) -> dict[str, str]:
    """The settings of ``group`` ("model", "data") a user gave (``distillation`` for
    ``--model.distillation.alpha``), each with where it came from: ``"command line"`` or the config file that sets
    it. Settings left at their defaults are not given, even when the value happens to equal one."""
    if isinstance(args, dict):
        section = args.get(subcommand, args).get(group)
        return {key: "arguments" for key in section} if isinstance(section, dict) else {}
    prefix = f"{group}."
    return {key.split(".")[1]: given.source for key, given in given_options(args).items() if key.startswith(prefix)}


def _conflicts(group: str, section: Any, given: dict[str, str], saved: dict[str, Any], exempt: Sequence[str]
               ) -> list[tuple[str, Any, Any, str]]:
    """The settings of ``group`` given (``{key: where}``) whose values in ``section`` (the parsed config) differ
    from the checkpoint's (``saved``), leaving out those ``exempt`` by their policies."""
    return [
        (f"--{group}.{key}", section[key], saved[key], source)
        for key, source in given.items()
        if key in saved and key not in exempt and not _same(section[key], saved[key])
    ]


def _same(a: Any, b: Any) -> bool:
    """Equal as settings: tuples and lists alike, 1 and 1.0 alike, a group (jsonargparse Namespace) as its dict."""
    a, b = (v.as_dict() if hasattr(v, "as_dict") else v for v in (a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if (isinstance(a, (int, float)) and isinstance(b, (int, float))
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return float(a) == float(b)
    return a == b


def _show(value: Any) -> str:
    if hasattr(value, "as_dict"):  # a group of settings (jsonargparse Namespace)
        value = value.as_dict()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def _conflict_message(conflicts: list[tuple[str, Any, Any, str]], ckpt_path: str, subcommand: str) -> str:
    """One sentence naming each option and value given, the checkpoint's values and the way out, e.g.
    ``--model.lr 0.001 conflicts with the checkpoint being resumed (LAST.ckpt was trained with lr 1e+06); ...``.
    ``conflicts``: (option, value given, checkpoint's value, where it was given) per setting."""
    options = " and ".join(
        f"{option} {_show(value)}" + (f" (set in {source})" if source.endswith((".yaml", ".yml", ".json")) else "")
        for option, value, _, source in conflicts
    )
    trained = ", ".join(
        f"as {_show(saved)}" if option == "--model.name" else f"with {option.split('.', 1)[1]} {_show(saved)}"
        for option, _, saved, _ in conflicts
    )
    many = len(conflicts) > 1
    drop = "drop the options" if many else "drop the option"
    if subcommand == "fit":
        return (
            f"{options} {'conflict' if many else 'conflicts'} with the checkpoint being resumed ({ckpt_path} was "
            f"trained {trained}); {drop} to resume as it was, or start new training from its weights with "
            f"--model.init_checkpoint {ckpt_path}"
        )
    return (
        f"{options} {'conflict' if many else 'conflicts'} with the checkpoint being evaluated ({ckpt_path} was "
        f"trained {trained}); {drop} to {subcommand} it as it was trained"
    )
