"""The precision benchmark stays runnable: fp32 and bf16 figures and their ratio for one small case."""
import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "precision.py"


def test_precision_script_reports_both_precisions(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("precision_benchmark", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["precision_benchmark"] = mod
    spec.loader.exec_module(mod)
    out = tmp_path / "p.csv"
    row = mod.measure("vit_c_nano_32px", 16, 1, 8, rounds=1, iters=1)
    assert row["fp32_img_s"] > 0 and row["bf16_img_s"] > 0 and row["gmacs"] > 0
    mod.write_csv([row], out)
    assert out.read_text().startswith("model,img_size,in_chans,batch,gmacs,fp32_img_s,bf16_img_s,bf16_over_fp32")
