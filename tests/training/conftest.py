"""Shared helpers for the training tests: tiny synthetic runs through the real CLI entry point."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from single_thread import one_thread  # tests/single_thread.py

from convvit.cli import main

MODEL = "vit_c_nano_32px"
# 64 synthetic 16 px RGB images in batches of 16: 4 optimizer steps per epoch, 16 validation images.
TINY = [
    "--model.name", MODEL,
    "--data.dataset", "synthetic", "--data.img_size", "16", "--data.synthetic_size", "64",
    "--data.batch_size", "16", "--data.num_workers", "0",
    "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.log_every_n_steps", "1",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]
STEPS_PER_EPOCH = 4


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def fit(root: Path, *extra: str) -> int:
    """``convvit fit`` on the tiny synthetic setup, writing under ``root``; returns the exit status."""
    return main(["fit", *TINY, "--trainer.default_root_dir", str(root), *extra])


def run_dir(root: Path, version: int = 0, name: str = f"synthetic-{MODEL}") -> Path:
    return Path(root) / name / f"version_{version}"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One finished 2-epoch run with EMA (shared by the predict / export / evaluation tests)."""
    root = tmp_path_factory.mktemp("trained")
    with one_thread():
        assert fit(root, "--trainer.max_epochs", "2", "--model.ema", "true", "--model.lr", "3e-3") == 0
    return run_dir(root)


@contextlib.contextmanager
def interrupted_at_epoch(monkeypatch, epoch: int = 1):
    """Fits started inside stop as a Ctrl-C would, at the start of ``epoch`` (after its checkpoint is saved)."""
    from convvit.training.module import ImageClassifier

    start = ImageClassifier.on_train_epoch_start

    def interrupt(self):
        if self.current_epoch == epoch:
            raise KeyboardInterrupt
        start(self)

    with monkeypatch.context() as m:
        m.setattr(ImageClassifier, "on_train_epoch_start", interrupt)
        yield
