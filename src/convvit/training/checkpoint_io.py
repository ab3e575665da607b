"""Atomic checkpoint writes: a run killed while saving keeps its previous checkpoint intact."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Open a temporary file beside ``path`` for binary writing; on success it is synced and renamed onto
    ``path`` (``os.replace``, atomic on POSIX), on any error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
