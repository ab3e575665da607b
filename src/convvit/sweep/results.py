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
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# atomic_write_text stays importable from here for the report scripts that do
from convvit.fileio import atomic_write_text, from_spreadsheet_safe, write_csv
from convvit.sweep.space import SweepError

__all__ = [
    "COLUMNS", "RESULTS", "MANIFEST", "DONE", "atomic_write_text", "write_results", "read_results",
    "parse_results", "ResultsError",
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
_STATUSES = (*DONE, "failed", "interrupted")


class ResultsError(SweepError):
    """A results.csv that cannot be read: the message names the file, the row and the fix."""


def _rebuild_fix(path: Path) -> str:
    return (f"Fix: move it aside (mv {path} {path}.bad) and run the `convvit sweep` command that wrote it again: "
            f"it rebuilds {RESULTS} from the run folders")


def _parse_row(raw: Mapping[str, str]) -> dict[str, Any]:
    """One row with numbers as numbers (``None`` for empty cells) and ``diverged`` as a bool; ValueError saying
    which cell is wrong."""
    row: dict[str, Any] = {k: from_spreadsheet_safe(v) for k, v in raw.items()}
    if not row["trial"]:
        raise ValueError("it has no trial name")
    for key, kind in [*((k, int) for k in _INT), *((k, float) for k in _FLOAT)]:
        try:
            row[key] = kind(raw[key]) if raw[key] else None
        except ValueError:
            raise ValueError(f"its {key} is {raw[key]!r}, not a number") from None
    if raw["diverged"].lower() not in ("true", "false", ""):
        raise ValueError(f"its diverged is {raw['diverged']!r}, not true or false")
    row["diverged"] = raw["diverged"].lower() == "true"
    if row["status"] not in _STATUSES:
        raise ValueError(f"its status is {raw['status']!r}, not one of {', '.join(_STATUSES)}")
    return row


def parse_results(path: str | Path, check_run_dirs: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a results.csv that parse (see :func:`read_results`), and one line for each that does not:
    ``row N (trial T): what is wrong`` -- a wrong number of values, a value that is not a number or a known
    status, and with ``check_run_dirs`` a finished or diverged row whose run_dir does not exist (e.g. the file
    was cut inside that row). A file that is not a results table at all (not text, another header) raises
    :class:`ResultsError`; an empty file has no rows."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ResultsError(f"{path} is not a {RESULTS} of `convvit sweep`: row {line} holds bytes that are not "
                           f"text (UTF-8). {_rebuild_fix(path)}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise ResultsError(f"{path} is not a {RESULTS} of `convvit sweep`: row 1 cannot be read as CSV ({err}). "
                           f"{_rebuild_fix(path)}") from None
    if header is None:
        return [], []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ResultsError(f"{path} is not a {RESULTS} of `convvit sweep`: row 1 (its header) lacks the column(s) "
                           f"{', '.join(missing)}. {_rebuild_fix(path)}")
    rows, problems = [], []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:  # the rest of the file is unreadable: its trials are rebuilt too
            problems.append(f"row {reader.line_num}: it cannot be read as CSV ({err})")
            break
        if not cells:
            continue
        where = f"row {reader.line_num} (trial {cells[0]!r})"
        if len(cells) != len(header):
            problems.append(f"{where}: it has {len(cells)} values, the header {len(header)}")
            continue
        try:
            row = _parse_row(dict(zip(header, cells)))
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        if (check_run_dirs and row["status"] in DONE
                and not (row["run_dir"] and (path.parent / row["run_dir"]).is_dir())):
            problems.append(f"{where}: its run_dir {row['run_dir']!r} does not exist")
            continue
        rows.append(row)
    return rows, problems


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a results.csv with numbers as numbers (``None`` for empty cells) and ``diverged`` as a bool;
    :class:`ResultsError` (one line: the file, the row, the fix) for a file or a row that does not parse."""
    rows, problems = parse_results(path)
    if problems:
        more = f" (and {len(problems) - 1} more damaged row(s))" if len(problems) > 1 else ""
        raise ResultsError(f"{path} is damaged: {problems[0]}{more}. Fix: run the `convvit sweep` command that "
                           "wrote it again: it rebuilds damaged rows from the run folders")
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
