"""Two-process DDP on CPU (ddp_spawn, gloo) from the same CLI: every rank ends with the same weights."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from convvit.cli import main


class SaveRankWeights(L.Callback):
    """Each rank saves its model weights at the end of training (spawned processes cannot return them)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
        torch.save(state, Path(self.folder) / f"rank{trainer.global_rank}.pt")


def test_ddp_spawn_two_cpu_processes_end_identical(tmp_path):
    callback = {"class_path": f"{__name__}.SaveRankWeights", "init_args": {"folder": str(tmp_path)}}
    start = time.time()
    rc = main([
        "fit", "--model.name", "vit_c_nano_32px", "--model.ema", "true",
        "--data.dataset", "synthetic", "--data.img_size", "16", "--data.synthetic_size", "64",
        "--data.batch_size", "8", "--data.num_workers", "0",
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp_spawn",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(tmp_path / "runs"), "--test_after_fit", "false",
        "--trainer.callbacks+", json.dumps(callback),
    ])
    assert rc == 0, f"DDP run failed after {time.time() - start:.0f} s"
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    ckpt = torch.load(next((tmp_path / "runs").rglob("last.ckpt")), weights_only=True)
    assert ckpt["global_step"] == 2
    assert not torch.equal(ckpt["state_dict"]["model.head.weight"], torch.zeros_like(rank0["head.weight"]))
    assert torch.equal(ckpt["state_dict"]["model.head.weight"], rank0["head.weight"])


@pytest.mark.slow
def test_a_rank_killed_mid_run_is_one_line_with_the_resume_command(tmp_path):
    """2-process DDP (ddp: rank 1 is a process running the same command): SIGKILL rank 1 once last.ckpt exists;
    rank 0 printed gloo's 113-line traceback."""
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    argv = ["fit", "--model.name", "vit_c_nano_32px", "--data.dataset", "synthetic", "--data.img_size", "16",
            "--data.synthetic_size", "64", "--data.batch_size", "8", "--data.num_workers", "0",
            "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
            "--trainer.max_epochs", "500", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "runs", "--test_after_fit", "false"]
    proc = subprocess.Popen([sys.executable, "-m", "convvit.cli", *argv], env=env, cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "runs").rglob("last.ckpt")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no last.ckpt in 4 minutes"
            time.sleep(0.2)
        rank1 = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "convvit.cli"], capture_output=True,
                               text=True).stdout.split()
        assert len(rank1) == 1, rank1
        os.kill(int(rank1[0]), signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert "Traceback" not in err and "[rank0]" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("convvit: error: ")]
    assert "rank 1 of 2 stopped" in line and "rank 0 lost its connection" in line
    last = "runs/synthetic-vit_c_nano_32px/version_0/checkpoints/last.ckpt"
    assert f"convvit {shlex.join(argv)} --ckpt_path {last}" in line
