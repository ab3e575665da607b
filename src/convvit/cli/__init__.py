"""The ``convvit`` command: one dispatcher over a table of commands.

Each command is a module of this package:

* ``add_arguments(parser)`` and ``run(args) -> int`` for an argparse command (``info``, ``predict`` ...), with an
  optional ``DESCRIPTION`` for its ``--help``;
* or ``run_argv(argv) -> int`` for commands that parse their own arguments (``fit``, ``validate``, ``test``:
  LightningCLI; ``argv[0]`` is the command's name).

Adding a command is one module here and one :class:`Command` in :data:`COMMANDS`. Command modules import
what they need inside ``run``: ``convvit --help`` and a mistyped option cost no torch import. Every
command runs under one error policy (:func:`convvit.errors.run_guarded`): a user's error is one line
``convvit: error: ...`` with exit status 2 for a bad command line and 1 otherwise; ``--debug`` (or
``CONVVIT_DEBUG=1``) adds the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from convvit.errors import ArgumentParser, debug_requested, run_guarded

__all__ = ["Command", "COMMANDS", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """One ``convvit`` command: its name, the module that implements it, and one line of help."""

    name: str
    module: str
    help: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


COMMANDS: tuple[Command, ...] = (
    Command("info", "convvit.cli.info", "params, flops and acts of one model (paper convention)"),
    Command("models", "convvit.cli.models", "list models (shell-style PATTERN) with their complexity"),
    Command("convert", "convvit.cli.convert",
            "convert a timm / official / Hugging Face checkpoint to convvit .safetensors"),
    Command("fit", "convvit.cli.train",
            "train: convvit fit --config configs/fashion_mnist/vit_c.yaml [--trainer.max_epochs N]"),
    Command("validate", "convvit.cli.train",
            "evaluate on the validation split: convvit validate --config CONFIG --ckpt_path CKPT"),
    Command("test", "convvit.cli.train", "evaluate on the test split: convvit test --config CONFIG --ckpt_path CKPT"),
    Command("predict", "convvit.cli.predict",
            "classify images: convvit predict --ckpt_path CKPT PATH... [--output predictions.csv]"),
    Command("export", "convvit.cli.export",
            "export weights: convvit export --ckpt_path CKPT --format onnx|safetensors"),
    Command("explain", "convvit.cli.explain",
            "attention rollout per image, or attention distance by depth (explain distance)"),
    Command("sweep", "convvit.cli.sweep", "stability sweep: (lr, wd) trials per model and optimizer -> results.csv"),
    Command("plot", "convvit.cli.plot", "plots of a sweep or runs: edf, lrwd, curves (PNG + CSV)"),
)
_BY_NAME = {command.name: command for command in COMMANDS}

_EPILOG = (
    "`convvit COMMAND --help` lists a command's options; fit/validate/test follow LightningCLI conventions "
    "(--config FILE.yaml, dotted overrides, --print_config, --ckpt_path to resume). Errors are one line; "
    "--debug (or CONVVIT_DEBUG=1) adds the traceback."
)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``convvit``: one sub-parser per argparse command (commands that parse their own arguments
    are listed, and receive the command line untouched)."""
    from convvit import __version__

    parser = ArgumentParser(
        prog="convvit",
        description="Vision transformers with convolutions: inspect, train, evaluate, predict, export.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"convvit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for command in COMMANDS:
        module = command.load()
        if hasattr(module, "run_argv"):
            sub.add_parser(command.name, help=command.help, add_help=False)
            continue
        p = sub.add_parser(command.name, help=command.help, description=getattr(module, "DESCRIPTION", None))
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def _dispatch(argv: list[str]) -> int:
    command = _BY_NAME.get(argv[0]) if argv else None
    if command is not None:
        module = command.load()
        if hasattr(module, "run_argv"):
            return module.run_argv(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``convvit COMMAND ...``; returns the exit status (a user's errors are printed, not raised)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    return run_guarded(lambda: _dispatch(argv), debug)

