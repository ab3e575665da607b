"""The benchmark script stays runnable (tiny sizes; the figures themselves are not asserted)."""
import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


def test_throughput_script_runs_tiny(tmp_path):
    spec = importlib.util.spec_from_file_location("throughput", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    out = tmp_path / "t.csv"
    rows = mod.main(["--img-size", "32", "--batch-size", "2", "--rounds", "1", "--iters", "1", "--warmup", "1",
                     "--num-classes", "10", "--csv", str(out)])
    assert len(rows) == 4 and all(r["ratio"] > 0 for r in rows)
    assert out.read_text().startswith("model,peer,mode,precision")
