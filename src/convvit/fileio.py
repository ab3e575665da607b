"""Helpers shared by the writers of checkpoints and exported files."""
from __future__ import annotations

import os

__all__ = ["new_file_mode"]


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
