"""Failures a user can cause get one line, `convvit: error: <what, which file>. Fix: ...`, and exit status 1:
damaged or foreign checkpoint files on every command that reads one, a corrupt image met mid-epoch, a full disk."""
from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import lightning  # noqa: F401  (imported here: its log handler keeps the sys.stderr of the test that imports it)
import pytest
import torch
from conftest import TINY, fit
from PIL import Image

from convvit.cli import main


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _bad_file(kind: str, folder: Path, good_ckpt: Path) -> Path:
    if kind == "empty":
        path = folder / "empty.ckpt"
        path.write_bytes(b"")
    elif kind == "truncated":
        path = folder / "cut.ckpt"
        data = good_ckpt.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_a_checkpoint":
        path = folder / "notes.ckpt"
        path.write_text("these are not the weights you are looking for\n")
    elif kind == "onnx":  # what `torch.onnx.export` writes: a protobuf, field 1 ir_version, field 2 producer_name
        path = folder / "model.onnx"
        path.write_bytes(b"\x08\x09\x12\x07pytorch\x1a\x062.5.0" + bytes(64))
    elif kind == "code":
        path = folder / "evil.ckpt"
        torch.save({"state_dict": {}, "payload": _RunsCode(folder / "pwned")}, path)
    elif kind == "bad_safetensors":
        path = folder / "weights.safetensors"
        path.write_bytes((20).to_bytes(8, "little") + b'{"a": not json at all')
    else:
        raise ValueError(kind)
    return path


def _argv(command: str, ckpt: Path, tmp_path: Path) -> list[str]:
    if command == "predict":
        image = tmp_path / "one.png"
        Image.new("RGB", (16, 16), (10, 200, 10)).save(image)
        return ["predict", "--ckpt_path", str(ckpt), str(image), "--output", str(tmp_path / "p.csv")]
    if command == "export":
        return ["export", "--ckpt_path", str(ckpt), "--format", "safetensors", "--output", str(tmp_path / "w.st")]
    return [command, *TINY, "--trainer.default_root_dir", str(tmp_path / "runs"), "--ckpt_path", str(ckpt)]


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("convvit: error: ")]
    assert len(lines) == 1, err
    return lines[0]


KINDS = ["empty", "truncated", "not_a_checkpoint", "onnx", "code", "bad_safetensors"]
# fit and test build a whole Lightning run before they read the file: three kinds cover their path
CASES = [(c, k) for c in ("predict", "export") for k in KINDS] + [
    (c, k) for c in ("test", "fit") for k in ("truncated", "code", "bad_safetensors")
]


@pytest.mark.parametrize("command, kind", CASES)
def test_bad_checkpoint_file_is_one_line(trained_run, tmp_path, capsys, command, kind):
    bad = _bad_file(kind, tmp_path, trained_run / "checkpoints" / "last.ckpt")
    assert main(_argv(command, bad, tmp_path)) == 1
    line = _error_line(capsys.readouterr().err)
    assert str(bad) in line and "Fix:" in line
    if kind == "code":
        assert "holds code" in line and "refused" in line and "weights_only" not in line
        assert not (tmp_path / "pwned").exists()
    elif kind == "empty":
        assert "empty" in line
    elif kind in ("truncated", "bad_safetensors"):
        assert "truncated" in line
    elif kind == "not_a_checkpoint":  # it was called a file holding code, with torch.save as the fix
        assert "is not a checkpoint" in line and "b'these ar'" in line and "holds code" not in line
    elif kind == "onnx":
        assert "is an ONNX model" in line and "onnxruntime" in line and "holds code" not in line
    assert "skip_bad_images" not in line


def test_plain_weights_given_to_resume_say_what_to_use(trained_run, tmp_path, capsys):
    weights = trained_run / "final.safetensors"
    assert main(_argv("fit", weights, tmp_path)) == 1
    line = _error_line(capsys.readouterr().err)
    assert "not a training checkpoint" in line and f"--model.init_checkpoint {weights}" in line


def test_corrupt_image_met_mid_epoch_in_a_worker_is_one_line(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for _c, name in enumerate(("ant", "bee")):
            folder = tmp_path / "images" / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = (torch.rand(12, 12, 3, generator=g) * 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    bad = tmp_path / "images" / "train" / "bee" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    args = list(TINY)
    args[args.index("--data.dataset") + 1] = "imagefolder"
    args[args.index("--data.num_workers") + 1] = "1"
    rc = main(["fit", *args, "--data.path", str(tmp_path / "images"), "--trainer.default_root_dir",
               str(tmp_path / "runs"), "--test_after_fit", "false"])
    assert rc == 1
    err = capsys.readouterr().err
    line = _error_line(err)
    assert str(bad) in line and "--data.skip_bad_images true" in line
    assert "DataLoader worker" not in err


def _save_runs_out_of_space(real_save, fail_on_call: int):
    """torch.save whose ``fail_on_call``-th checkpoint file gets half its bytes, then ENOSPC (a full disk)."""
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        if isinstance(f, io.BufferedWriter):
            calls["n"] += 1
            if calls["n"] == fail_on_call:
                buffer = io.BytesIO()
                real_save(obj, buffer, *args, **kwargs)
                f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    return save


def test_disk_full_while_saving_is_one_line_naming_the_intact_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch, "save", _save_runs_out_of_space(torch.save, fail_on_call=3))
    rc = fit(tmp_path, "--last_checkpoint.every_n_train_steps", "1", "--checkpoint.save_top_k", "0",
             "--test_after_fit", "false")
    assert rc == 1
    line = _error_line(capsys.readouterr().err)
    assert "no space left on the device while writing" in line and "last.ckpt is intact" in line
    assert "--ckpt_path" in line and "--trainer.default_root_dir" in line


@pytest.mark.parametrize("extra, words", [
    (["--trainer.max_epochs", "0"], "--trainer.max_epochs 0 trains nothing"),  # it wrote final.safetensors
    (["--model.lr", "-1"], "--model.lr -1 is not a learning rate: it must be a positive number"),
    (["--model.lr", "nan"], "--model.lr nan is not a learning rate: it must be a finite number"),  # "Expected a float"
])
def test_runs_that_would_do_nothing_are_refused_before_a_run_folder(tmp_path, capsys, extra, words):
    assert fit(tmp_path / "runs", *extra) != 0
    line = _error_line(capsys.readouterr().err)
    assert words in line and "Fix: " in line, line
    assert not any(p.is_file() for p in (tmp_path / "runs").rglob("*"))  # no run folder, no final weights
