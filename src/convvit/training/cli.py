"""``convvit fit | validate | test | predict | export``.

fit/validate/test run :class:`convvit.training.lightning_cli.ConvvitCLI` (LightningCLI conventions:
``--config FILE.yaml``, dotted overrides, ``--print_config``, ``--ckpt_path`` to resume); predict and
export are small argparse commands over :mod:`convvit.training.predict` and :mod:`convvit.training.export`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from typing import Iterator, Sequence

__all__ = ["main", "COMMANDS"]

LIGHTNING_COMMANDS = ("fit", "validate", "test")
COMMANDS = (*LIGHTNING_COMMANDS, "predict", "export")

_USAGE = """usage: convvit {fit,validate,test,predict,export} ...

  fit       train:            convvit fit --config configs/fashion_mnist/vit_c.yaml [--trainer.max_epochs N ...]
  validate  evaluate (val):   convvit validate --config CONFIG --ckpt_path CKPT
  test      evaluate (test):  convvit test --config CONFIG --ckpt_path CKPT
  predict   classify images:  convvit predict --ckpt_path CKPT PATH... [--output predictions.csv] [--top_k 5]
  export    export weights:   convvit export --ckpt_path CKPT --format onnx|safetensors [--output FILE]

`convvit COMMAND --help` lists every option; fit/validate/test also take --print_config.
"""


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
    r"It is recommended to use `self.log\('train/loss'",  # the epoch mean of the training loss is per rank
    r"The dirpath has changed from",  # a resumed run writes to a new version folder, always
)


def _run_lightning(argv: Sequence[str]) -> int:
    from convvit.training.interrupts import catch_signals
    from convvit.training.lightning_cli import ConvvitCLI

    with _argv(argv), warnings.catch_warnings(), catch_signals() as signals:
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        try:
            ConvvitCLI(args=None)
        except (SystemExit, KeyboardInterrupt):  # Lightning ends an interrupted run with one of these
            if signals.signum is None:
                raise
        if signals.signum is not None:  # a scheduler or a person stopped it: not a success
            print(f"convvit {argv[0]}: {signals.report()}", file=sys.stderr, flush=True)
            return signals.exit_code
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
