"""The inference runner: ``--precision auto`` follows training's rule, and bf16 predicts what fp32 predicts."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from single_thread import one_thread  # tests/single_thread.py

import convvit
import convvit.precision as precision_rule
from convvit.data.datasets import make_synthetic
from convvit.inference.runner import InferenceModel, resolve_inference_precision
from convvit.precision import BF16_MIN_GMACS


@pytest.fixture(autouse=True)
def _cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("flags, gmacs, expected", [
    ([], 4.0, "32"),  # AVX2 only: bf16 takes a slow path
    (["avx512_bf16"], 0.014, "32"),  # a nano model: the casts cost more than they save
    (["avx512_bf16"], BF16_MIN_GMACS, "bf16"),
    (["amx_bf16"], 4.0, "bf16"),
    (["amx_bf16"], None, "bf16"),
])
def test_auto_follows_training_rule_on_a_cpu(flags, gmacs, expected):
    value, why = resolve_inference_precision("auto", "cpu", gmacs, cpu_flags=flags)
    assert value == expected
    # the same phrase training prints beside its choice
    assert why == precision_rule.bf16_is_faster("cpu", gmacs, flags)[1]


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "32")])
def test_auto_on_a_cuda_device(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Mock GPU")
    value, why = resolve_inference_precision("auto", "cuda:0", 0.01, cpu_flags=[])
    assert value == expected and "Mock GPU" in why
    assert resolve_inference_precision("auto", "cpu", 4.0, cpu_flags=[])[0] == "32"


def test_an_explicit_precision_wins_and_forced_bf16_says_it_is_slow():
    assert resolve_inference_precision("32", "cpu", 4.0, cpu_flags=["amx_bf16"]) == ("32", "as given")
    assert resolve_inference_precision("bf16", "cpu", 4.0, cpu_flags=["amx_bf16"]) == ("bf16", "as given")
    value, why = resolve_inference_precision("bf16", "cpu", 0.01, cpu_flags=[])
    assert value == "bf16" and "no bf16 units" in why and "slower" in why
    with pytest.raises(ValueError, match="auto, 32, bf16"):
        resolve_inference_precision("fp16", "cpu")


def test_auto_counts_the_model_when_the_cpu_has_bf16_units(monkeypatch):
    monkeypatch.setattr(precision_rule, "cpu_bf16_flags", lambda: ["amx_bf16"])
    tiny = convvit.create_model("vit_c_nano_32px", num_classes=10, img_size=16)
    assert InferenceModel(tiny).precision == "32"  # 0.004 GMACs: below the threshold
    monkeypatch.setattr(precision_rule, "BF16_MIN_GMACS", 0.0)
    inference = InferenceModel(convvit.create_model("vit_c_nano_32px", num_classes=10, img_size=16))
    assert inference.precision == "bf16" and inference.reason == "CPU with amx_bf16"
    assert all(p.dtype == torch.bfloat16 for p in inference.model.parameters())


def _trained_nano(images: torch.Tensor, labels: torch.Tensor, steps: int = 30) -> torch.nn.Module:
    """vit_c_nano_32px fitted to a synthetic task, deterministically (a confident model, as after real training)."""
    torch.manual_seed(0)
    model = convvit.create_model("vit_c_nano_32px", num_classes=10, img_size=16)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (32,), generator=g)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _normalised(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - 0.5) / 0.25


def test_bf16_predicts_what_fp32_predicts_on_a_trained_model():
    train_x, train_y = make_synthetic(640, 10, 3, 16, seed=0)
    test_x, test_y = make_synthetic(400, 10, 3, 16, seed=1)  # a fixed set the model never saw
    with one_thread():
        model = _trained_nano(_normalised(train_x), train_y)
        fp32 = InferenceModel(model, precision="32")
        fp32_logits = fp32.logits(_normalised(test_x))
        bf16 = InferenceModel(copy.deepcopy(model), precision="bf16")
        bf16_logits = bf16.logits(_normalised(test_x))
    assert bf16_logits.dtype == torch.float32 and bf16.precision == "bf16"
    assert (bf16_logits - fp32_logits).abs().max() > 0  # bf16 did run: its rounding shows in the logits
    fp32_top1, bf16_top1 = fp32_logits.argmax(-1), bf16_logits.argmax(-1)
    assert (fp32_top1 == test_y).float().mean() > 0.9  # trained, so agreement is not that of a constant guess
    assert (fp32_top1 == bf16_top1).float().mean() >= 0.99
