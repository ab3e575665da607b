"""benchmarks/predict.py stays runnable: --smoke times a tiny model in every runtime, and never writes the results."""
import csv

import pytest
from benchmark_scripts import load_script  # tests/benchmark_scripts.py


@pytest.fixture(scope="module")
def bench():
    return load_script("predict", "predict_benchmark")


def test_smoke_times_every_runtime_side_by_side(bench, tmp_path, capsys):
    out = tmp_path / "p.csv"
    bench.main(["--smoke", "--csv", str(out)])
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["runtime"] for r in rows] == ["torch 32", "torch auto", "onnxruntime"]
    assert all(float(r["img_s"]) > 0 and r["cpu"] and r["isa"] for r in rows)
    assert "onnxruntime img/s" in capsys.readouterr().out  # the side-by-side table


def test_smoke_never_writes_over_recorded_results(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--smoke", "--csv", str(bench.RESULTS / "predict_cpu.csv")])
    assert bench.RESULTS not in bench.parse_args(["--smoke"]).csv.parents


def test_tune_smoke_varies_one_setting_at_a_time(bench, tmp_path):
    out = tmp_path / "t.csv"
    rows = bench.main(["--smoke", "--tune", "--no-onnx", "--csv", str(out)])
    chosen = [r for r in rows if r["chosen"]]
    assert len(chosen) == 1
    others = [r for r in rows if not r["chosen"]]
    # each other variant differs from the chosen settings in exactly one of batch, layout, grad mode
    keys = ("batch", "channels_last", "grad_mode")
    assert all(sum(r[k] != chosen[0][k] for k in keys) == 1 for r in others)
