"""Which options a ``convvit fit | validate | test`` command line gives: read once, for every caller.

:func:`given_options` reads a command line the way jsonargparse (under LightningCLI) does, without importing
Lightning or torch: ``--key value`` and ``--key=value``, the append form ``--key+ value`` / ``--key+=value``,
``--config FILE`` (or inline YAML), a group given as a whole (``--model FILE``, ``--model.distillation
'{alpha: 0.1}'``), a group in a config file given as another file (``model: model.yaml``, relative to the file
that names it) and the ``class_path`` / ``init_args`` form. Later settings win, as in parsing. The CLI uses it
to tell what a resumed run was given explicitly, the sweep to read a trial's settings, and :func:`unknown_option`
to answer a mistyped option at once.

Option *names* are the constructors' parameter names. LightningCLI knows them only after importing Lightning,
torch and the classes it is built on (seconds on a small machine); here the model's come from
:mod:`convvit.training.settings` (standard library only) and the others are read from the source files with
:mod:`ast`, importing nothing. Only names that are certainly unknown are reported: values, and names below a
group's first level (``--trainer.logger.init_args.name``), are left to jsonargparse.
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from convvit.data.settings import data_setting_names
from convvit.training.settings import model_setting_names

__all__ = ["Given", "close_options", "given_options", "option_tokens", "unknown_option"]

_PACKAGE = Path(__file__).resolve().parents[1]  # src/convvit
COMMAND_LINE = "command line"


def _lightning_file(relative: str) -> Path | None:
    spec = importlib.util.find_spec("lightning")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _trainer_file() -> Path | None:
    return _lightning_file("pytorch/trainer/trainer.py")


# group -> (source file, class, method or None for a dataclass's fields): what LightningCLI builds each group's
# options from. "model.distillation" is a group inside a group (a dataclass parameter).
_GROUPS = {
    "model": (None, "ImageClassifier", None),  # convvit.training.settings declares them (importing no torch)
    "model.distillation": (lambda: _PACKAGE / "training" / "distillation.py", "Distillation", None),
    "data": (None, "ImageDataModule", None),  # convvit.data.settings declares them (importing no torch)
    "trainer": (_trainer_file, "Trainer", "__init__"),
    "checkpoint": (lambda: _lightning_file("pytorch/callbacks/model_checkpoint.py"), "ModelCheckpoint", "__init__"),
    "last_checkpoint": (lambda: _PACKAGE / "training" / "callbacks.py", "LastCheckpoint", "__init__"),
}
# Top-level options convvit's parser has besides the groups and the Trainer method's own (ckpt_path, verbose...).
_TOP_LEVEL = frozenset({"config", "print_config", "help", "seed_everything", "name", "test_after_fit"})
# The Trainer method parameters LightningCLI.subcommands() fills itself instead of offering them as options.
_NOT_OPTIONS = frozenset({"self", "model", "datamodule", "dataloaders", "train_dataloaders", "val_dataloaders"})


@dataclass(frozen=True)
class Given:
    """One setting a command line gives: its value as written (a string on the command line, a YAML value in a
    config) and where: :data:`COMMAND_LINE` or the config file that set it."""

    value: Any
    source: str = COMMAND_LINE


# ------------------------------------------------------------------------------------------------ reading
def option_tokens(argv: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """``(option, value)`` for each ``--option`` in ``argv``, its value inline (``--k=v``) or the next token (None
    when there is none, or the next token is an option); a token that is neither yields ``("", token)``."""
    expect_value = False
    for i, token in enumerate(argv):
        if token.startswith("--"):
            option, has_value, value = token.partition("=")
            if has_value:
                yield option, value
                expect_value = False
            else:
                following = argv[i + 1] if i + 1 < len(argv) else None
                expect_value = following is not None and not following.startswith("--")
                yield option, following if expect_value else None
        elif expect_value:
            expect_value = False
        else:
            yield "", token


def given_options(
        argv: Sequence[str], config: Mapping[str, Any] | None = None, config_path: str | None = None,
) -> dict[str, Given]:
    """The settings ``argv`` gives, as ``{"model.lr": Given("3e-3"), "data.batch_size": Given(64, "c.yaml")}``,
    each key once with its last value. ``argv``: the options after the command. ``config``: a config already
    loaded from ``config_path``, read as if ``--config config_path`` came first."""
    given: dict[str, Given] = {}
    if config is not None:
        _read_config(given, "", config, config_path or COMMAND_LINE, _folder(config_path))
    for option, value in option_tokens(argv):
        key = option[2:].removesuffix("+")  # "+": jsonargparse's append to a list (a setting given all the same)
        if not key:
            continue
        if key == "config" or key in _GROUPS:
            _read_config_text(given, "" if key == "config" else key, value, None)
        else:
            given[key] = Given(value)
    return given


def _folder(path: str | None) -> Path | None:
    return Path(path).parent if path and Path(path).is_file() else None


def _read_config_text(given: dict[str, Given], prefix: str, text: Any, folder: Path | None) -> None:
    """A config given as a file path (relative to ``folder``, the file naming it, else the working directory)
    or as inline YAML; anything that does not load as a mapping is left to jsonargparse to refuse."""
    if not isinstance(text, str):
        return
    file = (folder / text) if folder is not None and not Path(text).is_absolute() else Path(text)
    source = str(file) if file.is_file() else COMMAND_LINE
    try:
        loaded = yaml.safe_load(file.read_text() if file.is_file() else text)
    except (OSError, yaml.YAMLError):
        return
    if isinstance(loaded, dict):
        _read_config(given, prefix, loaded, source, file.parent if file.is_file() else folder)


def _read_config(given: dict[str, Given], prefix: str, config: Mapping[str, Any], source: str,
                 folder: Path | None) -> None:
    for name, value in config.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if key in _GROUPS and isinstance(value, dict):
            _read_config(given, key, value, source, folder)
        elif key in _GROUPS and isinstance(value, str):  # the group's settings in another file
            _read_config_text(given, key, value, folder)
        else:
            given[key] = Given(value, source)


# ------------------------------------------------------------------------------------------------ names
@functools.cache
def _parameters(path: Path, class_name: str, method: str | None) -> frozenset[str] | None:
    """The keyword parameters of ``class_name.method`` in ``path`` (its annotated fields when ``method`` is None,
    a dataclass); None when they cannot be read for sure."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            if method is None:
                return frozenset(i.target.id for i in node.body
                                 if isinstance(i, ast.AnnAssign) and isinstance(i.target, ast.Name))
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == method:
                    args = item.args
                    if args.kwarg is not None:  # **kwargs forwarded elsewhere: the full list is not here
                        return None
                    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
                    return frozenset(n for n in names if n != "self")
    return None


def _group_names(group: str) -> frozenset[str] | None:
    if group == "model":
        nested = {g.split(".")[1] for g in _GROUPS if g.startswith("model.")}
        return frozenset(model_setting_names()) | nested
    if group == "data":
        return frozenset(data_setting_names())
    locate, class_name, method = _GROUPS[group]
    path = locate()
    return _parameters(path, class_name, method) if path is not None else None


def _top_level_names(command: str) -> frozenset[str] | None:
    trainer = _trainer_file()
    method = _parameters(trainer, "Trainer", command) if trainer is not None else None
    if method is None:
        return None
    return _TOP_LEVEL | {g for g in _GROUPS if "." not in g} | (method - _NOT_OPTIONS)


def _judge(key: str, command: str) -> tuple[bool | None, str, str]:
    """Whether ``key`` is an option (None when that cannot be told without jsonargparse), with the group it was
    looked up in ("" for the top level) and the name looked up there."""
    parts = key.split(".")
    depth = next(d for d in range(len(parts) - 1, -1, -1) if d == 0 or ".".join(parts[:d]) in _GROUPS)
    group = ".".join(parts[:depth])
    names = _group_names(group) if group else _top_level_names(command)
    if names is None:
        return None, group, parts[depth]
    if parts[depth] not in names:
        return False, group, parts[depth]
    # below a setting of the group: a dict's items, a Lightning class's init_args... are jsonargparse's to judge
    return (True if depth == len(parts) - 1 else None), group, parts[depth]


def close_options(group: str, key: str) -> list[str]:
    """``group.name`` options close to a mistyped ``group.key`` (another group when ``group`` is unknown)."""
    if group not in _GROUPS:
        return [f"{g}.{key}" for g in difflib.get_close_matches(group, list(_GROUPS), n=1)]
    names = _group_names(group) or frozenset()
    return [f"{group}.{c}" for c in difflib.get_close_matches(key, sorted(names), n=3, cutoff=0.6)]


def unknown_option(argv: Sequence[str], command: str = "fit") -> str | None:
    """The error message for the first option ``argv`` gives (on the command line or in a config file it names)
    that ``convvit COMMAND`` certainly does not have, else None."""
    for key, given in given_options(argv).items():
        known, group, name = _judge(key, command)
        if known is not False:
            continue
        if group:
            close = close_options(group, name)
        elif "." in key:  # a mistyped group
            close = close_options(*key.split(".")[:2])
        else:
            close = difflib.get_close_matches(key, sorted(_top_level_names(command) or ()), n=1)
        if given.source == COMMAND_LINE:
            hint = f" (did you mean {' or '.join(f'--{c}' for c in close)}?)" if close else ""
            return f"unrecognized option --{key}{hint}"
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""  # spelled as a config file spells it
        return f"unknown key {key} in {given.source}{hint}"
    return None
