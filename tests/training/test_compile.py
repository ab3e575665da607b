"""`--model.compile true`: the compiled forward is used for training and evaluation, and state-dict keys stay put."""
from __future__ import annotations

import torch
from conftest import STEPS_PER_EPOCH, fit, run_dir


def test_fit_with_compile(tmp_path, monkeypatch):
    calls = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):  # dynamo's tracing without inductor's code generation: seconds, not minutes
        calls.append(type(model).__name__)
        return real_compile(model, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    assert fit(tmp_path, "--model.compile", "true", "--model.ema", "true") == 0
    assert calls == ["VisionTransformer"]
    ckpt = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == STEPS_PER_EPOCH
    assert "model.head.weight" in ckpt["state_dict"]
    assert not any("_orig_mod" in key for key in ckpt["state_dict"])
