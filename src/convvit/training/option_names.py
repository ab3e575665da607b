"""A mistyped ``--group.key`` option of ``convvit fit | validate | test``, caught before Lightning is imported.

LightningCLI knows the options only after importing Lightning, torch and the classes it is built on (seconds on a
small machine). The option *names* are the constructors' parameter names, which can be read from the source files
with :mod:`ast` without importing anything, so a typo is answered at once. Only names that are certainly unknown
are reported; values, config files and everything else are still checked by LightningCLI itself.
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from pathlib import Path
from typing import Sequence

__all__ = ["close_options", "unknown_option"]

_PACKAGE = Path(__file__).resolve().parents[1]  # src/convvit


def _lightning_file(relative: str) -> Path | None:
    spec = importlib.util.find_spec("lightning")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / relative


# group -> (source file, class): the classes LightningCLI builds each group's options from.
_GROUPS = {
    "model": (lambda: _PACKAGE / "training" / "module.py", "ImageClassifier"),
    "data": (lambda: _PACKAGE / "data" / "datamodule.py", "ImageDataModule"),
    "trainer": (lambda: _lightning_file("pytorch/trainer/trainer.py"), "Trainer"),
    "checkpoint": (lambda: _lightning_file("pytorch/callbacks/model_checkpoint.py"), "ModelCheckpoint"),
    "last_checkpoint": (lambda: _PACKAGE / "training" / "callbacks.py", "LastCheckpoint"),
}


@functools.lru_cache(maxsize=None)
def _init_parameters(path: Path, class_name: str) -> frozenset[str] | None:
    """The keyword parameters of ``class_name.__init__`` in ``path``; None when they cannot be read for sure."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = item.args
                    if args.kwarg is not None:  # **kwargs forwarded elsewhere: the full list is not here
                        return None
                    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
                    return frozenset(n for n in names if n != "self")
    return None


def _group_names(group: str) -> frozenset[str] | None:
    locate, class_name = _GROUPS[group]
    path = locate()
    return _init_parameters(path, class_name) if path is not None else None


def close_options(group: str, key: str) -> list[str]:
    """``group.name`` options close to a mistyped ``group.key`` (another group when ``group`` is unknown)."""
    if group not in _GROUPS:
        return [f"{g}.{key}" for g in difflib.get_close_matches(group, list(_GROUPS), n=1)]
    names = _group_names(group) or frozenset()
    return [f"{group}.{c}" for c in difflib.get_close_matches(key, sorted(names), n=3, cutoff=0.6)]


def unknown_option(argv: Sequence[str]) -> str | None:
    """The error message for the first ``--group.key`` in ``argv`` that no constructor takes, else None."""
    for arg in argv:
        if not arg.startswith("--") or "." not in arg:
            continue
        group, key = arg[2:].split("=", 1)[0].split(".", 2)[:2]
        key = key.rstrip("+")  # jsonargparse's "append" form, e.g. --trainer.callbacks+
        if group in _GROUPS:  # the CLI has no other dotted groups
            names = _group_names(group)
            if names is None or key in names:
                continue
        close = close_options(group, key)
        hint = f" (did you mean {' or '.join(f'--{c}' for c in close)}?)" if close else ""
        return f"unrecognized option --{group}.{key}{hint}"
    return None
