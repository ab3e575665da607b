"""The sweep tests' shared 2 x 2 x 2 sweep: killed part way and resumed (used by the sweep, plot and Ray tests)."""
from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
import time

import pytest
from sweep_helpers import env, rows_of, sweep_args, wait_for_orphans, write_base

from convvit.sweep.results import RESULTS, read_results


@pytest.fixture(scope="session")
def killed_and_resumed(tmp_path_factory) -> dict:
    """The 2 x 2 x 2 sweep, SIGKILLed after its first rows are written, then run again to the end with the
    same arguments. Returns the rows before the kill, the rows at the end, the folder and the resume's output."""
    from convvit.cli.sweep import main

    folder = tmp_path_factory.mktemp("sweep")
    base, out = write_base(folder), folder / "out"
    args = sweep_args(base, out)
    proc = subprocess.Popen([sys.executable, "-m", "convvit.cli", "sweep", *args], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while len([r for r in rows_of(out) if r["status"] in ("finished", "diverged")]) < 2:
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.monotonic() < deadline, "the sweep wrote no results in 5 minutes"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = rows_of(out)
    wait_for_orphans(out)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(args)
    return {"before": before, "after": read_results(out / RESULTS), "out": out, "base": base, "code": code,
            "output": buf.getvalue(), "args": args}
