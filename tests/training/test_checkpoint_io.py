"""Checkpoints are written atomically: a failure (or kill) mid-save leaves the previous checkpoint intact."""
from __future__ import annotations

import io
import os
import stat

import pytest
import torch
from conftest import STEPS_PER_EPOCH, fit, run_dir

from convvit.training.checkpoint_io import AtomicCheckpointIO


class _DiskFull(OSError):
    pass


def _failing_save(real_save, fail_on_call: int):
    """torch.save that writes half of the bytes of its ``fail_on_call``-th checkpoint file, then fails."""
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        if isinstance(f, io.BufferedWriter):  # a checkpoint file being written (not a path or an in-memory buffer)
            calls["n"] += 1
            if calls["n"] == fail_on_call:
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                raise _DiskFull("simulated failure in the middle of writing a checkpoint")
        return real_save(obj, f, *args, **kwargs)

    return save


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    io_plugin = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io_plugin.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _failing_save(torch.save, fail_on_call=1))
    with pytest.raises(_DiskFull):
        io_plugin.save_checkpoint({"step": 2, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind
    assert io_plugin.load_checkpoint(path)["step"] == 1


def test_run_killed_while_saving_resumes_from_the_previous_checkpoint(tmp_path, monkeypatch):
    # save the latest state after every step; the 3rd save (after step 3) fails half-way through
    every_step = ["--last_checkpoint.every_n_train_steps", "1", "--checkpoint.save_top_k", "0",
                  "--trainer.max_epochs", "2", "--test_after_fit", "false"]
    with monkeypatch.context() as m:
        m.setattr(torch, "save", _failing_save(torch.save, fail_on_call=3))
        with pytest.raises(_DiskFull):
            fit(tmp_path, *every_step)
    ckpt_path = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt_path, weights_only=True)["global_step"] == 2  # the previous checkpoint, intact
    assert fit(tmp_path, *every_step, "--ckpt_path", str(ckpt_path)) == 0
    resumed = torch.load(run_dir(tmp_path, version=1) / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 2 * STEPS_PER_EPOCH


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoints_and_weights_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    from convvit.models.checkpoints import save_weights

    old = os.umask(umask)
    try:
        AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, tmp_path / "last.ckpt")
        save_weights(torch.nn.Linear(2, 2), tmp_path / "final.safetensors")
    finally:
        os.umask(old)
    for name in ("last.ckpt", "final.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name  # mkstemp alone gives 0o600


def test_run_files_share_one_mode(trained_run):
    ckpts = list((trained_run / "checkpoints").glob("*.ckpt"))
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [*ckpts, trained_run / "final.safetensors"]}
    assert set(modes.values()) == {stat.S_IMODE((trained_run / "metrics.csv").stat().st_mode)}, modes
