"""convvit.fileio: the one atomic writer behind checkpoints, exports, sweep results and figures."""
from __future__ import annotations

import os
import stat

import pytest

from convvit.explain.figures import write_csv
from convvit.fileio import atomic_write, atomic_write_bytes
from convvit.sweep.results import atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_writer_gives_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:  # sweep results and explain CSVs were 0600 (mkstemp's mode) before they shared the checkpoint writer
        paths = [atomic_write_text(tmp_path / "results.csv", "a,b\n"), atomic_write_bytes(tmp_path / "x.bin", b"1"),
                 write_csv(tmp_path / "d.csv", ["h"], [("1",)])]
    finally:
        os.umask(old)
    assert [_mode(p) for p in paths] == [0o644] * 3
    assert (tmp_path / "results.csv").read_text() == "a,b\n"


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "results.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temporary left behind
