"""Writing files so that readers see all or nothing: the one atomic writer every file convvit writes goes through
(checkpoints, exports, weights, sweep results, figures). Imports nothing heavy: the sweep and explain use it too."""
from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
from pathlib import Path

from convvit.errors import disk_full_error, is_disk_full

__all__ = ["atomic_write", "atomic_write_bytes", "new_file_mode", "remove_abandoned_temporaries"]

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


@contextlib.contextmanager
def atomic_write(path: PathLike):
    """Open a temporary file beside ``path`` for binary writing; on success it is synced and renamed onto
    ``path`` (``os.replace``, atomic on POSIX), on any error it is removed and ``path`` is left as it was."""
    path = Path(path)
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
