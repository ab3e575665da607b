"""One trial: an ordinary ``convvit fit`` in its own process, and what it reports back.

A trial runs ``python -m convvit.sweep.trial fit ARGS...``, which is ``convvit fit ARGS...`` (the CLI's own
``main``) plus two things: it stops (SIGTERM, so the run saves ``last.ckpt``) when the sweep that started it
dies, and the :class:`TrialRecord` callback (added on the command line) writes ``trial.json`` into the run
directory: the validation errors, and whether the run finished, diverged (NaN loss), was interrupted or failed.
A crash or a NaN in one trial ends that process only.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from convvit.fileio import atomic_write_text
from convvit.sweep.results import chance_error
from convvit.training.runs import versions

__all__ = ["TrialRecord", "TrialJob", "run_trial", "RECORD_FILE", "RECORD_CALLBACK", "main"]

RECORD_FILE = "trial.json"
RECORD_CALLBACK = f"--trainer.callbacks+={__name__}.TrialRecord"
_START_ENV = "CONVVIT_TRIAL_START"  # when the sweep started the trial's process (time.time())


class TrialRecord(L.Callback):
    """Writes ``trial.json`` in the run directory when the run ends: status, epochs, validation top-1 errors (%)."""

    def __init__(self) -> None:
        self.val_errors: list[list[float]] = []  # [epoch, step, error %] per validation

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        acc = trainer.callback_metrics.get("val/acc1")
        if trainer.sanity_checking or acc is None:
            return
        self.val_errors.append([trainer.current_epoch + 1, trainer.global_step, 100.0 * (1.0 - float(acc))])

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.interrupted:
            self._write(trainer, pl_module, "finished")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        from convvit.training.module import NonFiniteLossError

        if isinstance(exception, NonFiniteLossError):
            status = "diverged"
        elif isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            status = "interrupted"
        else:
            status = "failed"
        self._write(trainer, pl_module, status, f"{type(exception).__name__}: {exception}")

    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, status: str, message: str = "") -> None:
        if not trainer.is_global_zero or not trainer.log_dir:
            return
        errors = [e for _, _, e in self.val_errors]
        record = {
            "status": status,
            "epochs": trainer.max_epochs,
            "epochs_done": trainer.current_epoch,
            "val_errors": self.val_errors,
            "best_error": min(errors) if errors else None,
            "final_error": errors[-1] if errors else None,
            "num_classes": int(pl_module.hparams.get("num_classes", 0)) or None,
            "val_split": getattr(trainer.datamodule, "val_split", None),
            "message": message,
            # the trial's wall time so far, process start included (read back if the sweep died before its row)
            "seconds": time.time() - float(os.environ[_START_ENV]) if _START_ENV in os.environ else None,
        }
        atomic_write_text(Path(trainer.log_dir) / RECORD_FILE, json.dumps(record, indent=1) + "\n")


@dataclass
class TrialJob:
    """Everything a worker needs to run one trial (JSON-able: Ray ships it to other machines)."""

    trial: dict[str, Any]  # Trial.to_dict()
    argv: list[str]  # `fit ...`, as `convvit fit` takes it
    root: str  # the sweep folder (run directories are reported relative to it)
    run_parent: str  # ROOT/runs/TRIAL: the trial's version_N folders
    log: str  # stdout and stderr of the trial
    threads: int = 1
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_trial(job: TrialJob, on_start: Callable[[subprocess.Popen], None] | None = None) -> dict[str, Any]:
    """Run ``job`` in a subprocess with ``job.threads`` CPU threads; returns its results.csv row (status
    ``finished``, ``diverged``, ``interrupted`` or ``failed``)."""
    parent, log = Path(job.run_parent), Path(job.log)
    before = set(versions(parent))
    env = {**os.environ, **job.env}
    threads = str(max(1, job.threads))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    env[_START_ENV] = repr(time.time())
    log.parent.mkdir(parents=True, exist_ok=True)
    cwd = job.cwd if job.cwd and Path(job.cwd).is_dir() else None  # another node may not have the folder
    start = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"\n$ convvit {' '.join(job.argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__, *job.argv], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
        )
        if on_start is not None:
            on_start(proc)
        returncode = proc.wait()
    seconds = time.monotonic() - start
    new = sorted(set(versions(parent)) - before)
    run_dir = parent / f"version_{new[-1]}" if new else None
    record: dict[str, Any] = {}
    if run_dir is not None and (run_dir / RECORD_FILE).is_file():
        record = json.loads((run_dir / RECORD_FILE).read_text())
    status = record.get("status")
    if status is None:  # it ended before training started or before it could write its record
        status = "interrupted" if returncode in (130, 143, -signal.SIGTERM, -signal.SIGINT) else "failed"
    elif status == "finished" and returncode != 0:  # e.g. it failed while writing its final files
        status = "failed"
    return make_row(job, record, status, seconds, run_dir)


def make_row(job: TrialJob, record: dict[str, Any], status: str, seconds: float | None,
             run_dir: Path | None) -> dict[str, Any]:
    """The results.csv row of a trial from its ``trial.json`` record."""
    diverged = status == "diverged"
    best, final = record.get("best_error"), record.get("final_error")
    if diverged:  # NaN weights: the final model guesses
        final = chance_error(record.get("num_classes"))
        best = final if best is None else best
    trial = job.trial
    return {
        **{key: trial[key] for key in ("trial", "model", "optimizer", "sample", "lr", "wd", "seed")},
        "epochs": record.get("epochs"),
        "best_error": best,
        "final_error": final,
        "diverged": diverged,
        "status": status,
        "val_split": record.get("val_split"),
        "num_classes": record.get("num_classes"),
        "seconds": seconds,
        "run_dir": os.path.relpath(run_dir, job.root) if run_dir is not None else None,
    }


def recorded_row(job: TrialJob) -> dict[str, Any] | None:
    """The row of a trial that finished or diverged but whose row never reached results.csv (the sweep was
    killed in between): read back from the newest run directory's ``trial.json``."""
    parent = Path(job.run_parent)
    for version in sorted(versions(parent), reverse=True):
        path = parent / f"version_{version}" / RECORD_FILE
        if path.is_file():
            record = json.loads(path.read_text())
            if record.get("status") in ("finished", "diverged"):
                return make_row(job, record, record["status"], record.get("seconds"), path.parent)
    return None


def _stop_with_parent() -> None:
    """SIGTERM this process when its parent (the sweep, or a Ray worker) is gone, even if it was SIGKILLed:
    ``convvit fit`` then stops between steps and saves ``last.ckpt`` instead of training on, orphaned."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convvit.sweep.trial fit ARGS...``: ``convvit fit ARGS...`` that stops with its parent."""
    _stop_with_parent()
    from convvit.cli import main as convvit_main

    return convvit_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
