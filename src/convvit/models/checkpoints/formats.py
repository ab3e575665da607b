"""Checkpoint key formats: how a state dict's keys name the weights, and how to rename them to convvit's.

Each model family declares the formats its weights come in (its own, the official code's, Hugging Face's) in
its own file with :func:`register_key_format`; the loader recognises a state dict by asking each format in
turn (most specific first) and renames it by that format's rules. Nothing here names a family.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["KeyFormat", "UNKNOWN", "register_key_format", "key_format", "detect_format", "to_convvit", "rename_keys"]

T = TypeVar("T")


@dataclass(frozen=True)
class KeyFormat:
    """One layout of checkpoint keys.

    Args:
        name: short id, stored as ``source_format`` in converted files (e.g. ``"hf_cvt"``).
        description: what a user is told the file looks like ("an official microsoft/CvT checkpoint").
        detect: ``keys -> bool``; True when a state dict is in this format.
        rules: ``(regex, replacement)`` pairs, applied in order to every key, that give convvit's names.
        models: shell patterns of the registered models whose weights this format holds (for hints).
        metadata: what every file in this format implies (e.g. ``{"act_layer": "gelu"}``).
        reads_hf_config: class names come from the Hugging Face ``config.json`` beside the file.
        priority: formats are asked in descending priority (a format another one's keys also match goes first).
    """

    name: str
    description: str
    detect: Callable[[set[str]], bool]
    rules: tuple[tuple[str, str], ...] = ()
    models: tuple[str, ...] = ("*",)
    metadata: Mapping[str, str] = field(default_factory=dict)
    reads_hf_config: bool = False
    priority: int = 0


UNKNOWN = KeyFormat("unknown", "an unrecognised architecture", detect=lambda keys: False)

_formats: dict[str, KeyFormat] = {}


def register_key_format(fmt: KeyFormat) -> KeyFormat:
    """Make ``fmt`` known to the loader (family files call this at import)."""
    if fmt.name in _formats:
        raise ValueError(f"key format {fmt.name!r} is registered twice")
    _formats[fmt.name] = fmt
    return fmt


def key_format(name: str) -> KeyFormat:
    """The registered format called ``name`` (``UNKNOWN`` for any other name)."""
    return _formats.get(name, UNKNOWN)


def detect_format(keys: set[str]) -> KeyFormat:
    """The first registered format, by priority, that recognises ``keys``; else ``UNKNOWN``."""
    for fmt in sorted(_formats.values(), key=lambda f: -f.priority):
        if fmt.detect(keys):
            return fmt
    return UNKNOWN


def rename_keys(state: Mapping[str, T], rules: tuple[tuple[str, str], ...]) -> dict[str, T]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def to_convvit(state: Mapping[str, T]) -> tuple[dict[str, T], KeyFormat]:
    """``state`` with convvit's key names, and the format it was in."""
    fmt = detect_format(set(state))
    return (rename_keys(state, fmt.rules) if fmt.rules else dict(state)), fmt
