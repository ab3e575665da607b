"""Atomic checkpoint writes: a run killed while saving keeps its previous checkpoint intact."""
from __future__ import annotations

import contextlib
import glob
import os
import pickle
import re
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors import SafetensorError

from convvit.errors import ConvvitError, DiskFullError, disk_full_error, is_disk_full
from convvit.fileio import new_file_mode

__all__ = ["AtomicCheckpointIO", "atomic_write", "explained_load_errors", "remove_abandoned_temporaries"]

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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, but local files are written to a temporary file in the same folder
    and moved into place with ``os.replace`` (remote fsspec paths keep Lightning's transaction)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        local = str(path)[len("file://"):] if str(path).startswith("file://") else path
        try:
            with atomic_write(local) as f:
                torch.save(checkpoint, f)
        except DiskFullError as err:
            kept = Path(local).exists()
            then = f"then resume with --ckpt_path {local}" if kept else "then run again"
            fix = f"free space on that disk, or pass --trainer.default_root_dir on one with room; {then}"
            raise disk_full_error(local, kept, fix) from err

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with explained_load_errors(path):
            return super().load_checkpoint(path, *args, **kwargs)


@contextlib.contextmanager
def explained_load_errors(path: Any) -> Iterator[None]:
    """Turn torch's errors for a checkpoint it cannot read (raw zip-reader messages, or, for a file that holds
    code, advice to load it with ``weights_only=False``) into a :class:`CheckpointError` naming the file and
    the fix."""
    try:
        yield
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, SafetensorError) as err:
        if isinstance(err, ConvvitError) or not isinstance(get_filesystem(path), LocalFileSystem):
            raise
        from convvit.models.weights import CheckpointError, is_safetensors_file, load_error

        if is_safetensors_file(path) and not isinstance(err, SafetensorError):  # read, but weights only
            raise CheckpointError(
                f"{path} is a .safetensors weights file, not a training checkpoint. Fix: pass a run's "
                f"checkpoints/*.ckpt to --ckpt_path; to start training from these weights, use "
                f"--model.init_checkpoint {path}"
            ) from None
        raise load_error(path, err) from None
