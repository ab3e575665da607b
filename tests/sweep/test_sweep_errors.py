"""Bad input to convvit sweep: one line `convvit sweep: error: <what> ... Fix: ...`, exit 2, before any training."""
from __future__ import annotations

import importlib.util
import os
import signal
import time

import pytest
from sweep_helpers import MODELS, write_base

from convvit.cli import main as convvit_main
from convvit.sweep.core import Sweep, SweepSpec
from convvit.sweep.results import write_manifest


@pytest.fixture
def base(tmp_path):
    return write_base(tmp_path)


def sweep(tmp_path, base, *extra: str, models: str = MODELS, samples: str = "2") -> list[str]:
    return ["sweep", "--config", str(base), "--models", models, "--optimizers", "adamw,sgd", "--samples", samples,
            "--out", str(tmp_path / "out"), *extra]


def assert_refused(capsys, tmp_path, argv, *words):
    assert convvit_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("convvit sweep: error: ") and "Fix:" in err, err
    for word in words:
        assert word in err, err
    assert not (tmp_path / "out" / "runs").exists()  # nothing trained


@pytest.mark.parametrize("extra, words", [
    (["--lr", "1e-2,1e-4"], ["--lr 1e-2,1e-4", "LOW must be below HIGH"]),
    (["--wd", "0,0.1"], ["--wd 0,0.1", "positive"]),
    (["--lr", "sgd=-1,1"], ["positive"]),
    (["--lr", "lamb=1e-3,1e-2"], ["'lamb' is not one of --optimizers"]),
    (["--address", "auto"], ["--engine ray"]),
    (["--model.lr", "0.1"], ["--model.lr is set by the sweep", "--lr"]),
    (["--trainer.max_epochs", "2", "stray"], ["unexpected argument 'stray'"]),
    (["--parallel", "0"], ["--parallel 0"]),
    (["--trainer.check_val_every_n_epoch", "3"], ["validate every 3", "--trainer.check_val_every_n_epoch 1"]),
])
def test_bad_options(capsys, tmp_path, base, extra, words):
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, *extra), *words)


def test_zero_samples(capsys, tmp_path, base):
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, samples="0"), "--samples 0")


def test_unknown_model_and_optimizer(capsys, tmp_path, base):
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, models="vit_c_nano_32p"), "unknown model 'vit_c_nano_32p'",
                   "did you mean vit_c_nano_32px")
    argv = sweep(tmp_path, base)
    argv[argv.index("adamw,sgd")] = "adamw,lamb"
    assert_refused(capsys, tmp_path, argv, "unknown optimizer 'lamb'", "adamw, sgd")


def test_base_config_that_does_not_load(capsys, tmp_path, base):
    assert_refused(capsys, tmp_path, sweep(tmp_path, tmp_path / "missing.yaml"), "missing.yaml does not exist")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: [unclosed\n")
    assert_refused(capsys, tmp_path, sweep(tmp_path, bad_yaml), "not valid YAML")
    unknown_key = tmp_path / "unknown.yaml"
    unknown_key.write_text(base.read_text().replace("weight_decay:", "weight_decayy:"))
    assert_refused(capsys, tmp_path, sweep(tmp_path, unknown_key), "do not load as `convvit fit` options",
                   "weight_decayy")
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, "--trainer.max_epochz", "2"), "max_epochz")


def test_out_holding_another_sweep(capsys, tmp_path, base):
    spec = SweepSpec(config=str(base), models=MODELS.split(","), optimizers=["adamw", "sgd"], samples=2,
                     out=str(tmp_path / "out"), check_config=False)
    write_manifest(tmp_path / "out", {**Sweep(spec).manifest, "command": "convvit sweep ORIGINAL"})
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, "--seed", "1"), "different sweep", "seed: 0 there, 1 here",
                   "convvit sweep ORIGINAL")
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, models="vit_c_nano_32px"), "models:")
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, "--wd", "1e-3,1e-1"), "ranges:")
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, "--trainer.max_epochs", "3"), "overrides:")
    base.write_text(base.read_text() + "\n# edited\n")
    assert_refused(capsys, tmp_path, sweep(tmp_path, base), "config_sha256")


def test_ray_not_installed(capsys, tmp_path, base, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "ray" else find_spec(name, *a))
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, "--engine", "ray"), "pip install 'convvit[ray]'")


def test_ray_address_nobody_answers(capsys, tmp_path, base):
    pytest.importorskip("ray.tune")
    assert_refused(capsys, tmp_path, sweep(tmp_path, base, "--engine", "ray", "--address", "127.0.0.1:1"),
                   "no Ray cluster answers at --address 127.0.0.1:1", "ray start --head")
    assert not (tmp_path / "out").exists()  # refused before the sweep folder is made


def test_debug_shows_the_traceback(tmp_path, base, capsys, monkeypatch):
    monkeypatch.setenv("CONVVIT_DEBUG", "0")  # restored after the test: --debug sets it to 1 for child processes
    assert convvit_main([*sweep(tmp_path, base, samples="0"), "--debug"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" in err and "SweepError" in err and err.rstrip().splitlines()[-1].startswith("convvit")


def test_read_only_out_names_the_folder_and_its_permissions(capsys, tmp_path, base, monkeypatch):
    import errno

    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)

    def refused(self, *args):  # what open(OUT/.lock, "w") raises for a user who may not write there (root may)
        raise PermissionError(errno.EACCES, "Permission denied", str(out / ".lock"))

    monkeypatch.setattr(Sweep, "run", refused)
    try:
        assert convvit_main(sweep(tmp_path, base)) == 1
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--debug" not in err, err
    assert f"{out / '.lock'}: permission denied (in {out}); {out} is dr-xr-xr-x" in err and f"chmod u+w {out}" in err


@pytest.mark.parametrize("signum, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_a_stopped_sweep_says_how_to_resume(tmp_path, base, capsys, monkeypatch, signum, code, name):
    from convvit.sweep import core

    def stopped(spec, command):
        os.kill(os.getpid(), signum)  # a scheduler's SIGTERM, or Ctrl-C, while trials run
        time.sleep(30)  # interrupted before this returns
        return 0

    monkeypatch.setattr(core, "run_sweep", stopped)
    # Ctrl-C as an interactive process gets it: a background job of a non-interactive shell (`bash .ci/run &`)
    # starts with SIGINT ignored, which Python and the sweep rightly keep, so the test sets Python's own handler
    sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGTERM)
        assert convvit_main(sweep(tmp_path, base)) == code
        assert capsys.readouterr().err == (f"convvit sweep: interrupted ({name}); the trials that were running "
                                           "stopped. Run the same command again to resume\n")
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGINT, sigint)
