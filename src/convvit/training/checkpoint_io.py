"""Atomic checkpoint writes: a run killed while saving keeps its previous checkpoint intact.

The writing itself is :func:`convvit.checkpoints.files.atomic_write`, shared with every other writer.
"""
from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from safetensors import SafetensorError

from convvit.checkpoints.files import atomic_write, is_safetensors_file, load_error
from convvit.errors import CheckpointError, ConvvitError, DiskFullError, disk_full_error

__all__ = ["AtomicCheckpointIO", "explained_load_errors"]


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
        if is_safetensors_file(path) and not isinstance(err, SafetensorError):  # read, but weights only
            raise CheckpointError(
                f"{path} is a .safetensors weights file, not a training checkpoint. Fix: pass a run's "
                f"checkpoints/*.ckpt to --ckpt_path; to start training from these weights, use "
                f"--model.init_checkpoint {path}"
            ) from None
        raise load_error(path, err) from None
