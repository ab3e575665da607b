"""convvit.explain's Python API: the captured maps are the ones the forward used; rollout and distance."""
from __future__ import annotations

import pytest
import torch

import convvit
from convvit.explain import attention_distance, attention_maps, rollout


def _small(name: str, img_size: int = 64, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return convvit.create_model(name, num_classes=10, img_size=img_size, **kwargs).eval()


def test_deit_maps_equal_softmax_by_hand():
    model = _small("deit_tiny")
    x = torch.randn(2, 3, 64, 64)
    inputs = []  # each block's normalised input, the x its attention sees
    hooks = [blk.norm1.register_forward_hook(lambda m, a, out: inputs.append(out)) for blk in model.blocks]
    maps = attention_maps(model, x)
    for h in hooks:
        h.remove()
    assert len(maps) == len(model.blocks) == 12
    for blk, xin, attn in zip(model.blocks, inputs, maps):
        B, N, C = xin.shape
        heads = blk.attn.num_heads
        q, k, _ = (xin @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).split(C, dim=-1)  # (B, N, C) each
        q, k = (t.view(B, N, heads, C // heads).transpose(1, 2) for t in (q, k))  # (B, h, N, d)
        expected = torch.softmax(q @ k.transpose(-2, -1) / (C // heads) ** 0.5, dim=-1)
        assert attn.shape == (2, heads, N, N)
        torch.testing.assert_close(attn, expected, atol=1e-6, rtol=1e-5)


def x_size(name: str) -> int:
    return 32 if name.endswith("32px") else 64


@pytest.mark.parametrize("name", ["deit_tiny", "convit_tiny", "cvt_13", "vit_c_nano_32px"])
def test_capture_leaves_outputs_identical_and_rows_stochastic(name):
    model = _small(name, img_size=x_size(name))
    x = torch.randn(2, 3, x_size(name), x_size(name))
    with torch.no_grad():
        plain = model(x)
        maps = attention_maps(model, x)
        again = model(x)
    with torch.no_grad():  # capturing during a forward returns the same logits too
        from convvit.explain import capture_attention

        with capture_attention(model):
            captured = model(x)
    assert torch.equal(plain, again) and torch.equal(plain, captured)
    for attn in maps:
        torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]), atol=1e-5, rtol=0)
    # the fused path is untouched: no hook stays behind
    assert all(not m._forward_hooks for m in model.modules())


def _timm_maps(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """timm's own attention probabilities: explicit attention, read at the attention-dropout module."""
    maps = []
    for blk in model.blocks:
        if hasattr(blk.attn, "fused_attn"):
            blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(lambda m, a, out: maps.append(out.detach()))
    with torch.no_grad():
        model(x)
    return maps


@pytest.mark.parametrize("timm_name, name", [("deit_tiny_patch16_224", "deit_tiny"), ("convit_tiny", "convit_tiny")])
def test_maps_equal_timm(tmp_path, timm_name, name):
    import timm

    torch.manual_seed(0)
    reference = timm.create_model(timm_name, pretrained=False, num_classes=10, img_size=64).eval()
    torch.save(reference.state_dict(), tmp_path / "timm.pth")
    model = convvit.create_model(name, num_classes=10, img_size=64, checkpoint_path=tmp_path / "timm.pth").eval()
    x = torch.randn(2, 3, 64, 64)
    ours, theirs = attention_maps(model, x), _timm_maps(reference, x)
    assert len(ours) == len(theirs) == 12
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    if name == "convit_tiny":  # the class token joins before block 10: 16 -> 17 tokens
        assert ours[9].shape[-1] == 16 and ours[10].shape[-1] == 17


def _identity(batch: int, heads: int, tokens: int) -> torch.Tensor:
    return torch.eye(tokens).expand(batch, heads, tokens, tokens).clone()


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_of_identity_and_uniform_attention(fusion):
    # 1 class token + 4 x 4 patches. Identity: the class token gathers nothing from the patches,
    # and nothing is preferred; uniform attention: every patch contributes equally.
    ident = rollout([_identity(2, 3, 17)] * 4, head_fusion=fusion)
    assert ident.shape == (2, 16)
    assert torch.allclose(ident, ident[:, :1].expand_as(ident))
    uniform = rollout([torch.full((2, 3, 17, 17), 1 / 17)] * 4, head_fusion=fusion, discard_ratio=0.5)
    assert torch.allclose(uniform, uniform[:, :1].expand_as(uniform)) and uniform.min() > 0
    # without a class token (16 patches) the mean patch row of the identity is exactly uniform
    no_cls = rollout([_identity(2, 3, 16)] * 3, head_fusion=fusion)
    torch.testing.assert_close(no_cls, torch.full((2, 16), 1 / 16))


def test_rollout_token_count_changes():
    # ConViT: patches-only maps, then maps with a class token; the class token's row gathers from both.
    model = _small("convit_tiny", img_size=32, patch_size=8, depth=4, local_up_to_layer=3)
    maps = attention_maps(model, torch.randn(1, 3, 32, 32))
    assert [m.shape[-1] for m in maps] == [16, 16, 16, 17]
    r = rollout(maps)
    assert r.shape == (1, 16) and torch.all(r > 0)
    # only the last map: the patch-only maps do change the rollout (they are not dropped)
    assert not torch.allclose(r, rollout(maps[-1:]))
    # CvT: stages on other grids are left out; the strided keys are spread over the last stage's grid
    cvt = _small("cvt_13", img_size=64)
    maps = attention_maps(cvt, torch.randn(1, 3, 64, 64))
    assert maps[-1].shape[-2:] == (17, 5)  # 1 + 4 x 4 queries, 1 + 2 x 2 keys
    r = rollout(maps, head_fusion="max", discard_ratio=0.9)
    assert r.shape == (1, 16) and torch.isfinite(r).all()
    last_stage = [i for i, info in enumerate(maps.infos) if info.grid == (4, 4)]
    from convvit.explain import AttentionMaps

    only_last = AttentionMaps([maps[i] for i in last_stage], [maps.infos[i] for i in last_stage])
    torch.testing.assert_close(r, rollout(only_last, head_fusion="max", discard_ratio=0.9))


def test_rollout_bad_arguments():
    with pytest.raises(ValueError, match="head_fusion"):
        rollout([_identity(1, 1, 5)], head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        rollout([_identity(1, 1, 5)], discard_ratio=1.0)


def test_attention_distance():
    # attending only to itself: distance 0; with a class token too (it has no distance)
    zero = attention_distance([_identity(2, 3, 16), _identity(2, 3, 17)], grid=(4, 4))
    assert zero.shape == (2, 3) and torch.all(zero == 0)
    # every patch of a 1 x 2 grid attending only to the other: one patch apart, in pixels
    other = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).expand(1, 2, 2, 2)
    torch.testing.assert_close(attention_distance([other], grid=(1, 2), patch_size=16), torch.full((1, 2), 16.0))
    # the model's maps carry their grid and pixel pitch; CvT's stages have different head counts
    maps = attention_maps(_small("cvt_13"), torch.randn(1, 3, 64, 64))
    dist = attention_distance(maps)
    assert dist.shape == (13, 6) and torch.isnan(dist[0, 1:]).all() and (dist[:, 0] > 0).all()
    with pytest.raises(ValueError, match="does not fit"):
        attention_distance([_identity(1, 1, 10)], grid=(4, 4))


def test_model_without_attention():
    with pytest.raises(ValueError, match="no attention"):
        attention_maps(torch.nn.Conv2d(3, 3, 1), torch.randn(1, 3, 8, 8))


def _count_forwards(model: torch.nn.Module) -> list:
    calls = []
    model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("name, kwargs", [
    ("vit_c_nano_32px", dict(img_size=32)), ("vit_p_nano_32px", dict(img_size=32)),
    ("convit_tiny", dict(img_size=32, patch_size=8, depth=4, local_up_to_layer=3)), ("cvt_13", dict(img_size=64)),
    ("deit_tiny_distilled", dict(img_size=64)),
])
def test_explain_image_is_one_forward_pass_with_the_family_panels(name, kwargs):
    from convvit.explain import explain_image

    model = _small(name, **kwargs)
    x = torch.randn(1, 3, kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        expected_logits, expected_maps = model(x), attention_maps(model, x)
    calls = _count_forwards(model)
    seen = explain_image(model, x[0])  # (C, H, W) is one image too
    assert len(calls) == 1
    assert torch.equal(seen.logits, expected_logits)
    assert len(seen.maps) == len(expected_maps) and all(torch.equal(a, b) for a, b in zip(seen.maps, expected_maps))
    assert seen.maps.infos == expected_maps.infos
    panels = seen.panels
    if name.startswith("vit_c"):  # the conv stem's first and last stage, first four channels
        stem = model.patch_embed.stem
        with torch.no_grad():
            first, last = stem[0](x), stem(x)
        assert set(panels) == {"stem_maps"}
        assert torch.equal(panels["stem_maps"][0], first[0, :4]) and torch.equal(panels["stem_maps"][1], last[0, :4])
    elif name.startswith("convit"):  # sigmoid(lambda) of the 3 GPSA layers' 4 heads
        assert set(panels) == {"gates"} and panels["gates"].shape == (3, 4)
        torch.testing.assert_close(panels["gates"], torch.sigmoid(torch.ones(3, 4)))
    elif name.startswith("cvt"):  # the class token's last attention on the 2 x 2 key grid
        assert set(panels) == {"cls_attention"} and panels["cls_attention"].shape == (2, 2)
        torch.testing.assert_close(panels["cls_attention"].flatten(), expected_maps[-1][0, :, 0, 1:].mean(dim=0))
    else:  # a patchify stem: nothing beside the rollout
        assert panels == {}
    if name == "deit_tiny_distilled":  # class and distillation tokens lead every map; the rollout reads the class row
        assert {info.num_prefix for info in seen.maps.infos} == {2} and seen.maps[0].shape[-1] == 2 + 16
        assert rollout(seen.maps).shape == (1, 16)
    with pytest.raises(ValueError, match="one image"):
        explain_image(model, torch.randn(2, *x.shape[1:]))


def test_a_family_defined_outside_convvit_is_explained(outside_family):
    from convvit.explain import explain_image

    model = outside_family
    x = torch.randn(1, 3, 16, 16)  # 4 x 4 patches, keys pooled to 2 x 2
    calls = _count_forwards(model)
    seen = explain_image(model, x)
    assert len(calls) == 1
    with torch.no_grad():
        torch.testing.assert_close(seen.logits, model(x), rtol=0, atol=0)
    assert len(seen.maps) == 2 and all(m.shape == (1, 2, 17, 5) for m in seen.maps)
    assert all((i.grid, i.key_grid, i.num_prefix, i.pitch) == ((4, 4), (2, 2), 1, (4.0, 4.0)) for i in seen.maps.infos)
    heat = rollout(seen.maps, "max", 0.5)
    assert heat.shape == (1, 16) and torch.isfinite(heat).all() and heat.sum() > 0
    assert attention_distance(seen.maps).shape == (2, 2)
    assert set(seen.panels) == {"cls_attention", "stem_maps"} and seen.panels["cls_attention"].shape == (2, 2)
    assert seen.panels["stem_maps"][0].shape == (4, 4, 4)
