"""The benchmark script stays runnable (tiny sizes; the figures themselves are not asserted)."""

from benchmark_scripts import load_script  # tests/benchmark_scripts.py


def test_throughput_script_runs_tiny(tmp_path):
    mod = load_script("throughput")
    out = tmp_path / "t.csv"
    rows = mod.main(["--img-size", "32", "--batch-size", "2", "--rounds", "1", "--iters", "1", "--warmup", "1",
                     "--num-classes", "10", "--csv", str(out)])
    assert len(rows) == 4 and all(r["ratio"] > 0 for r in rows)
    assert out.read_text().startswith("model,peer,mode,precision")


def test_throughput_profile_accounts_for_the_step(capsys):
    mod = load_script("throughput")
    mod.main(["--pairs", "deit_small", "--img-size", "32", "--batch-size", "2", "--rounds", "1", "--iters", "1",
              "--warmup", "1", "--num-classes", "10", "--precisions", "fp32", "--modes", "train", "--profile"])
    table = {line[:50].strip(): line[50:].split() for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ") and not line.startswith("  profile")}
    assert set(table) == {*mod.OP_KINDS, mod.OTHER, mod.TOTAL}
    for side in (0, 1):  # convvit, peer: every kind counted once, and the step did multiply matrices
        assert abs(sum(float(v[side]) for k, v in table.items() if k != mod.TOTAL)
                   - float(table[mod.TOTAL][side])) < 0.5
        assert float(table["matrix products (mm, addmm, bmm)"][side]) > 0


def test_op_kinds():
    mod = load_script("throughput")
    assert mod.op_kind("aten::addmm") == "matrix products (mm, addmm, bmm)"
    assert mod.op_kind("aten::_scaled_dot_product_flash_attention_for_cpu_backward") == "fused attention (SDPA kernels)"
    assert mod.op_kind("aten::native_batch_norm_backward") == "norms"
    assert mod.op_kind("aten::gelu") == mod.OTHER
