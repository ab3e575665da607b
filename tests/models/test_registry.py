"""The timm model contract, for every registered convvit model (the bar of timm's tests/test_models.py)."""
import pytest
import timm
import torch
from timm.models import FeatureInfo, group_parameters

import convvit

ALL_MODELS = convvit.list_models()


def _num_params(name):
    with torch.device("meta"):
        return sum(p.numel() for p in convvit.create_model(name).parameters())


# Models over 30M parameters take tens of seconds to build and run on 2 CPU cores: their real-weight
# tests are `slow`; their shapes are still checked at full size on the meta device.
REAL_WEIGHT_MODELS = [
    pytest.param(n, marks=pytest.mark.slow) if _num_params(n) > 30e6 else n for n in ALL_MODELS
]
# Real-weight tests run at a small input size to stay fast; shapes at the default size run on the meta device.
SMALL = 32


def _small_kwargs(name):
    return dict(img_size=SMALL)


def test_registry_lists_every_family():
    names = set(ALL_MODELS)
    for expected in [f"vit_{k}_{s}gf" for k in "pc" for s in (1, 4, 18, 36)] + ["deit_tiny", "deit_small", "deit_base"]:
        assert expected in names
    assert convvit.list_models("vit_c*") == sorted(n for n in names if n.startswith("vit_c"))


def test_unknown_model_lists_close_names():
    with pytest.raises(ValueError, match=r"vit_c_4gf"):
        convvit.create_model("vit_c_4g")


def test_pretrained_download_is_refused():
    with pytest.raises(ValueError, match="checkpoint_path"):
        convvit.create_model("deit_tiny", pretrained=True)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_unknown_argument_raises_type_error(name):
    with torch.device("meta"), pytest.raises(TypeError):
        convvit.create_model(name, not_an_argument=1)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_default_size_shapes(name):
    """Forward at the model's default input size, on the meta device (exact shapes, nothing computed)."""
    cfg = convvit.default_cfg(name)
    with torch.device("meta"):
        model = convvit.create_model(name).eval()
        x = torch.empty(2, *cfg["input_size"])
        assert model(x).shape == (2, cfg["num_classes"])
        assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, model.num_features)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_timm_create_model(name):
    """After `import convvit`, timm builds every convvit model whose name it did not already have."""
    entry = timm.models._registry._model_entrypoints[name]
    with torch.device("meta"):
        model = timm.create_model(name, num_classes=5)
    if entry.__module__.startswith("convvit"):
        assert type(model).__module__.startswith("convvit")
        assert model.num_classes == 5
    else:  # a timm model of the same name: convvit never shadows it
        assert type(model).__module__.startswith("timm")


@pytest.mark.parametrize("name", REAL_WEIGHT_MODELS)
def test_forward_backward_and_heads(name):
    model = convvit.create_model(name, num_classes=42, in_chans=1, **_small_kwargs(name))
    model.train()
    x = torch.randn(2, 1, SMALL, SMALL)
    out = model(x)
    assert out.shape == (2, 42)
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    state = model.state_dict()
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, SMALL, SMALL) and cfg["num_classes"] == 42
    classifiers = (cfg["classifier"],) if isinstance(cfg["classifier"], str) else cfg["classifier"]
    for key in (*classifiers, cfg["first_conv"]):
        assert key + ".weight" in state, key
    heads = model.get_classifier()  # timm: a tuple (head, head_dist) for distilled DeiT
    assert heads == tuple(model.get_submodule(c) for c in classifiers) if len(classifiers) > 1 else heads is model.head

    with torch.no_grad():
        feats = model.forward_features(x)
        model.reset_classifier(0)
        pooled = model(x)
        assert pooled.shape == (2, model.num_features)
        model.reset_classifier(7)
        assert model(x).shape == (2, 7)
        _, intermediates = model.forward_intermediates(x)
        info = FeatureInfo(model.feature_info, list(range(len(model.feature_info))))
        assert len(intermediates) == len(model.feature_info)
        for chans, reduction, y in zip(info.channels(), info.reduction(), intermediates):
            assert y.shape[1] == chans and y.shape[-1] == SMALL // reduction
        final, _ = model.forward_intermediates(x)
        torch.testing.assert_close(final, feats)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_param_groups_and_no_weight_decay(name):
    with torch.device("meta"):
        model = convvit.create_model(name)
    params = dict(model.named_parameters())
    assert model.no_weight_decay() <= set(params) | {n.split(".")[0] for n in params}
    groups = group_parameters(model, model.group_matcher())
    grouped = {n for names in groups.values() for n in names}
    assert grouped == set(params)
    assert len(groups) >= 3


@pytest.mark.parametrize("name", ["vit_c_nano_32px", "vit_p_nano_32px", "deit_tiny"])
def test_grad_checkpointing_matches(name):
    model = convvit.create_model(name, img_size=32, drop_path_rate=0.0).eval()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    ref = model(x)
    model.set_grad_checkpointing(True)
    out = model(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert x.grad is not None


def test_features_only_backbone():
    model = timm.create_model("vit_c_1gf", features_only=True, out_indices=(2, 5, 10), img_size=64)
    outs = model(torch.randn(1, 3, 64, 64))
    assert model.feature_info.channels() == [192, 192, 192]
    assert [o.shape for o in outs] == [torch.Size([1, 192, 4, 4])] * 3
