"""``convvit fit | validate | test``: LightningCLI (``--config FILE.yaml``, dotted overrides, ``--print_config``,
``--ckpt_path`` to resume) over :class:`convvit.training.lightning_cli.ConvvitCLI`.

These commands parse their own arguments (jsonargparse), so the module has ``run_argv`` instead of
``add_arguments`` / ``run``.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence

from convvit.errors import UsageError


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
    """' (did you mean model.lr?)' for an unknown option in a jsonargparse error (e.g. a key in a config file)."""
    from convvit.training.option_names import close_options

    match = re.search(r"(?:option '|arguments: --)([\w.]+)", message)
    if not match or "." not in match.group(1):
        return ""
    close = close_options(*match.group(1).split(".", 1))
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def parse_error(err: argparse.ArgumentError, command: str | None = None) -> str:
    """jsonargparse's refusal of a command line, on one line, with what the user likely meant (and, given the
    command, where its options are listed)."""
    message = " ".join(str(err).split())
    not_finite = _not_finite(message)
    if not_finite is not None:
        return not_finite
    listed = f". Run `convvit {command} --help` to list the options" if command else ""
    return f"{message}{_suggest(message)}{listed}"


def _not_finite(message: str) -> str | None:
    """jsonargparse refuses ``nan`` and ``inf`` for a float with "Expected a <class 'float'>. Got value: nan",
    which reads as if nan were not a float: say what is wrong with it instead."""
    match = re.search(r'Parser key "([\w.]+)": Expected a <class \'float\'>\. Got value: ([-+]?(?:nan|inf\w*))',
                      message, re.IGNORECASE)
    if not match:
        return None
    key, value = match.groups()
    what = "a learning rate" if key.endswith(".lr") else "a value convvit can use"
    return f"--{key} {value} is not {what}: it must be a finite number. Fix: e.g. --{key} 1e-3"


# Lightning warnings that are expected here and say nothing useful to a convvit user.
_QUIET = (
    r"Found \d+ module\(s\) in eval mode",  # the EMA copy is kept in eval mode on purpose
    r"Experiment logs directory .* exists and is not empty",  # CSV and TensorBoard share the run directory
    r".*isinstance\(treespec, LeafSpec\)",
    r"It is recommended to use `self.log\('train/loss'",  # the epoch mean of the training loss is per rank
    r"The dirpath has changed from",  # a resumed run writes to a new version folder, always
)


def run_argv(argv: Sequence[str]) -> int:
    """Run ``convvit fit|validate|test ...`` (``argv[0]`` is the command) with LightningCLI."""
    from convvit.training.option_names import unknown_option

    command = argv[0]
    typo = unknown_option(argv[1:], command)  # before Lightning's import, which takes seconds
    if typo:
        raise UsageError(f"{typo}. Run `convvit {command} --help` to list the options")

    from convvit.training.interrupts import catch_signals
    from convvit.training.lightning_cli import ConvvitCLI

    with _argv(argv), warnings.catch_warnings(), catch_signals() as signals:
        for message in _QUIET:
            warnings.filterwarnings("ignore", message=message)
        try:
            ConvvitCLI(args=None)
        except argparse.ArgumentError as err:  # jsonargparse: unknown key, bad value, missing file
            raise UsageError(parse_error(err, command)) from err
        except RuntimeError as err:  # in a distributed run: another rank died
            from convvit.training.interrupts import lost_rank_error
            from convvit.training.lightning_cli import _RUN_DIR_ENV

            lost = lost_rank_error(err, argv, os.environ.get(_RUN_DIR_ENV))
            if lost is None:
                raise
            raise lost from err
        except (SystemExit, KeyboardInterrupt):  # Lightning ends an interrupted run with one of these
            if signals.signum is None:
                raise
        if signals.signum is not None:  # a scheduler or a person stopped it: not a success
            print(f"convvit {command}: {signals.report()}", file=sys.stderr, flush=True)
            return signals.exit_code
    return 0
