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
    proc = subprocess.run([sys.executable, "-m", "convvit.cli", "info", "deit_tiny", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["params"] == 5717416


_HEAVY = ("torch", "lightning", "timm", "torchvision")


def _imports_of(argv):
    """Run convvit's entry point with ``argv`` in a fresh interpreter; (exit status, heavy modules it imported)."""
    code = (
        "import sys\nfrom convvit.cli import main\n"
        f"rc = main({argv!r})\n"
        f"print(sorted(m for m in {_HEAVY!r} if m in sys.modules))\nsys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return proc.returncode, proc.stdout.strip().splitlines()[-1], proc.stderr


@pytest.mark.parametrize("argv, status", [
    (["--help"], 0), ([], 0), (["--version"], 0),
    (["info", "--img-size", "big", "vit_c_4gf"], 2),  # a mistyped option
    (["predict", "--help"], 0), (["export", "--ckpt_path", "x.ckpt", "--format", "onx"], 2),
    (["predict", "--ckpt_pth", "x.ckpt", "photos/"], 2), (["fitt"], 2),
])
def test_help_and_option_errors_import_no_torch(argv, status):
    rc, heavy, err = _imports_of(argv)
    assert rc == status and heavy == "[]", (heavy, err)
    if status == 2:
        assert err.count("convvit: error: ") == 1 and "Traceback" not in err


@pytest.mark.parametrize("imports", ["import convvit\nimport timm", "import timm\nimport convvit",
                                     "import convvit\nimport timm.layers\nimport timm"])
def test_import_convvit_is_light_and_its_models_are_in_timm(imports):
    # `import convvit` loads no torch, yet timm knows convvit's models whichever of the two comes first.
    code = (
        "import sys\nimport convvit\nassert 'torch' not in sys.modules or 'timm' in sys.modules\n"
        f"{imports}\nassert timm.is_model('vit_c_4gf')\n"
        "assert type(timm.create_model('vit_c_nano_32px')).__name__ == 'VisionTransformer'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_import_convvit_alone_loads_no_torch():
    proc = subprocess.run([sys.executable, "-c", "import sys, convvit; assert 'torch' not in sys.modules"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
def test_manual_model_table_is_what_convvit_models_prints(capsys):
    """The manual's model table, published figures included, is the output of `convvit models` (one source)."""
    import pathlib
    import re

    assert main(["models", "--json"]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    page = (pathlib.Path(__file__).parents[1] / "docs" / "models.md").read_text()
    table = re.findall(r"^\| (\w+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (.*) \|$", page, re.M)
    assert {t[0] for t in table} == set(rows)
    for name, size, params, flops, acts, paper in table:
        r = rows[name]
        assert (size, params, flops, acts) == (str(r["size"]), r["params"], r["flops"], r["acts"]), name
        assert paper == (r["paper"] or "small-image twin"), name


def test_every_command_of_the_table_is_a_module_with_its_arguments_and_run(capsys):
    """Adding a command is one module and one table entry: the dispatcher lists it and gives it --help."""
    import importlib

    from convvit.cli import COMMANDS

    assert main(["--help"]) == 0
    usage = capsys.readouterr().out
    for command in COMMANDS:
        module = importlib.import_module(command.module)
        assert hasattr(module, "run_argv") or (hasattr(module, "add_arguments") and hasattr(module, "run")), command
        assert f"    {command.name} " in usage, command.name
