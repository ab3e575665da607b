"""User-facing errors and the one policy the ``convvit`` command applies to them.

Every failure a user can cause is reported as one line, ``convvit: error: <what went wrong, which file>.
<the fix>``, with exit status 2 for a bad command line and 1 otherwise. The traceback is printed only with
``--debug`` (or ``CONVVIT_DEBUG=1``); an exception not listed here is a bug and keeps its traceback.

This module imports nothing heavy: the command uses it before it knows whether it needs torch.
"""
from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

__all__ = [
    "ConvvitError", "UsageError", "DiskFullError", "NonFiniteLossError", "ClassMismatchError",
    "CheckpointConflictError", "CheckpointError", "UnsafeCheckpointError", "ExportMismatchError",
    "ReadOnlyFileError", "SweepError", "ArgumentParser",
    "describe", "is_disk_full", "run_guarded", "debug_requested",
]


class ConvvitError(Exception):
    """A failure the user can fix; the message names what went wrong, the file, and the fix."""

    exit_code = 1


class UsageError(ConvvitError):
    """A bad command line: unknown option, missing argument, bad value."""

    exit_code = 2


class DiskFullError(ConvvitError, OSError):
    """No space was left on the device while writing a file."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC


class NonFiniteLossError(ConvvitError, FloatingPointError):
    """The training loss became NaN or infinite."""


class ClassMismatchError(ConvvitError, ValueError):
    """A checkpoint was trained on other classes than the data has."""


class CheckpointConflictError(ConvvitError, ValueError):
    """A setting given explicitly differs from the checkpoint being resumed or evaluated."""


class CheckpointError(ConvvitError, ValueError):
    """A checkpoint file cannot be read, or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled Python objects other than tensors and plain containers."""


class ReadOnlyFileError(ConvvitError, PermissionError):
    """A file convvit was to replace is read-only: its owner protected it."""


class ExportMismatchError(ConvvitError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


class SweepError(ConvvitError, ValueError):
    """Bad input to ``convvit sweep`` / ``convvit plot``: the message says what is wrong and how to fix it.

    Exit status 2 like a bad command line: the sweep's input is its options, base config and folder. Still a
    ValueError, as it was before it joined this hierarchy, for callers that catch that."""

    exit_code = 2


# Exceptions from Python, torch and Lightning whose message already says what a user got wrong.
_USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_ACCESS_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
# torch.utils.data re-raises a worker's exception with the worker's traceback as its message.
_WORKER_TRACEBACK = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\s*Original Traceback", re.DOTALL)


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_disk_full(err: BaseException) -> bool:
    """True when ``err`` or an exception it was raised from says the device is full.

    torch's zip writer turns the OSError(ENOSPC) of a file write into ``RuntimeError: [enforce fail at
    inline_container.cc] ...`` (the OSError stays as its context), and safetensors reports it in words.
    """
    return any(
        getattr(e, "errno", None) in _SPACE_ERRNOS or "No space left on device" in str(e) for e in _chain(err)
    )


def disk_full_error(path: str | os.PathLike, kept_previous: bool, fix: str = "") -> DiskFullError:
    """The error for a write of ``path`` that ran out of space (``kept_previous``: an older ``path`` is intact)."""
    path = Path(path)
    kept = f"; the previous {path.name} is intact" if kept_previous else ""
    fix = fix or "free space on that disk, or write somewhere else"
    return DiskFullError(f"no space left on the device while writing {path}{kept}. Fix: {fix}")


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _worker_message(message: str) -> str:
    """The original message of an exception re-raised from a DataLoader worker (the traceback's last line)."""
    last = [line for line in message.splitlines() if line.strip()][-1]
    # "convvit.data.images.BadImageError: cannot read image ..." -> "cannot read image ..."
    match = re.match(r"^[\w.]+(?:Error|Exception|Warning|Exit|Interrupt)?: (.*)$", last)
    return match.group(1) if match else last


def describe(err: BaseException) -> tuple[str, int] | None:
    """``(one-line message, exit status)`` for an error a user caused, or None for a bug."""
    message = str(err)
    if _WORKER_TRACEBACK.match(message):
        message = _worker_message(message)
    if isinstance(err, ConvvitError):
        return _one_line(message), err.exit_code
    if isinstance(err, (OSError, RuntimeError)) and is_disk_full(err):  # a write not made by atomic_write
        where = next((e.filename for e in _chain(err) if getattr(e, "filename", None)), "a file")
        return str(disk_full_error(where, kept_previous=False)), 1
    if isinstance(err, OSError) and err.errno in _ACCESS_ERRNOS and err.filename:
        return access_message(err), 1
    if isinstance(err, _USER_ERRORS):
        return _one_line(message), 1
    return None


def access_message(err: OSError) -> str:
    """One line for a refused read or write: the path, the permissions of it (or of the folder it was to be made
    in) and the fix."""
    path = Path(os.fsdecode(err.filename))
    held = path
    while not held.exists() and held != held.parent:
        held = held.parent
    try:
        import pwd
        import stat

        st = held.stat()
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        where = "" if held == path else f" (in {held})"
        perms = f"{where}; {held} is {stat.filemode(st.st_mode)}, owned by {owner}"
    except (ImportError, OSError):
        perms = ""
    reason = (err.strerror or "permission denied").lower()
    if err.errno == errno.EROFS:
        return f"{path}: {reason}{perms}. Fix: choose a path on a writable file system"
    return (f"{path}: {reason}{perms}. Fix: make it writable for you (chmod u+w {held}) or choose another path")


def debug_requested(argv: list[str]) -> bool:
    """True when ``--debug`` is in ``argv`` (it is removed) or ``CONVVIT_DEBUG`` is set to a true value."""
    found = "--debug" in argv
    while "--debug" in argv:
        argv.remove("--debug")
    if found:  # so that processes this one starts (DDP workers) show their tracebacks too
        os.environ["CONVVIT_DEBUG"] = "1"
    return found or os.environ.get("CONVVIT_DEBUG", "").lower() not in ("", "0", "false", "no")


def run_guarded(run: Callable[[], int], debug: bool = False, prog: str = "convvit",
                summarise_bugs: bool = False) -> int:
    """Run ``run()`` under the error policy; returns the exit status. ``prog`` starts the error line (``convvit
    sweep: error: ...``). ``summarise_bugs``: an error that is not a user's is one line too (its type and message,
    exit status 1), its traceback only with ``debug`` -- for a long-running command whose own failure should not
    bury its progress lines."""
    try:
        return run()
    except SystemExit as exit_:  # argparse / jsonargparse: --help, --print_config; Lightning after Ctrl-C
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Exception as err:  # noqa: BLE001  (anything not a user's error is re-raised below)
        described = describe(err)
        if described is None and (debug or not summarise_bugs):
            raise
        message, code = described or (f"{type(err).__name__}: {err}. Fix: rerun with --debug for the traceback", 1)
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {message}", file=sys.stderr)
        return code


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad command line raises :class:`UsageError` (one line, exit 2) instead of printing
    the usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}. Run `{self.prog} --help` to list the options")
