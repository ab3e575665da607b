"""A sweep's files: ``results.csv`` (one row per trial) and ``sweep.json`` (what was asked for), both written
atomically (a temporary file in the same folder, then ``os.replace``): a sweep killed while writing leaves the
previous version, never half a file.

Errors in results.csv are top-1 errors in percent on the *validation* split each trial trained with (the
``val_split`` column: ``train-holdout`` when ``--data.val_fraction`` held part of the training set out,
``val`` for an image folder's own ``val/``; ``test`` only when the data has no validation split and none was
held out). The test split is never used to rank trials.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from convvit.fileio import atomic_write_bytes, from_spreadsheet_safe, write_csv

__all__ = [
    "COLUMNS", "RESULTS", "MANIFEST", "DONE", "atomic_write_text", "write_results", "read_results",
    "write_manifest", "read_manifest", "chance_error", "format_row",
]

RESULTS, MANIFEST = "results.csv", "sweep.json"
COLUMNS = (
    "trial", "model", "optimizer", "sample", "lr", "wd", "epochs", "seed",
    "best_error", "final_error", "diverged", "status", "val_split", "num_classes", "seconds", "run_dir",
)
# Statuses of a trial that is over: the sweep does not run it again. "failed" (a crash) and a trial never
# recorded are run again when the sweep is resumed.
DONE = ("finished", "diverged")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with the one atomic writer: readers see all of it or the old file."""
    return atomic_write_bytes(path, text.encode())


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-2 else f"{value:.4g}"
    return str(value)


def format_row(row: Mapping[str, Any]) -> dict[str, str]:
    """A result row as results.csv writes it (errors to 4 decimals, lr/wd as sampled, empty for none)."""
    out = {key: _cell(row.get(key)) for key in COLUMNS}
    for key in ("lr", "wd"):  # sampled to 3 significant digits: written as they were passed to the trial
        if row.get(key) is not None:
            out[key] = repr(float(row[key]))
    return out


def write_results(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    return write_csv(path, COLUMNS, (format_row(row) for row in rows))


_INT = ("sample", "epochs", "seed", "num_classes")
_FLOAT = ("lr", "wd", "best_error", "final_error", "seconds")


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a results.csv with numbers as numbers (``None`` for empty cells) and ``diverged`` as a bool."""
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {k: from_spreadsheet_safe(v) if isinstance(v, str) else v for k, v in raw.items()}
            for key in _INT:
                row[key] = int(raw[key]) if raw.get(key) else None
            for key in _FLOAT:
                row[key] = float(raw[key]) if raw.get(key) else None
            row["diverged"] = (raw.get("diverged") or "").lower() == "true"
            rows.append(row)
    return rows


def chance_error(num_classes: int | None) -> float:
    """The top-1 error (%) of guessing: what a diverged run (NaN weights) is worth."""
    return 100.0 * (1 - 1 / num_classes) if num_classes else 100.0


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    return atomic_write_text(Path(folder) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def sort_rows(rows: Iterable[Mapping[str, Any]], order: Sequence[str]) -> list[Mapping[str, Any]]:
    """Rows in the sweep's trial order (trials it no longer plans, after a shorter --samples, last)."""
    index = {trial: i for i, trial in enumerate(order)}
    return sorted(rows, key=lambda r: (index.get(r["trial"], len(index)), r["trial"]))
