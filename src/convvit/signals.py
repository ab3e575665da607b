"""Signals that stop a command: the one place convvit installs handlers for SIGINT and SIGTERM.

Python turns Ctrl-C (SIGINT) into :class:`KeyboardInterrupt`; a scheduler stopping a job sends SIGTERM, which by
default kills the process without running any cleanup. :func:`terminate_as_interrupt` makes SIGTERM raise
:class:`Terminated`, a KeyboardInterrupt, so that one ``except KeyboardInterrupt`` stops the work cleanly for
both, and :func:`interrupt_exit_code` gives the shell's status (130 or 143). ``convvit fit`` stops between
training steps instead (:mod:`convvit.training.interrupts`), through :func:`handling`. Imports nothing heavy.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "STOP_SIGNALS",
    "Terminated",
    "handling",
    "interrupt_exit_code",
    "interrupt_for",
    "interrupt_name",
    "kept_handlers",
    "terminate_as_interrupt",
]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, object], None]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Python raises KeyboardInterrupt for Ctrl-C."""


def interrupt_for(signum: int) -> KeyboardInterrupt:
    """The exception a stop signal raises: :class:`Terminated` for SIGTERM, KeyboardInterrupt for the rest."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def interrupt_exit_code(interrupt: BaseException) -> int:
    """``128 + signal``, the shell's convention: 143 for SIGTERM (:class:`Terminated`), 130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)


def interrupt_name(interrupt: BaseException) -> str:
    """``SIGTERM`` or ``Ctrl-C``, as the one line that reports the stop names it."""
    return "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"


@contextlib.contextmanager
def handling(handler: Handler, signals: Iterable[int] = STOP_SIGNALS) -> Iterator[bool]:
    """Call ``handler(signum, frame)`` for ``signals`` while the block runs, then restore the previous handlers.

    Python lets only the main thread install handlers; elsewhere (a command run from a worker thread, e.g. by a
    test or a notebook) this does nothing. Yields whether the handler was installed."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield True
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def kept_handlers(signals: Iterable[int] = STOP_SIGNALS) -> Iterator[None]:
    """Whatever a library installs for ``signals`` while the block runs is undone when it ends: Ray Tune's
    ``Tuner.fit`` installs a SIGINT handler of its own and leaves it behind, so a later Ctrl-C in the same
    process would reach Tune instead of raising KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in signals}
    try:
        yield
    finally:
        for s, old in previous.items():
            if old is not None:  # None: a handler not installed from Python, which cannot be put back
                signal.signal(s, old)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise interrupt_for(signum)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt), as Ctrl-C raises
    KeyboardInterrupt: the work stops where an ``except KeyboardInterrupt`` or ``finally`` cleans up."""
    with handling(_raise_interrupt, (signal.SIGTERM,)):
        yield
