"""Writing files so that readers see all or nothing: the one atomic writer every file convvit writes goes through
(checkpoints, exports, weights, sweep results, CSVs, figures). Imports nothing heavy (matplotlib only when a figure
is saved): the sweep and explain use it too."""
from __future__ import annotations

import contextlib
import csv
import glob
import io
import os
import re
import socket
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from convvit.errors import ReadOnlyFileError, disk_full_error, is_disk_full

__all__ = [
    "atomic_write", "atomic_write_bytes", "atomic_write_text", "new_file_mode", "remove_abandoned_temporaries",
    "spreadsheet_safe",
    "from_spreadsheet_safe", "csv_text", "write_csv", "refuse_read_only", "allow_replacing", "pyplot", "save_figure",
]

PathLike = str | os.PathLike


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask can only be read by setting it, racing other threads)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file (0o666 less the umask, e.g. 0o644).

    Files written through ``tempfile.mkstemp`` and renamed into place start as 0o600; they get this mode
    before the rename so that checkpoints and exports are as readable as every other file of a run.
    """
    return 0o666 & ~_umask()


# Temporary files are named ``.TARGET.HOST-PID.RANDOM.tmp``: the writer's host and pid tell a later run whether
# a leftover file is abandoned (its writer is gone) or still being written.
_HOST = socket.gethostname().split(".")[0] or "localhost"
_TEMPORARY = re.compile(r"\.(?P<host>[^.]+)-(?P<pid>\d+)\.\w+\.tmp")


def _writer_is_alive(name: str) -> bool:
    match = _TEMPORARY.search(name)
    if match is None:
        return False  # an older naming without the writer: nothing is writing it any more
    if match["host"] != _HOST:
        return True  # another machine's process (a shared file system): it cannot be checked from here
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_abandoned_temporaries(folder: PathLike, target: str = "*") -> list[Path]:
    """Delete the temporary files of ``atomic_write`` in ``folder`` (for ``target``, or any file) whose writer
    is no longer running, e.g. killed in the middle of a save; returns the removed paths."""
    removed = []
    pattern = target if target == "*" else glob.escape(target)
    for stale in Path(folder).glob(f".{pattern}.*.tmp"):
        if not _writer_is_alive(stale.name):
            with contextlib.suppress(OSError):
                stale.unlink()
                removed.append(stale)
    return removed


def _read_only_mode(path: PathLike) -> int | None:
    """The mode of ``path`` when it is a file nobody may write to, else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return mode if stat.S_ISREG(mode) and not mode & 0o222 else None


def refuse_read_only(path: PathLike) -> None:
    """Raise :class:`ReadOnlyFileError` when ``path`` is an existing file with no write permission.

    A rename replaces a file whatever its mode (only the folder's matters), and root may write any file, so
    without this check a file its owner protected would be replaced without a word."""
    mode = _read_only_mode(path)
    if mode is not None:
        raise ReadOnlyFileError(
            f"{path} exists and is read-only ({stat.filemode(mode)}), so it was not replaced. Fix: write to another "
            f"path, or, to replace it, pass --force where the command has it (or make it writable: chmod u+w {path})"
        )


def allow_replacing(path: PathLike) -> None:
    """``--force``: let the next write replace ``path`` even if it is read-only (its owner's write bit is set)."""
    mode = _read_only_mode(path)
    if mode is not None:
        os.chmod(path, stat.S_IMODE(mode) | stat.S_IWUSR)


@contextlib.contextmanager
def atomic_write(path: PathLike):
    """Open a temporary file beside ``path`` for binary writing; on success it is synced and renamed onto
    ``path`` (``os.replace``, atomic on POSIX), on any error it is removed and ``path`` is left as it was.
    A read-only ``path`` is refused (:func:`refuse_read_only`)."""
    path = Path(path)
    refuse_read_only(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temporaries(path.parent, path.name)  # left by a process killed mid-write
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, Exception) and is_disk_full(err):
            raise disk_full_error(path, path.exists()) from err
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` with :func:`atomic_write`; the path."""
    with atomic_write(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`: readers see all of it or the old file."""
    return atomic_write_bytes(path, text.encode())


# ----------------------------------------------------------------------------------------------------- CSV
# A cell a spreadsheet would run as a formula (OWASP, "CSV Injection"): it begins with one of these.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _needs_quote(text: str) -> bool:
    if text.startswith("'"):  # so that from_spreadsheet_safe can tell a quote it added from one that was there
        return _needs_quote(text[1:])
    return text.startswith(_FORMULA_START) and not _is_number(text)  # -0.5 is a number, not a formula


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a CSV cell that a spreadsheet shows as text: a string beginning with ``= + - @`` (or tab, CR)
    gets a leading ``'``, as OWASP recommends; numbers (``-0.5`` too) and every other value are unchanged.

    Python's csv module quotes separators but not formulas, and no library we use does this."""
    return "'" + value if isinstance(value, str) and _needs_quote(value) else value


def from_spreadsheet_safe(text: str) -> str:
    """The value :func:`spreadsheet_safe` was given, from the cell it returned (for CSVs convvit reads back)."""
    return text[1:] if text.startswith("'") and _needs_quote(text[1:]) else text


def _formatted(cell: Any, float_format: str | None) -> Any:
    if float_format is not None and isinstance(cell, float):
        return format(cell, float_format)
    return cell


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any] | Sequence[Any]],
             float_format: str | None = None) -> str:
    """A CSV table (header first, ``\\n`` line ends) of ``rows`` -- mappings by column name (keys not in
    ``columns`` are left out) or sequences in column order -- with every cell made :func:`spreadsheet_safe`.
    ``float_format`` (a :func:`format` spec such as ``".6g"``) writes float cells with it instead of ``repr``.

    Every CSV convvit writes goes through here: cells may hold names a user chose (files, class folders, runs)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([spreadsheet_safe(c) for c in columns])
    for row in rows:
        cells = [row.get(c) for c in columns] if isinstance(row, Mapping) else row
        writer.writerow([spreadsheet_safe(_formatted(cell, float_format)) for cell in cells])
    return buf.getvalue()


def write_csv(path: PathLike, columns: Sequence[str], rows: Iterable[Mapping[str, Any] | Sequence[Any]],
              force: bool = False, float_format: str | None = None) -> Path:
    """Write :func:`csv_text` to ``path`` atomically (UTF-8); returns the path. ``force`` replaces a read-only
    file (see :func:`allow_replacing`)."""
    if force:
        allow_replacing(path)
    return atomic_write_bytes(path, csv_text(columns, rows, float_format).encode())


# ------------------------------------------------------------------------------------------------- figures
def pyplot():
    """``matplotlib.pyplot`` drawing to files only (the Agg backend): no display is needed, or wanted, on a server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: PathLike, dpi: int = 120, tight: bool = True) -> Path:
    """Save a matplotlib figure as PNG to ``path`` atomically and close it; returns the path.

    matplotlib's ``savefig`` writes the file in place, so a run killed mid-save would leave half a PNG under the
    real name: the figure is rendered to memory and written with :func:`atomic_write_bytes`. ``tight`` crops to
    the drawn area (``bbox_inches="tight"``); figures laid out by ``constrained_layout`` pass False."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    finally:
        pyplot().close(fig)
    return atomic_write_bytes(path, buffer.getvalue())
