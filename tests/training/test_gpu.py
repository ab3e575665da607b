"""Training on a CUDA GPU (bf16-mixed, EMA, torch.compile), resuming there, and using the result on a CPU.

Marked ``gpu`` and skipped without CUDA; run them with ``pytest -m gpu`` on a GPU machine.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import STEPS_PER_EPOCH, fit, run_dir
from PIL import Image

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run with -m gpu on a GPU machine)"),
]

ON_GPU = [
    "--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
    "--model.ema", "true", "--model.compile", "true", "--model.channels_last", "true", "--model.lr", "3e-3",
]


def _on_cpu_only(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``convvit ...`` in a fresh process that cannot see a GPU, as on a user's laptop."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    code = "import sys; from convvit.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory) -> Path:
    """A 1-epoch run on the GPU: bf16-mixed, EMA, compiled, channels-last."""
    root = tmp_path_factory.mktemp("gpu")
    torch.cuda.reset_peak_memory_stats()
    assert fit(root, *ON_GPU) == 0
    assert torch.cuda.max_memory_allocated() > 0  # the steps really ran on the GPU
    return run_dir(root)


def test_fit_on_gpu_with_bf16_ema_and_compile(gpu_run):
    ckpt = torch.load(gpu_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == STEPS_PER_EPOCH
    state = ckpt["state_dict"]
    assert any(k.startswith("ema_model.module.") for k in state)
    # Mixed precision keeps fp32 master weights; training moved them away from the initial ones.
    assert state["model.head.weight"].dtype == torch.float32 and state["model.head.weight"].abs().sum() > 0
    with open(gpu_run / "metrics.csv") as f:
        losses = [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert (gpu_run / "final.safetensors").is_file()


def test_resume_on_gpu(tmp_path):
    assert fit(tmp_path, *ON_GPU) == 0
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    assert fit(tmp_path, *ON_GPU, "--trainer.max_epochs", "2", "--ckpt_path", str(last)) == 0
    resumed = sorted(tmp_path.glob("*/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)[-1]
    ckpt = torch.load(resumed, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 * STEPS_PER_EPOCH and ckpt["epoch"] == 1


def test_predict_and_export_a_gpu_checkpoint_on_cpu(gpu_run, tmp_path):
    ckpt = gpu_run / "checkpoints" / "last.ckpt"
    image = tmp_path / "one.png"
    Image.new("RGB", (20, 24), (30, 160, 90)).save(image)
    preds = tmp_path / "preds.csv"
    result = _on_cpu_only("predict", "--ckpt_path", str(ckpt), str(image), "--top_k", "2", "--output", str(preds),
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(preds) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["pred"].startswith("class_")

    onnx_path = tmp_path / "model.onnx"
    result = _on_cpu_only("export", "--ckpt_path", str(ckpt), "--format", "onnx", "--output", str(onnx_path),
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map["class_names"])[0] == "class_0"

    weights = tmp_path / "model.safetensors"
    result = _on_cpu_only("export", "--ckpt_path", str(ckpt), "--format", "safetensors", "--output", str(weights),
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr and weights.is_file()
