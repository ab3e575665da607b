"""Helpers of the sweep tests: a tiny synthetic base config, the sweep arguments, waiting on a killed sweep."""
from __future__ import annotations

import os
import time
from pathlib import Path

from convvit.sweep.results import RESULTS, read_results

SRC = Path(__file__).resolve().parents[2] / "src"
MODELS = "vit_c_nano_32px,vit_p_nano_32px"
# 64 synthetic 16 px images, a quarter held out for validation: 3 steps an epoch, 2 epochs.
BASE = """\
seed_everything: 0
trainer:
  max_epochs: 2
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  log_every_n_steps: 1
model:
  name: vit_c_nano_32px
  optimizer: adamw
  lr: 1.0e-3
  weight_decay: 0.05
data:
  dataset: synthetic
  img_size: 16
  synthetic_size: 64
  batch_size: 16
  num_workers: 0
  val_fraction: 0.25
"""
# SGD at an lr of 1e5 or more blows up in the first steps: those trials diverge (NaN loss), and stop early.
SGD_LR = "sgd=1e5,1e6"


def write_base(folder: Path) -> Path:
    path = folder / "base.yaml"
    path.write_text(BASE)
    return path


def sweep_args(base: Path, out: Path, *extra: str, samples: int = 2, optimizers: str = "adamw,sgd") -> list[str]:
    return ["--config", str(base), "--models", MODELS, "--optimizers", optimizers, "--samples", str(samples),
            "--out", str(out), *(["--lr", SGD_LR] if "sgd" in optimizers else []), "--parallel", "2",
            "--cpus-per-trial", "1", *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def rows_of(out: Path) -> list[dict]:
    try:
        return read_results(out / RESULTS)
    except (FileNotFoundError, KeyError):
        return []


def wait_for_orphans(out: Path, timeout: float = 60.0) -> None:
    """Wait until no process still runs a trial of ``out`` (the killed sweep's trials stop on their own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = False
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                busy |= str(out) in cmdline.read_bytes().decode(errors="ignore")
            except OSError:
                continue
        if not busy:
            return
        time.sleep(0.5)
