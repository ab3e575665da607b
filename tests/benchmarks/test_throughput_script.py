"""The benchmark script stays runnable (tiny sizes; the figures themselves are not asserted)."""

from benchmark_scripts import load_script  # tests/benchmark_scripts.py


def test_throughput_script_runs_tiny(tmp_path):
    mod = load_script("throughput")
    out = tmp_path / "t.csv"
    rows = mod.main(["--img-size", "32", "--batch-size", "2", "--rounds", "1", "--iters", "1", "--warmup", "1",
                     "--num-classes", "10", "--csv", str(out)])
    assert len(rows) == 4 and all(r["ratio"] > 0 for r in rows)
    assert out.read_text().startswith("model,peer,mode,precision")
