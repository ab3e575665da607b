"""`convvit export`: ONNX (checked against PyTorch with onnxruntime) and .safetensors round trips."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from safetensors import safe_open

import convvit
from convvit.cli import main
from convvit.inference.trained import choose_weights, load_trained_model


def test_onnx_matches_pytorch(trained_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "model.onnx"
    assert main(["export", "--ckpt_path", str(ckpt), "--format", "onnx", "--output", str(out)]) == 0
    model, info = load_trained_model(ckpt)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    for batch in (1, 3):  # the batch axis is dynamic
        x = torch.randn(batch, info["in_chans"], *info["img_size"])
        (onnx_logits,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(onnx_logits, model(x).numpy(), rtol=1e-4, atol=1e-4)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == info["class_names"]


@pytest.mark.parametrize("weights", ["raw", "ema"])
def test_safetensors_round_trip(trained_run, tmp_path, weights):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / f"{weights}.safetensors"
    assert main(["export", "--ckpt_path", str(ckpt), "--format", "safetensors", "--output", str(out),
                 "--weights", weights]) == 0
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["weights"] == weights and meta["num_classes"] == "10"
    assert json.loads(meta["class_names"]) == [f"class_{i}" for i in range(10)]
    assert json.loads(meta["img_size"]) == [16, 16] and meta["in_chans"] == "3"

    expected, info = load_trained_model(ckpt, weights)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    prefix = "ema_model.module." if weights == "ema" else "model."
    assert torch.equal(expected.head.weight, state[prefix + "head.weight"])
    loaded = convvit.create_model(info["name"], num_classes=10, img_size=16, checkpoint_path=out).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected(x))


def test_final_weights_of_a_run_load_with_create_model(trained_run):
    path = trained_run / "final.safetensors"
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    model = convvit.create_model(meta["architecture"], num_classes=10, img_size=16, checkpoint_path=path)
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    prefix = "ema_model.module." if meta["weights"] == "ema" else "model."
    assert torch.equal(model.head.weight, ckpt["state_dict"][prefix + "head.weight"])


def test_choose_weights():
    assert choose_weights("auto", False, 0.5, None) == "raw"
    assert choose_weights("auto", True, 0.5, 0.6) == "ema"
    assert choose_weights("auto", True, 0.7, 0.6) == "raw"
    assert choose_weights("auto", True, None, None) == "ema"
    with pytest.raises(ValueError, match="no EMA"):
        choose_weights("ema", False, None, None)


def test_export_errors(tmp_path, capsys):
    assert main(["export", "--ckpt_path", str(tmp_path / "missing.ckpt"), "--format", "onnx"]) == 1
    assert "does not exist" in capsys.readouterr().err
    not_ours = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, not_ours)
    assert main(["export", "--ckpt_path", str(not_ours), "--format", "safetensors"]) == 1
    assert "not a convvit training checkpoint" in capsys.readouterr().err


def test_onnx_export_reports_its_check_against_pytorch(trained_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    assert main(["export", "--ckpt_path", str(ckpt), "--format", "onnx", "--output", str(out)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if "onnxruntime matches PyTorch" in x]
    assert len(line) == 1 and "tolerance 0.0001" in line[0]
    assert float(line[0].split("max |logit difference| ")[1].split()[0]) <= 1e-4


def test_onnx_export_that_disagrees_is_refused_and_not_written(trained_run, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from convvit.inference import export

    model, info = load_trained_model(trained_run / "checkpoints" / "last.ckpt")
    other = convvit.create_model(info["name"], num_classes=10, img_size=16).eval()  # fresh weights
    real_check = export.check_onnx
    monkeypatch.setattr(export, "check_onnx", lambda m, data, i, tol: real_check(other, data, i, tol))
    out = tmp_path / "model.onnx"
    with pytest.raises(export.ExportMismatchError, match="disagrees with PyTorch"):
        export.export_onnx(model, out, info)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_exported_files_get_the_umask_mode(trained_run, tmp_path):
    pytest.importorskip("onnxruntime")
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    old = os.umask(0o022)
    try:
        for fmt in ("onnx", "safetensors"):
            out = tmp_path / f"model.{fmt}"
            assert main(["export", "--ckpt_path", str(ckpt), "--format", fmt, "--output", str(out)]) == 0
            assert stat.S_IMODE(out.stat().st_mode) == 0o644, fmt
    finally:
        os.umask(old)


def test_export_output_folder(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    assert main(["export", "--ckpt_path", str(ckpt), "--format", "safetensors", "--output", str(tmp_path)]) == 0
    assert (tmp_path / "last.safetensors").is_file()
