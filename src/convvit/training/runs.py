"""Run directories: ``ROOT/NAME/version_N``, one per run, claimed atomically.

Several runs started at the same moment with the same root and name must not share a folder (their
``metrics.csv`` rows would mix and one ``last.ckpt`` would overwrite another), so a version is taken by
creating its folder, which the file system grants to exactly one process.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from convvit.checkpoints.files import remove_abandoned_temporaries

__all__ = ["versions", "claim_version_dir", "discard_if_unused", "remove_abandoned_writes", "default_run_name"]

_VERSION = re.compile(r"version_(\d+)")
# What a run writes before its first training step: a failed or interrupted start leaves nothing else.
_SETUP_FILES = re.compile(r"config\.yaml|hparams\.yaml|events\.out\.tfevents\..*")


def versions(parent: str | Path) -> list[int]:
    """The N of every ``parent/version_N``."""
    return [int(m.group(1)) for p in Path(parent).glob("version_*") if (m := _VERSION.fullmatch(p.name))]


def claim_version_dir(parent: str | Path) -> Path:
    """Create and return the next free ``parent/version_N``.

    ``mkdir`` without ``exist_ok`` is the claim: when another process created the same version first,
    ``FileExistsError`` sends this one on to the next number.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    version = max(versions(parent), default=-1) + 1
    while True:
        folder = parent / f"version_{version}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            version += 1


def discard_if_unused(folder: str | Path) -> bool:
    """Remove a run folder that holds nothing but what setup writes (config, hparams, an empty event log);
    returns whether it was removed. A run that failed before training leaves no empty ``version_N`` behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if any(p.is_file() and not _SETUP_FILES.fullmatch(p.name) for p in folder.rglob("*")):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def remove_abandoned_writes(*folders: str | Path) -> list[Path]:
    """Delete partial ``.*.tmp`` checkpoint writes left in run folders (and their ``checkpoints/``) by processes
    killed while saving. A file that a running process is still writing is kept."""
    removed: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        for sub in (folder, folder / "checkpoints"):
            if sub.is_dir():
                removed += remove_abandoned_temporaries(sub)
    return removed


def default_run_name(dataset: str, data_path: str | None, model_name: str) -> str:
    """``DATA-MODEL``, after the data actually used: the dataset, or an image folder's own name."""
    data = dataset
    if dataset == "imagefolder" and data_path:
        data = Path(data_path).expanduser().resolve().name or dataset
    return f"{data}-{model_name}"
