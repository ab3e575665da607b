"""A run's life: it always leaves a checkpoint, never shares a folder, resumes what the command line says,
says when it was interrupted, and prints what a person can follow (issue 11, items 1-4 and 9)."""
from __future__ import annotations

import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import MODEL, STEPS_PER_EPOCH, TINY, fit, run_dir

from convvit.cli import main
from convvit.training.module import ImageClassifier
from convvit.training.runs import claim_version_dir

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _hparams(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]


def _step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]


# ---------------------------------------------------------------------------------------------- 1. a checkpoint, always
def test_a_run_shorter_than_the_validation_cadence_leaves_last_ckpt(tmp_path, capsys):
    assert fit(tmp_path, "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "3",
               "--test_after_fit", "false") == 0
    ckpts = run_dir(tmp_path) / "checkpoints"
    assert [p.name for p in ckpts.glob("*.ckpt")] == ["last.ckpt"]  # no validation, so no best checkpoint
    assert _step(ckpts / "last.ckpt") == 2 * STEPS_PER_EPOCH
    err = capsys.readouterr().err
    assert "--trainer.max_epochs 2 is less than --trainer.check_val_every_n_epoch 3" in err


def test_last_ckpt_is_written_after_every_epoch(tmp_path):
    seen = []
    start = ImageClassifier.on_train_epoch_start

    def record(self):
        last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
        seen.append(_step(last) if last.exists() else None)
        start(self)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(ImageClassifier, "on_train_epoch_start", record)
        assert fit(tmp_path, "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "6",
                   "--test_after_fit", "false") == 0
    assert seen == [None, STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


# ---------------------------------------------------------------------------------------------- 2. one folder per run
def test_runs_started_together_claim_distinct_version_folders(tmp_path):
    barrier = threading.Barrier(8)
    claimed = []

    def claim():
        barrier.wait()
        claimed.append(claim_version_dir(tmp_path / "name"))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in claimed) == [f"version_{i}" for i in range(8)]


def _claim_in_process(parent: str, barrier, queue) -> None:
    barrier.wait()
    queue.put(str(claim_version_dir(parent)))


def test_processes_started_together_claim_distinct_version_folders(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(str(tmp_path / "name"), barrier, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    claimed = sorted(Path(queue.get(timeout=60)).name for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert claimed == ["version_0", "version_1", "version_2"]


# ---------------------------------------------------------------------------------------------- 3. resume what is said
@pytest.fixture(scope="module")
def vit_p_run(tmp_path_factory) -> Path:
    """One epoch of vit_p_nano_32px with lr 3e-3."""
    root = tmp_path_factory.mktemp("vit_p")
    assert fit(root, "--model.name", "vit_p_nano_32px", "--model.lr", "3e-3", "--test_after_fit", "false") == 0
    return run_dir(root, name="synthetic-vit_p_nano_32px") / "checkpoints" / "last.ckpt"


def test_resuming_with_another_model_name_is_an_error(vit_p_run, tmp_path, capsys):
    # TINY says --model.name vit_c_nano_32px
    assert fit(tmp_path, "--trainer.max_epochs", "2", "--ckpt_path", str(vit_p_run)) == 1
    err = capsys.readouterr().err
    assert "--model.name vit_c_nano_32px conflicts with the checkpoint being resumed" in err
    assert f"({vit_p_run} was trained as vit_p_nano_32px)" in err
    assert f"--model.init_checkpoint {vit_p_run}" in err
    assert not list(tmp_path.rglob("version_*"))  # nothing was trained


def test_resuming_with_another_lr_is_an_error_even_at_its_default(vit_p_run, tmp_path, capsys):
    args = ["--model.name", "vit_p_nano_32px", "--trainer.max_epochs", "2", "--ckpt_path", str(vit_p_run)]
    assert fit(tmp_path, *args, "--model.lr", "1e-3") == 1  # 1e-3 is ImageClassifier's default lr
    assert "--model.lr 0.001 conflicts with the checkpoint being resumed" in capsys.readouterr().err
    # the same settings, or none, resume
    assert fit(tmp_path, *args, "--model.lr", "0.003", "--test_after_fit", "false") == 0
    assert _step(run_dir(tmp_path, name="synthetic-vit_p_nano_32px") / "checkpoints" / "last.ckpt") == 8


def test_a_conflicting_config_file_names_the_file(vit_p_run, tmp_path, capsys):
    config = tmp_path / "recipe.yaml"
    config.write_text("model:\n  name: vit_p_nano_32px\n  weight_decay: 0.1\n")
    rc = main(["fit", *TINY, "--config", str(config), "--model.name", "vit_p_nano_32px",
               "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(vit_p_run)])
    assert rc == 1
    assert f"--model.weight_decay 0.1 (set in {config}) conflicts" in capsys.readouterr().err


def test_init_checkpoint_starts_new_training_from_the_weights(vit_p_run, tmp_path):
    assert fit(tmp_path, "--model.name", "vit_p_nano_32px", "--model.lr", "1e-3",
               "--model.init_checkpoint", str(vit_p_run), "--test_after_fit", "false") == 0
    ckpt = run_dir(tmp_path, name="synthetic-vit_p_nano_32px") / "checkpoints" / "last.ckpt"
    assert _hparams(ckpt)["lr"] == 1e-3 and _step(ckpt) == STEPS_PER_EPOCH  # new settings, new schedule


def test_the_nan_advice_names_commands_that_work(tmp_path, monkeypatch, capsys):
    forward = ImageClassifier.forward

    def poisoned(self, x):
        out = forward(self, x)
        return out * float("nan") if self.training and self.global_step >= STEPS_PER_EPOCH + 1 else out

    with monkeypatch.context() as m:
        m.setattr(ImageClassifier, "forward", poisoned)
        assert fit(tmp_path, "--trainer.max_epochs", "2", "--model.lr", "0.05") == 1
    err = capsys.readouterr().err
    init = re.search(r"--model\.init_checkpoint (\S+) --model\.lr (\S+)", err)
    resume = re.search(r"--ckpt_path (\S+) --trainer\.gradient_clip_val (\S+)", err)
    assert init and resume, err
    assert init.group(2) == "0.005"
    # both commands run (the advice to lower the lr no longer meets the checkpoint's own lr)
    assert fit(tmp_path, "--trainer.max_epochs", "1", "--test_after_fit", "false", *init.group(0).split()) == 0
    assert fit(tmp_path, "--trainer.max_epochs", "2", "--model.lr", "0.05", "--test_after_fit", "false",
               *resume.group(0).rstrip(".").split()) == 0


# ---------------------------------------------------------------------------------------------- 4. interrupted runs
def _with_a_loader_worker() -> list[str]:
    args = list(TINY)
    args[args.index("--data.num_workers") + 1] = "1"
    return args


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_run_saves_says_so_and_exits_nonzero(tmp_path, signum, code):
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    args = [*_with_a_loader_worker(), "--trainer.max_epochs", "10000", "--trainer.default_root_dir", str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "convvit.cli", "fit", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the first epoch's last.ckpt: training is under way, with a loader worker
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signum)  # the whole process group, as a scheduler or a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "DataLoader worker" not in err, err
    match = re.search(r"interrupted \(SIG\w+\) at epoch \d+/10000 step (\d+); resume with --ckpt_path (\S+)", err)
    assert match, err
    assert Path(match.group(2)) == last and _step(last) == int(match.group(1))  # the latest step is saved


def test_a_partial_write_left_by_a_killed_save_is_removed_by_the_next_run(tmp_path):
    assert fit(tmp_path, "--test_after_fit", "false") == 0
    ckpts = run_dir(tmp_path) / "checkpoints"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = __import__("socket").gethostname().split(".")[0]
    partial = ckpts / f".last.ckpt.{host}-{int(dead.stdout)}.x1y2z3ab.tmp"
    partial.write_bytes(b"half a checkpoint")
    live = ckpts / f".last.ckpt.{host}-{os.getpid()}.q9w8e7rt.tmp"  # a process still writing it: kept
    live.write_bytes(b"being written")
    assert fit(tmp_path, "--trainer.max_epochs", "2", "--test_after_fit", "false",
               "--ckpt_path", str(ckpts / "last.ckpt")) == 0
    assert not partial.exists() and live.exists()


# ---------------------------------------------------------------------------------------------- 9. readable output
def _image_folder(root: Path, splits=("train", "val"), classes=("cat", "dog")) -> Path:
    from PIL import Image

    for split in splits:
        for c, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (16, 16), (c * 120 + i, 40, 90)).save(root / split / name / f"{i}.png")
    return root


def _folder_args(path: Path) -> list[str]:
    args = list(TINY)
    args[args.index("--data.dataset") + 1] = "imagefolder"
    return [*args, "--data.path", str(path), "--data.batch_size", "4"]


def test_a_run_is_named_after_the_data_used(tmp_path):
    data = _image_folder(tmp_path / "pets")
    rc = main(["fit", "--config", str(CONFIGS / "fashion_mnist" / "vit_c.yaml"), *_folder_args(data),
               "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "runs"),
               "--test_after_fit", "false"])
    assert rc == 0
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [f"pets-{MODEL}"]


def test_fit_prints_a_line_per_epoch_and_the_accuracy_of_the_split_it_used(tmp_path, capfd, caplog):
    data = _image_folder(tmp_path / "pets")  # no test/ folder: the final accuracy is the validation split's
    rc = main(["fit", *_folder_args(data), "--trainer.max_epochs", "2", "--trainer.enable_model_summary", "true",
               "--trainer.default_root_dir", str(tmp_path / "runs")])
    assert rc == 0
    out, err = capfd.readouterr()
    lines = out.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2, out
    assert re.fullmatch(r"epoch 2/2  loss \d+\.\d{4}  val top-1 \d+\.\d\d%  \d+ img/s  \d+\.\d s", epochs[1]), epochs
    assert "\r" not in out and "\x1b" not in out  # plain lines, as readable in a log file as in a terminal
    assert any(re.fullmatch(r"validation top-1 \d+\.\d\d%  top-5 \d+\.\d\d%  \(the data has no test split\)", line)
               for line in lines), out
    logged = out + err + caplog.text  # Lightning logs through its own handler
    assert "Trainable params" in logged  # the model summary, without its FLOPs that always read 0
    assert "FLOPs" not in logged and "Total Flops" not in logged
    assert "litlogger" not in logged and "💡" not in logged


def test_fit_names_the_test_split_when_there_is_one(tmp_path, capsys):
    data = _image_folder(tmp_path / "pets", splits=("train", "val", "test"))
    assert main(["fit", *_folder_args(data), "--trainer.default_root_dir", str(tmp_path / "runs")]) == 0
    assert re.search(r"^test top-1 \d+\.\d\d%  top-5", capsys.readouterr().out, re.M)


def test_a_run_that_fails_in_setup_leaves_no_version_folder(tmp_path, capsys):
    args = list(TINY)
    args[args.index("--data.dataset") + 1] = "fashion_mnist"  # read at setup, after the run folder is claimed
    rc = main(["fit", *args, "--data.path", str(tmp_path / "missing"), "--trainer.default_root_dir",
               str(tmp_path / "runs")])
    assert rc == 1
    assert "error" in capsys.readouterr().err
    assert not list((tmp_path / "runs").rglob("version_*"))


def test_a_resumed_run_keeps_its_name(tmp_path):
    root = tmp_path / "runs"
    assert fit(root, "--name", "rz") == 0
    last = run_dir(root, name="rz") / "checkpoints" / "last.ckpt"
    assert fit(root, "--ckpt_path", str(last), "--trainer.max_epochs", "2") == 0
    assert sorted(p.name for p in root.iterdir()) == ["rz"]  # it went to runs/synthetic-MODEL/
    assert (run_dir(root, 1, name="rz") / "checkpoints" / "last.ckpt").is_file()
    moved = tmp_path / "elsewhere.ckpt"  # the name is kept in the checkpoint, not only in its path
    moved.write_bytes(last.read_bytes())
    assert fit(root, "--ckpt_path", str(moved), "--trainer.max_epochs", "2", "--name", "other") == 0
    assert fit(root, "--ckpt_path", str(moved), "--trainer.max_epochs", "2") == 0
    assert sorted(p.name for p in root.iterdir()) == ["other", "rz"] and run_dir(root, 2, name="rz").is_dir()
