"""The Ray engine on a local Ray instance (2 trials at a time, one CPU each): the same rows as the local engine."""
from __future__ import annotations

import signal

import pytest
from sweep_helpers import sweep_args

from convvit.cli.sweep import main
from convvit.sweep.results import read_manifest, read_results

pytest.importorskip("ray.tune", reason="the Ray engine needs the ray extra (pip install 'convvit[ray]')")


def test_ray_engine_matches_local(killed_and_resumed, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # CI has no network: Ray should not try to report usage
    # one sample of adamw: a prefix of the local sweep's trials (samples do not depend on the sample count)
    args = sweep_args(killed_and_resumed["base"], tmp_path / "ray", "--engine", "ray", samples=1, optimizers="adamw")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert main(args) == 0
    # Tune's SIGINT handler is not left behind: a later Ctrl-C in this process still raises KeyboardInterrupt
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    out = capsys.readouterr().out
    assert "engine ray" in out and "[2/2]" in out and "2/2 trials done" in out
    rows = read_results(tmp_path / "ray" / "results.csv")
    local = {r["trial"]: r for r in killed_and_resumed["after"]}
    assert [r["trial"] for r in rows] == ["vit_c_nano_32px-adamw-s000", "vit_p_nano_32px-adamw-s000"]
    for row in rows:
        assert (tmp_path / "ray" / row["run_dir"] / "metrics.csv").is_file()
        expected = local[row["trial"]]
        # apart from seconds, and the version folder (the local sweep re-ran trials its kill interrupted)
        same = [k for k in row if k not in ("seconds", "run_dir")]
        assert {k: row[k] for k in same} == {k: expected[k] for k in same}
        assert row["run_dir"].split("/")[:2] == expected["run_dir"].split("/")[:2]
    assert (read_manifest(tmp_path / "ray")["ranges"]["adamw"]
            == read_manifest(killed_and_resumed["out"])["ranges"]["adamw"])
    # resumable as the local engine: the same command runs nothing again
    assert main(args) == 0
    assert "2 done, 0 to run" in capsys.readouterr().out
