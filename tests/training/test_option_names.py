"""Mistyped `--group.key` options of fit/validate/test are answered before Lightning (or torch) is imported."""
from __future__ import annotations

import subprocess
import sys

import pytest

from convvit.training.option_names import unknown_option


@pytest.mark.parametrize("argv, expected", [
    (["--model.nmae", "x"], "--model.nmae (did you mean --model.name?)"),
    (["--trainer.max_epoch=3"], "--trainer.max_epochs"),
    (["--modle.name", "x"], "--modle.name (did you mean --model.name?)"),
    (["--data.batchsize", "8"], "--data.batch_size"),
    (["--checkpoint.monitr", "val/acc1"], "--checkpoint.monitor"),
])
def test_unknown_names_are_reported_with_a_suggestion(argv, expected):
    message = unknown_option(["--config", "c.yaml", *argv])
    assert message is not None and expected in message


@pytest.mark.parametrize("argv", [
    ["--model.name", "vit_c_4gf", "--model.lr=3e-3", "--data.dataset", "synthetic"],
    ["--trainer.max_epochs", "2", "--trainer.callbacks+", "x", "--trainer.logger.init_args.name", "n"],
    ["--last_checkpoint.every_n_train_steps", "5", "--checkpoint.save_top_k", "1", "--seed_everything", "1"],
    ["--config", "configs/fashion_mnist/vit_c.yaml", "--print_config"],
])
def test_known_names_pass(argv):
    assert unknown_option(argv) is None


def test_a_typo_in_fit_is_one_line_without_importing_torch():
    code = ("import sys\nfrom convvit.cli import main\nrc = main(['fit', '--trainer.max_epoch', '2'])\n"
            "print('torch' in sys.modules)\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout.strip() == "False"
    assert proc.stderr.count("convvit: error: ") == 1 and "did you mean --trainer.max_epochs" in proc.stderr
