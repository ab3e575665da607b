"""``convvit explain``: attention rollout figures, and ``convvit explain distance``: attention distance by depth.

The command parses its own arguments (it has a ``distance`` sub-command); see :mod:`convvit.explain.command`.
"""
from __future__ import annotations

from collections.abc import Sequence


def run_argv(argv: Sequence[str]) -> int:
    """Run ``convvit explain ...`` (``argv[0]`` is the command's name)."""
    from convvit.explain.command import run

    return run(list(argv[1:]))
