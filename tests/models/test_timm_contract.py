"""timm's model contract as timm 1.0.31's own tests/test_models.py checks it, for one small model per family.

Mirrors test_model_forward, test_model_backward, test_model_default_cfgs_non_std (with its helpers
_assert_model_api_contract, _assert_dtype_change_after_forward, _assert_reset_classifier_preserves_parent_device_dtype,
_assert_factory_device, _assert_frozen_survives_reset_and_resize), test_model_forward_intermediates and
test_model_forward_torchscript, plus torch.export. Models are built with convvit.create_model, which takes
timm's factory keywords: timm.create_model("convit_tiny") is timm's own ConViT (convvit never shadows a timm
name). timm files convvit's token models with its own transformers
(``vit_*``, ``deit*``, ``convit_*``): the "non-standard" default-cfg check, whose features are tokens.
"""
from __future__ import annotations

import fnmatch
import inspect

import pytest
import timm
import torch
from timm.models import FeatureInfo, group_parameters

import convvit

# One small model per family, with the size its real-tensor checks run at.
FAMILIES = {
    "vit_p_nano_32px": dict(),
    "vit_c_nano_32px": dict(),
    "deit_tiny": dict(img_size=32),
    "deit_tiny_distilled": dict(img_size=32),
    "convit_tiny": dict(img_size=32),
    "cvt_13": dict(img_size=64, depths=(1, 1, 2)),
}
NAMES = list(FAMILIES)


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = FAMILIES[name].get("img_size", 32)
    return torch.randn(batch, 3, size, size)


@pytest.mark.parametrize("name", NAMES)
def test_forward_and_grad_checkpointing(name):
    model = convvit.create_model(name, **FAMILIES[name]).eval()
    assert type(model).__module__.startswith("convvit")
    x = _input(name, 1)
    out = model(x)
    assert out.shape == (1, 1000) and not torch.isnan(out).any()
    model.set_grad_checkpointing()
    torch.testing.assert_close(model(x), out, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter(name):
    model = convvit.create_model(name, num_classes=42, **FAMILIES[name]).train()
    out = model(_input(name))
    out.mean().backward()
    assert out.shape[-1] == 42
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("name", NAMES)
def test_default_cfg_and_factory_keywords(name):
    """timm's test_model_default_cfgs_non_std, on the meta device at the model's default size."""
    with torch.device("meta"):
        model = convvit.create_model(name, pretrained=False, device="meta", dtype=torch.float32).eval()
        with pytest.raises(TypeError):  # unknown constructor arguments raise
            convvit.create_model(name, device="meta", not_a_model_arg=1)
    assert inspect.signature(model.reset_classifier).parameters["global_pool"].default is None
    param_names = [n for n, _ in model.named_parameters()]
    groups = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    assert len(set(groups.values())) > 1
    for pattern in model.no_weight_decay():
        assert any(fnmatch.fnmatch(n, pattern) for n in param_names), pattern
    assert model.num_classes >= 0 and model.num_features > 0 and model.head_hidden_size > 0
    cfg = model.default_cfg
    assert model.in_chans == cfg["input_size"][0]
    state_dict = model.state_dict()
    classifiers = (cfg["classifier"],) if isinstance(cfg["classifier"], str) else cfg["classifier"]  # as timm's test
    assert all(c + ".weight" in state_dict for c in classifiers) and cfg["first_conv"] + ".weight" in state_dict

    x = torch.randn(1, *cfg["input_size"], device="meta")
    features = model.forward_features(x)
    pre_logits = model.forward_head(features, pre_logits=True)
    assert features.shape[-1] == model.num_features and pre_logits.shape[1] == model.head_hidden_size
    model.to(torch.bfloat16)  # a dtype change after a forward leaves nothing behind in float32
    assert model(x.to(torch.bfloat16)).dtype == torch.bfloat16
    model.to(torch.float32)
    model.reset_classifier(0)
    assert model.num_classes == 0 and model(x).shape == pre_logits.shape
    headless = convvit.create_model(name, num_classes=0, device="meta", dtype=torch.float32).eval()
    assert headless(x).shape == pre_logits.shape

    # reset_classifier builds the new head on the model's device and dtype, in the model's mode
    model.to(device="meta", dtype=torch.float64)
    model.reset_classifier(0)
    model.reset_classifier(2)
    head = model.get_classifier()
    assert head.weight.device.type == "meta" and head.weight.dtype == torch.float64
    assert all(m.training == model.training for m in model.modules())

    # device= without a device context places every tensor; dtype= casts them
    placed = convvit.create_model(name, device="meta", dtype=torch.bfloat16)
    tensors = [*placed.named_parameters(), *placed.named_buffers()]
    assert all(t.device.type == "meta" for _, t in tensors)
    assert all(t.dtype == torch.bfloat16 for _, t in tensors if t.is_floating_point())

    frozen = convvit.create_model(name, device="meta", dtype=torch.float32).requires_grad_(False)
    frozen.reset_classifier(0)
    assert not [n for n, p in frozen.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("name", NAMES)
def test_forward_intermediates(name):
    model = convvit.create_model(name, **FAMILIES[name]).eval()
    info = FeatureInfo(model.feature_info, len(model.feature_info))
    assert len(info.channels()) >= 3
    x = _input(name, 1)
    final, intermediates = model.forward_intermediates(x, output_fmt="NCHW")
    assert len(intermediates) == len(info.channels())
    for chans, reduction, y in zip(info.channels(), info.reduction(), intermediates):
        assert y.shape[1] == chans
        assert y.shape[2] <= -(-x.shape[2] // reduction) + 1 and y.shape[3] <= -(-x.shape[3] // reduction) + 1
    torch.testing.assert_close(final, model.forward_features(x), rtol=1e-5, atol=1e-8)
    model.set_grad_checkpointing()
    torch.testing.assert_close(model.forward_intermediates(x)[0], final, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_torchscript(name):
    with timm.layers.set_layer_config(scriptable=True):
        model = convvit.create_model(name, **FAMILIES[name]).eval()
    scripted = torch.jit.script(model)
    x = _input(name, 1)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize("name", NAMES)
def test_torch_export(name):
    model = convvit.create_model(name, **FAMILIES[name]).eval()
    x = _input(name, 1)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))
