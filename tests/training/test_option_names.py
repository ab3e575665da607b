"""Mistyped `--group.key` options of fit/validate/test are answered before Lightning (or torch) is imported."""
from __future__ import annotations

import argparse
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


def test_given_options_reads_each_setting_once_with_the_file_that_set_it(tmp_path):
    from convvit.training.option_names import Given, given_options

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.yaml").write_text("lr: 0.1\nweight_decay: 0.2\ndistillation: {tau: 2.0}\n")
    (tmp_path / "base.yaml").write_text("model: sub/model.yaml\ntrainer: {max_epochs: 3}\n")
    argv = ["--config", str(tmp_path / "base.yaml"), "--model.lr=0.3", "--trainer.callbacks+", "X", "--print_config"]
    assert given_options(argv) == {
        "model.lr": Given("0.3"),  # the last one wins, as in parsing
        "model.weight_decay": Given(0.2, str(tmp_path / "sub" / "model.yaml")),
        "model.distillation.tau": Given(2.0, str(tmp_path / "sub" / "model.yaml")),
        "trainer.max_epochs": Given(3, str(tmp_path / "base.yaml")),
        "trainer.callbacks": Given("X"),
        "print_config": Given(None),
    }


# ---------------------------------------------------------------------------------- the same verdict as jsonargparse
def _write(folder, name, text):
    (folder / name).write_text(text)
    return str(folder / name)


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """Config files as users write them: one naming another (relative to itself), a group's own file, typos."""
    folder = tmp_path_factory.mktemp("configs")
    sub = folder / "sub"
    sub.mkdir()
    _write(sub, "model.yaml", "lr: 0.01\ndistillation: {alpha: 0.3}\n")
    _write(sub, "model_typo.yaml", "lr: 0.01\nlrr: 0.02\n")
    return {
        "nested": _write(folder, "nested.yaml", "model: sub/model.yaml\ndata: {batch_size: 16}\n"),
        "nested_typo": _write(folder, "nested_typo.yaml", "model: sub/model_typo.yaml\n"),
        "distillation": _write(folder, "distillation.yaml", "alpha: 0.2\ntau: 2.0\n"),
        "init_args": _write(folder, "init_args.yaml", "model:\n  class_path: convvit.training.module.ImageClassifier\n"
                                                      "  init_args: {lr: 0.02}\n"),
        "by_command": _write(folder, "by_command.yaml", "fit:\n  model: {lr: 0.03}\n"),
        "plain": _write(folder, "plain.yaml", "trainer: {max_epochs: 3}\nmodel: {lr: 0.04}\n"),
    }


COMMAND_LINES = [  # (command line, names in it the parser refuses); {name} stands for configs[name]
    (["fit", "--config", "{nested}"], False),
    (["fit", "--config", "{nested_typo}"], True),
    (["fit", "--config", "{plain}", "--config", "{nested}", "--model.lr=0.2"], False),
    (["fit", "--config", "{init_args}"], True),  # convvit's groups take no class_path / init_args
    (["fit", "--model.init_args.lr", "0.5"], True),
    (["fit", "--config", "{by_command}"], True),  # a config for `convvit fit` has no `fit:` section
    (["fit", "--model.distillation", "{distillation}", "--model.distillation.type", "none"], False),
    (["fit", "--model.distillation", "{{alpah: 0.1}}"], True),
    (["fit", "--config", "{{model: {{distillation: {{alpha: 0.1}}}}, data: {{batch_size: 8}}}}"], False),
    (["fit", "--config", "{{trainer: {{max_epoch: 2}}}}"], True),
    (["fit", "--model.model_kwargs", "{{global_pool: avg}}", "--data", "{{batch_size: 8}}"], False),
    (["fit", "--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping",
      "--trainer.callbacks.monitor", "x"], False),
    (["fit", "--seed_everything", "1", "--name", "n", "--test_after_fit", "false"], False),
    (["fit", "--seed_everythin", "1"], True),  # argparse would take it for --seed_everything
    (["fit", "--trainer.max_epoch", "1"], True),
    (["fit", "--verbose", "false"], True),
    (["fit", "--model.model_kwargs.global_pool", "avg"], False),  # an item of a dict setting
    (["test", "--verbose", "false", "--ckpt_path", "none.ckpt"], False),
]


@pytest.fixture(scope="module")
def parsed_defaults():
    from convvit.training.lightning_cli import parse_options

    return {cmd: _leaves(parse_options([cmd])[cmd].as_dict()) for cmd in ("fit", "test")}


@pytest.mark.parametrize("line, refused", COMMAND_LINES)
def test_the_fast_check_and_jsonargparse_agree(configs, parsed_defaults, line, refused):
    """The command line is refused by both or by neither, and every setting the parse changes from its default
    is one :func:`given_options` read (it is what a resumed run and the sweep go by)."""
    from convvit.training.lightning_cli import parse_options
    from convvit.training.option_names import given_options

    argv = [token.format(**configs) for token in line]
    fast = unknown_option(argv[1:], argv[0])
    try:
        parsed, why = parse_options(argv), ""
    except argparse.ArgumentError as err:
        parsed, why = None, str(err)
    assert (fast is not None) == refused == (parsed is None), (fast, why)
    if parsed is not None:
        given = given_options(argv[1:])
        changed = {k for k, v in _leaves(parsed[argv[0]].as_dict()).items()
                   if parsed_defaults[argv[0]].get(k) != v and not k.endswith("__path__")}  # __path__: the file read
        changed -= {"config", "print_config"}
        assert all(any(k == g or k.startswith(f"{g}.") for g in given) for k in changed), (changed, given)


def _leaves(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
