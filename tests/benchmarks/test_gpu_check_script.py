"""The GPU check stays runnable: its --smoke mode runs the whole script at tiny sizes on the CPU."""
import csv

import pytest
from benchmark_scripts import load_script  # tests/benchmark_scripts.py


@pytest.fixture(scope="module")
def gpu_check():
    return load_script("gpu_check")


def test_smoke_run_writes_every_section(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu.csv"
    gpu_check.main(["--smoke", "--pairs", "vit_c_4gf", "--csv", str(out)])
    with open(out) as f:
        rows = list(csv.DictReader(f))
    sections = {r["section"] for r in rows}
    assert {"machine", "warmup", "train", "mfu", "loader", "infer"} <= sections and "error" not in sections
    ratio = next(r for r in rows if r["item"] == "vit_c_4gf ratio convvit/peer")
    assert float(ratio["value"]) > 0
    loader = next(r for r in rows if r["item"] == "imagefolder device pipeline")
    assert float(loader["value"]) > 0
    printed = capsys.readouterr().out
    assert "vit_c_4gf" in printed and "convvit vit_p_4gf" in printed  # the side-by-side table


def test_without_a_gpu_only_smoke_runs(gpu_check, monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="no CUDA GPU"):
        gpu_check.main(["--pairs", "deit_small", "--csv", str(tmp_path / "gpu.csv")])


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA H200", 989.4), ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA A100-SXM4-80GB", 312.0), ("Some Future GPU", None),
])
def test_datasheet_peak_matches_cuda_names(gpu_check, name, expected):
    assert gpu_check.datasheet_peak(name)[0] == expected


def test_recorded_results_are_never_replaced_by_default(gpu_check, tmp_path, monkeypatch, capsys):
    recorded = gpu_check.RECORDED
    assert recorded.is_file()
    with pytest.raises(SystemExit):  # a real run names its output
        gpu_check.parse_args(["--pairs", "deit_small"])
    assert "name the output: --csv benchmarks/results/gpu.csv" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # CPU smoke figures never go where the recorded ones are
        gpu_check.parse_args(["--smoke", "--csv", str(recorded)])
    assert "--smoke figures are not results" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert gpu_check.parse_args(["--smoke"]).csv == gpu_check.SMOKE_CSV  # runs/benchmarks/, in the working folder


def test_infer_only_runs_just_the_inference_table(gpu_check, tmp_path, monkeypatch):
    import convvit.precision

    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(convvit.precision, "cpu_bf16_flags", lambda: [])
    out = tmp_path / "gpu.csv"
    gpu_check.main(["--smoke", "--infer-only", "--csv", str(out)])
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert {r["section"] for r in rows} == {"machine", "warmup", "infer"}
    infer = [r for r in rows if r["section"] == "infer"]
    assert [r["item"].split(" ", 1)[1] for r in infer] == ["32 (32)", "auto (32)"]  # no GPU, no bf16 units
    assert all(float(r["value"]) > 0 for r in infer)
