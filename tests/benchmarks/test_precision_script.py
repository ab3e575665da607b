"""The precision benchmark stays runnable: fp32 and bf16 figures and their ratio for one small case."""

from benchmark_scripts import load_script  # tests/benchmark_scripts.py


def test_precision_script_reports_both_precisions(tmp_path, capsys):
    mod = load_script("precision", "precision_benchmark")
    out = tmp_path / "p.csv"
    row = mod.measure("vit_c_nano_32px", 16, 1, 8, rounds=1, iters=1)
    assert row["fp32_img_s"] > 0 and row["bf16_img_s"] > 0 and row["gmacs"] > 0
    mod.write_csv([row], out)
    assert out.read_text().startswith("model,img_size,in_chans,batch,gmacs,fp32_img_s,bf16_img_s,bf16_over_fp32")
