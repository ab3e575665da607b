"""`--trainer.precision auto`: bf16 where the machine has bf16 units and the model is large enough, else fp32."""
from __future__ import annotations

import pytest
import torch
import yaml
from conftest import fit, run_dir

import convvit.precision as precision  # the rule training shares with inference: patched where it is read
from convvit.training.precision import AUTO, BF16_MIN_GMACS, cpu_bf16_flags, cpu_model_name, resolve_precision

CPUINFO = """processor\t: 0
model name\t: Example Xeon
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8
"""


def test_cpu_flags_are_read_from_cpuinfo():
    assert cpu_bf16_flags(CPUINFO) == ["avx512_bf16", "amx_bf16"]
    assert cpu_bf16_flags("flags\t: fpu sse2 avx2 fma\n") == []
    assert cpu_bf16_flags("") == []
    assert cpu_model_name(CPUINFO) == "Example Xeon"


def test_an_explicit_precision_always_wins():
    assert resolve_precision("bf16-mixed", "cpu", 0.001, cpu_flags=[])[0] == "bf16-mixed"
    assert resolve_precision("32-true", "cpu", 100.0, cpu_flags=["amx_bf16"])[0] == "32-true"


@pytest.mark.parametrize("flags, gmacs, expected", [
    ([], 4.0, "32-true"),  # AVX2 only: bf16 takes a slow path
    (["avx512_bf16"], 0.014, "32-true"),  # the Fashion-MNIST nano model: the casts cost more than they save
    (["avx512_bf16"], BF16_MIN_GMACS, "bf16-mixed"),
    (["amx_bf16"], 4.0, "bf16-mixed"),
    (["amx_bf16"], None, "bf16-mixed"),  # size unknown (the Trainer alone)
])
def test_cpu_resolution(monkeypatch, flags, gmacs, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    value, why = resolve_precision(AUTO, "auto", gmacs, cpu_flags=flags)
    assert value == expected and why


@pytest.mark.parametrize("bf16, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_cuda_resolution(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Mock GPU")
    value, why = resolve_precision(AUTO, "gpu", 0.01, cpu_flags=[])
    assert value == expected and "Mock GPU" in why
    # a run asked to stay on the CPU is resolved for the CPU, GPU or not
    assert resolve_precision(AUTO, "cpu", 0.01, cpu_flags=[])[0] == "32-true"


@pytest.mark.parametrize("flags, threshold, expected", [(["amx_bf16"], 0.0, "bf16-mixed"), ([], 0.0, "32-true")])
def test_fit_resolves_auto_prints_it_and_saves_it(tmp_path, monkeypatch, capsys, flags, threshold, expected):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    monkeypatch.setattr(precision, "BF16_MIN_GMACS", threshold)
    assert fit(tmp_path, "--trainer.precision", "auto") == 0
    assert f"precision: {expected} (auto: " in capsys.readouterr().out
    config = yaml.safe_load((run_dir(tmp_path) / "config.yaml").read_text())
    assert config["trainer"]["precision"] == expected


def test_auto_is_the_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: [])
    assert fit(tmp_path) == 0
    assert "precision: 32-true (auto: CPU without bf16 units" in capsys.readouterr().out
