"""Ctrl-C and SIGTERM: stop at the next step boundary, keep the latest state, say so, and exit 130 / 143.

A scheduler that stops a job sends SIGTERM, a person presses Ctrl-C (SIGINT). Either way training stops where
the state is consistent: the first signal asks Lightning to stop after the current step (the same mechanism
Lightning uses for SIGTERM, which raises :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException`
between steps), :class:`~convvit.training.callbacks.LastCheckpoint` then saves ``last.ckpt`` and the command
prints one line and exits with ``128 + signal``. A second signal stops at once.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import lightning as L

from convvit.errors import ConvvitError
from convvit.signals import handling, interrupt_for
from convvit.training.module import latest_checkpoint

__all__ = ["SignalStop", "StopOnSignal", "catch_signals", "lost_rank_error"]

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
            raise interrupt_for(signum)
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
    with handling(state.handle) as installed:
        if not installed:
            yield state
            return
        saved_state, _STATE = _STATE, state
        try:
            yield state
        finally:
            _STATE = saved_state


# What gloo (and NCCL) say in the surviving ranks when another rank's process is gone.
_PEER_LOST = re.compile(r"Connection (?:reset|closed) by peer|Broken pipe|NCCL communicator was aborted|"
                        r"(?:Socket|Read|Write) (?:timeout|error)", re.IGNORECASE)


def lost_rank_error(err: BaseException, argv: Sequence[str], run_dir: str | None) -> ConvvitError | None:
    """One line for a distributed run whose collective failed because another rank died (killed, out of memory):
    which rank died, and the command that resumes from the last checkpoint of ``run_dir``; None for any other
    error. torch raises it as a RuntimeError (DistBackendError) from deep in a barrier or an all-reduce, whose
    traceback (over 100 lines, once per rank) says nothing a user can act on."""
    import torch.distributed as dist

    message = str(err)
    lost = re.search(r"Connection (?:reset|closed) by peer", message) or _PEER_LOST.search(message)
    if not isinstance(err, RuntimeError) or lost is None:
        return None
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:  # the process group is gone: what the launcher told this process
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2:
        return None
    who = f"rank {1 - rank}" if world == 2 else f"another rank than {rank}"
    last = Path(run_dir) / "checkpoints" / "last.ckpt" if run_dir else None
    if last is None or not last.is_file():
        fix = f"rerun the command: convvit {shlex.join(argv)} (no checkpoint was saved yet)"
    else:
        args = list(argv)
        if "--ckpt_path" in args:
            del args[args.index("--ckpt_path"):args.index("--ckpt_path") + 2]
        fix = f"resume from the last checkpoint: convvit {shlex.join([*args, '--ckpt_path', str(last)])}"
    return ConvvitError(f"{who} of {world} stopped (its process died: killed, or out of memory), so rank {rank} "
                        f"lost its connection ({lost.group(0)}) and stopped too. Fix: see "
                        f"why it died in its output or the system log (dmesg), then {fix}")
