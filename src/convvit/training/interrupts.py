"""Ctrl-C and SIGTERM: stop at the next step boundary, keep the latest state, say so, and exit 130 / 143.

A scheduler that stops a job sends SIGTERM, a person presses Ctrl-C (SIGINT). Either way training stops where
the state is consistent: the first signal asks Lightning to stop after the current step (the same mechanism
Lightning uses for SIGTERM, which raises :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException`
between steps), :class:`~convvit.training.callbacks.LastCheckpoint` then saves ``last.ckpt`` and the command
prints one line and exits with ``128 + signal``. A second signal stops at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

import lightning as L

from convvit.training.module import latest_checkpoint

__all__ = ["SignalStop", "StopOnSignal", "catch_signals"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop:
    """The signal received by this process (if any) and the trainer that was running when it came."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.trainer: L.Trainer | None = None  # set while a Lightning loop runs and can stop between steps
        self.last_trainer: L.Trainer | None = None

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or 0)  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def handle(self, signum: int, frame: object) -> None:
        if self.signum is not None or self.trainer is None:
            # a second signal, or nothing that can stop cleanly is running (setup, data loading): stop now
            self.signum = self.signum or signum
            raise KeyboardInterrupt
        self.signum = signum
        # Lightning checks this flag after every training step and evaluation batch (it is what its own SIGTERM
        # handler sets) and stops there with a SIGTERMException, whichever signal it was.
        self.trainer._signal_connector.received_sigterm = True

    def report(self) -> str:
        """One line: where the run stopped and how to go on."""
        name = signal.Signals(self.signum).name if self.signum else "a signal"
        trainer = self.last_trainer
        if trainer is None:
            return f"interrupted ({name}) before it started"
        fn = getattr(trainer.state.fn, "value", trainer.state.fn)
        if trainer.state.finished:
            return f"interrupted ({name}) after {fn} had finished"
        if fn != "fit":
            return f"interrupted ({name}) while running {fn}"
        if trainer.global_step == 0:
            return f"interrupted ({name}) before the first training step; nothing to resume"
        where = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {trainer.global_step}"
        ckpt = latest_checkpoint(trainer)
        return f"interrupted ({name}) at {where}; " + (
            f"resume with --ckpt_path {ckpt}" if ckpt else "no checkpoint was saved"
        )


_STATE: SignalStop | None = None


class StopOnSignal(L.Callback):
    """Lets the signal handler of :func:`catch_signals` stop this trainer's loops at the next step boundary.

    The trainer is handed over when a loop starts: Lightning installs its SIGTERM handler (and clears its stop
    flag) just before, and until then a signal stops the command at once, with nothing to save.
    """

    def _loop_start(self, trainer: L.Trainer) -> None:
        if _STATE is None:
            return
        _STATE.trainer = _STATE.last_trainer = trainer
        if _STATE.signum is not None:  # a signal came between two loops (e.g. before the end-of-fit test)
            trainer._signal_connector.received_sigterm = True

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loop_start(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loop_start(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loop_start(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._loop_start(trainer)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if _STATE is not None and _STATE.trainer is trainer:
            _STATE.trainer = None


@contextlib.contextmanager
def catch_signals() -> Iterator[SignalStop]:
    """Handle SIGINT and SIGTERM for the duration of a command (main thread only; elsewhere a no-op).

    Lightning installs its own SIGTERM handler while a trainer runs and calls the one found here as well.
    """
    global _STATE
    state = SignalStop()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    saved_state, _STATE = _STATE, state
    for s in SIGNALS:
        signal.signal(s, state.handle)
    try:
        yield state
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _STATE = saved_state
