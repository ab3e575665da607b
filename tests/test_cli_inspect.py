"""The model-inspection commands of `convvit` (training commands are tested under tests/training)."""
import json
import subprocess
import sys

import pytest

from convvit.cli import main


def test_info_json_has_integer_fields(capsys):
    assert main(["info", "vit_c_4gf", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"params", "flops", "acts"} <= set(out)
    assert all(isinstance(out[k], int) for k in ("params", "flops", "acts"))
    assert out["flops"] == pytest.approx(4.0e9, rel=0.02)


def test_info_table_shows_paper_figures(capsys):
    assert main(["info", "vit_p_1gf"]) == 0
    out = capsys.readouterr().out
    assert "vit_p_1gf" in out and "1.1 / 4.8 / 5.5" in out


def test_info_img_size_changes_the_count(capsys):
    main(["info", "vit_c_1gf", "--json"])
    full = json.loads(capsys.readouterr().out)
    main(["info", "vit_c_1gf", "--img-size", "112", "--json"])
    small = json.loads(capsys.readouterr().out)
    assert small["flops"] < full["flops"] / 3 and small["params"] < full["params"]


def test_models_pattern(capsys):
    assert main(["models", "vit_c_*gf"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 4 and "vit_c_18gf" in "".join(lines)


def test_unknown_model_names_close_matches(capsys):
    assert main(["info", "vit_c_4g"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'vit_c_4g'" in err and "vit_c_4gf" in err


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "convvit.cli", "info", "deit_tiny", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"] == 5717416


def test_readme_model_table_is_what_convvit_models_prints(capsys):
    """The README's model table, published figures included, is the output of `convvit models` (one source)."""
    import pathlib
    import re

    assert main(["models", "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    table = re.findall(r"^\| (\w+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (.*) \|$", readme, re.M)
    assert {t[0] for t in table} == set(rows)
    for name, size, params, flops, acts, paper in table:
        r = rows[name]
        assert (size, params, flops, acts) == (str(r["size"]), r["params"], r["flops"], r["acts"]), name
        assert paper == (r["paper"] or "small-image twin"), name
