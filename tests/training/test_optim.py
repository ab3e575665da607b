import math

import pytest
import torch

import convvit
from convvit.training.optim import (
    WarmupDecay,
    build_optimizer,
    excludes_no_weight_decay,
    fused_supported,
    warmup_decay,
)


def _decay_of(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, float]:
    by_id = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


@pytest.mark.parametrize("exclude", [False, True])
def test_no_decay_groups(exclude):
    model = convvit.create_model("vit_c_nano_32px", num_classes=3, img_size=16)
    decay = _decay_of(build_optimizer(model, "adamw", 1e-3, 0.2, exclude_no_weight_decay=exclude), model)
    assert decay["blocks.0.attn.qkv.weight"] == 0.2
    assert decay["blocks.0.attn.qkv.bias"] == 0.0
    assert decay["blocks.0.norm1.weight"] == 0.0  # norm gains
    assert all(v == 0.0 for k, v in decay.items() if k.endswith(".bias") or ".bn" in k or "norm" in k)
    # pycls decays the position embedding and class token; timm excludes model.no_weight_decay()
    assert decay["pos_embed"] == decay["cls_token"] == (0.0 if exclude else 0.2)


def test_family_defaults_come_from_the_model_cfg():
    with torch.device("meta"):
        models = {n: convvit.create_model(n) for n in ("vit_c_4gf", "vit_p_1gf", "deit_tiny", "convit_tiny", "cvt_13")}
    assert not excludes_no_weight_decay(models["vit_c_4gf"]) and not excludes_no_weight_decay(models["vit_p_1gf"])
    assert excludes_no_weight_decay(models["deit_tiny"])
    assert excludes_no_weight_decay(models["convit_tiny"])
    assert excludes_no_weight_decay(models["cvt_13"])
    assert excludes_no_weight_decay(torch.nn.Linear(2, 2))  # no cfg: timm's convention


def test_a_model_registered_under_a_new_name_gets_its_family_policy(monkeypatch):
    from convvit.models import registry
    from convvit.models.registry import build_with_cfg, register_model
    from convvit.models.vit import VisionTransformer, _pycls_cfg

    # register into throw-away copies of the registries, so that other tests see the usual model list
    monkeypatch.setattr(registry, "_builders", dict(registry._builders))
    monkeypatch.setattr(registry, "_default_cfgs", dict(registry._default_cfgs))
    monkeypatch.setattr(registry, "_register_into_timm", lambda name, fn: None)

    @register_model(cfg=_pycls_cfg())
    def test_optim_custom_vit_c(pretrained=False, **kwargs):
        model_args = dict(img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2,
                          stem_type="conv", stem_channels=(16, 32), stem_strides=(2, 2))
        return build_with_cfg(VisionTransformer, "test_optim_custom_vit_c", model_args, **kwargs)

    assert not excludes_no_weight_decay(convvit.create_model("test_optim_custom_vit_c"))


def test_sgd_nesterov_and_momentum():
    model = torch.nn.Linear(4, 2)
    opt = build_optimizer(model, "sgd", 0.1, 1e-5, momentum=0.8, nesterov=True)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.8
    assert not build_optimizer(model, "sgd", 0.1, nesterov=False).defaults["nesterov"]
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_optimizer(model, "lamb")


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_fused_step_matches_the_per_parameter_loop(name):
    torch.manual_seed(0)
    ref = convvit.create_model("vit_c_nano_32px", num_classes=3, img_size=16)
    fused = convvit.create_model("vit_c_nano_32px", num_classes=3, img_size=16)
    fused.load_state_dict(ref.state_dict())
    opt_ref = build_optimizer(ref, name, 1e-2, 0.05, fused=False)
    opt_fused = build_optimizer(fused, name, 1e-2, 0.05)
    assert opt_fused.defaults["fused"] and not opt_ref.defaults["fused"]  # fused by default on the CPU
    x = torch.randn(4, 3, 16, 16)
    for _ in range(3):
        for model, opt in ((ref, opt_ref), (fused, opt_fused)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for (k, a), b in zip(ref.state_dict().items(), fused.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=k)


def test_fused_supported():
    assert fused_supported(torch.nn.Linear(2, 2).parameters())
    assert not fused_supported([])
    assert not fused_supported([torch.zeros(2, dtype=torch.long)])
    assert not fused_supported([torch.zeros(2, device="meta")])


def test_warmup_cosine_shape():
    f = WarmupDecay(total_steps=110, warmup_steps=10, start_factor=0.1, min_factor=0.005)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.55)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.005 + 0.995 * 0.5)  # half way down the cosine
    assert f(110) == pytest.approx(0.005) and f(500) == pytest.approx(0.005)
    values = [f(t) for t in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_warmup_linear_shape():
    f = WarmupDecay(total_steps=110, warmup_steps=10, start_factor=0.1, min_factor=0.0, shape="linear")
    assert f(5) == pytest.approx(0.55)  # the same warmup
    assert f(10) == pytest.approx(1.0)
    assert f(35) == pytest.approx(0.75) and f(60) == pytest.approx(0.5) and f(85) == pytest.approx(0.25)
    assert f(110) == pytest.approx(0.0) and f(500) == pytest.approx(0.0)
    cosine = WarmupDecay(total_steps=110, warmup_steps=10, start_factor=0.1, min_factor=0.0)
    assert f(35) < cosine(35) and f(85) > cosine(85)  # lower early, higher late: a different curve


def test_unknown_lr_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown lr schedule 'step'.*cosine, linear"):
        WarmupDecay(total_steps=10, shape="step")


def test_warmup_cosine_scheduler_state_round_trip():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = warmup_decay(opt, total_steps=20, warmup_steps=4)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([p], lr=2.0)
    sched2 = warmup_decay(opt2, total_steps=999, warmup_steps=0)
    sched2.load_state_dict(state)  # the schedule object's settings come back with the state
    assert sched2.lr_lambdas[0].total_steps == 20
    sched.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 4 / 16)))


def test_linear_schedule_state_round_trip():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = warmup_decay(opt, total_steps=10, shape="linear")
    for _ in range(3):
        opt.step()
        sched.step()
    opt2 = torch.optim.SGD([p], lr=1.0)
    sched2 = warmup_decay(opt2, total_steps=10)  # built as cosine: the saved shape wins
    sched2.load_state_dict(sched.state_dict())
    sched2.step()
    assert sched2.lr_lambdas[0].shape == "linear"
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.6)
