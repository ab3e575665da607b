"""Atomic checkpoint writes: a run killed while saving keeps its previous checkpoint intact."""
from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_write", "remove_abandoned_temporaries"]

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


def remove_abandoned_temporaries(folder: str | os.PathLike, target: str = "*") -> list[Path]:
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
def atomic_write(path: str | os.PathLike):
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
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, but local files are written to a temporary file in the same folder
    and moved into place with ``os.replace`` (remote fsspec paths keep Lightning's transaction)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        local = str(path)[len("file://"):] if str(path).startswith("file://") else path
        with atomic_write(local) as f:
            torch.save(checkpoint, f)
