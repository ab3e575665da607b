"""ConViT: parameter counts, equivalence with timm, GPSA maths, local init, timm contract."""
from __future__ import annotations

import pytest
import timm
import torch

import convvit
from convvit.models.convit import ConViT, GatedPositionalAttention, relative_positions

# REFERENCE section 3 (params in millions).
PARAMS_M = {"convit_tiny": 5.71, "convit_small": 27.78, "convit_base": 86.54}


def _tiny(**kwargs) -> ConViT:
    """A small ConViT (9 heads on a 3x3 grid, 2 GPSA + 1 plain block) for fast tests."""
    args = dict(img_size=32, patch_size=8, embed_dim=72, num_heads=9, depth=3, local_up_to_layer=2, num_classes=5)
    return ConViT(**{**args, **kwargs})


@pytest.mark.parametrize("name", sorted(PARAMS_M))
def test_param_counts_match_the_paper(name):
    with torch.device("meta"):
        model = convvit.create_model(name)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - PARAMS_M[name]) / PARAMS_M[name] < 0.01, params


def test_timm_convit_tiny_checkpoint_gives_the_same_logits(tmp_path):
    reference = timm.create_model("convit_tiny", img_size=64, num_classes=10).eval()
    with torch.no_grad():  # move every GPSA gate away from its init so both branches matter
        for block in reference.blocks[:10]:
            block.attn.gating_param.normal_(0.0, 2.0)
    torch.save(reference.state_dict(), tmp_path / "convit_tiny.pth")
    model = convvit.create_model("convit_tiny", img_size=64, num_classes=10,
                                 checkpoint_path=tmp_path / "convit_tiny.pth")
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, actual = reference(x), model(x)
    assert actual.shape == (2, 10)
    assert (expected - actual).abs().max().item() < 1e-5


def test_state_dict_keys_are_timms():
    with torch.device("meta"):
        ours = convvit.create_model("convit_tiny").state_dict()
        theirs = timm.create_model("convit_tiny").state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert "blocks.9.attn.gating_param" in ours and "blocks.10.attn.qkv.weight" in ours
    assert "blocks.10.attn.qkv.bias" not in ours


def test_gated_attention_is_the_mixture_of_content_and_positional_attention():
    attn = GatedPositionalAttention(dim=16, num_heads=4).eval()
    with torch.no_grad():
        attn.gating_param.copy_(torch.tensor([-3.0, 0.0, 1.0, 4.0]))
    rel = relative_positions((3, 3))
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        q, k, v = attn._qkv(x)
        content = (q @ k.transpose(-2, -1) * 4**-0.5).softmax(-1)  # head_dim 4
        positional = attn.pos_proj(rel).permute(2, 0, 1).softmax(-1)
        gate = torch.sigmoid(attn.gating_param).view(-1, 1, 1)
        mixed = (1 - gate) * content + gate * positional
        mixed = mixed / mixed.sum(-1, keepdim=True)
        expected = attn.proj((mixed @ v).transpose(1, 2).reshape(2, 9, 16))
        assert torch.allclose(attn(x, (3, 3)), expected, atol=1e-6)
        assert torch.allclose(attn.attention_map(x, rel), mixed, atol=1e-6)


def test_relative_positions_hold_dx_dy_and_squared_distance():
    rel = relative_positions((2, 3))  # patches in row-major order: patch 1 is (row 0, col 1), patch 5 is (1, 2)
    assert rel.shape == (6, 6, 3)
    assert rel[1, 5].tolist() == [1.0, 1.0, 2.0]
    assert rel[5, 0].tolist() == [-2.0, -1.0, 5.0]
    assert torch.equal(rel[:, :, 0], -rel[:, :, 0].T)


def test_relative_positions_are_built_once_for_the_built_grid(monkeypatch):
    model = _tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    gpsa = [b.attn for b in model.blocks[: model.local_up_to_layer]]
    assert all(torch.equal(a.rel_pos, relative_positions((4, 4)).int()) for a in gpsa)

    def rebuilt(*args, **kwargs):
        raise AssertionError("relative positions rebuilt in the forward")

    monkeypatch.setattr("convvit.models.convit.relative_positions", rebuilt)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
        gpsa[0].attention_probs(torch.randn(2, 16, 72), (4, 4))
    # not state: timm's keys only
    assert not any("rel_pos" in k for k in model.state_dict())


def test_relative_positions_survive_a_half_precision_round_trip():
    """They are integers, so casting the model to bfloat16 and back does not round 338 (= 13^2 + 13^2) to 336."""
    model = convvit.create_model("convit_tiny", num_classes=3).eval()
    before = model.blocks[0].attn.rel_pos.clone()
    model.to(torch.bfloat16).to(torch.float32)
    assert torch.equal(model.blocks[0].attn.rel_pos, before) and int(before[..., 2].max()) == 338


def test_other_grids_still_get_their_own_relative_positions():
    built = GatedPositionalAttention(dim=16, num_heads=4, grid_size=(3, 3)).eval()
    fresh = GatedPositionalAttention(dim=16, num_heads=4).eval()
    fresh.load_state_dict(built.state_dict())
    with torch.no_grad():
        for grid in ((3, 3), (2, 4), (4, 2)):
            x = torch.randn(2, grid[0] * grid[1], 16)
            torch.testing.assert_close(built(x, grid), fresh(x, grid), rtol=0, atol=0)


def test_local_init_makes_each_head_attend_to_its_own_neighbour():
    model = _tiny(locality_strength=1.0)
    attn = model.blocks[0].attn
    assert torch.equal(attn.v.weight, torch.eye(72))
    assert torch.equal(attn.gating_param, torch.ones(9))
    grid = model.patch_embed.grid_size  # 4x4
    rel = relative_positions(grid)
    positional = attn.positional_attention(rel)  # (heads, N, N)
    centre = 1 * grid[1] + 1  # the patch at row 1, col 1
    for h1 in range(3):
        for h2 in range(3):
            head = h1 + 3 * h2
            target = positional[head, centre].argmax().item()
            dy, dx = target // grid[1] - 1, target % grid[1] - 1
            assert (dx, dy) == (h2 - 1, h1 - 1)


def test_class_token_joins_before_the_first_plain_block():
    model = _tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model.forward_intermediates(x, indices=[1, 2], output_fmt="NLC", return_prefix_tokens=True,
                                          intermediates_only=True)
    (gpsa_tokens, gpsa_prefix), (plain_tokens, plain_prefix) = out
    assert gpsa_tokens.shape == (2, 16, 72) and gpsa_prefix.shape == (2, 0, 72)
    assert plain_tokens.shape == (2, 16, 72) and plain_prefix.shape == (2, 1, 72)
    assert model.forward_features(x).shape == (2, 17, 72)


def test_other_square_sizes_rebuild_relative_positions_and_resample_position_embedding():
    model = convvit.create_model("convit_tiny", img_size=48, num_classes=3)
    assert model.pos_embed.shape == (1, 9, 192)
    assert model(torch.randn(1, 3, 48, 48)).shape == (1, 3)
    with pytest.raises(ValueError, match="built for 48x48"):
        model(torch.randn(1, 3, 64, 64))
    dynamic = convvit.create_model("convit_tiny", img_size=48, num_classes=3, dynamic_img_size=True)
    assert dynamic(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_timm_contract():
    model = _tiny()
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 72)
    assert model.num_features == 72 and model.get_classifier().out_features == 5
    model.reset_classifier(7, "avg")
    assert model(x).shape == (2, 7) and model.global_pool == "avg"
    model.reset_classifier(0)
    assert model(x).shape == (2, 72)
    assert model.no_weight_decay() == {"pos_embed", "cls_token"}
    assert set(model.group_matcher()) == {"stem", "blocks"}
    assert [f["reduction"] for f in model.feature_info] == [8, 8, 8]
    final, maps = model.forward_intermediates(x, indices=2)
    assert final.shape == (2, 17, 72) and [m.shape for m in maps] == [(2, 72, 4, 4)] * 2
    with pytest.raises(TypeError):
        convvit.create_model("convit_tiny", not_an_argument=1)
    cfg = convvit.create_model("convit_tiny", img_size=32, in_chans=1).pretrained_cfg
    assert cfg["input_size"] == (1, 32, 32) and cfg["architecture"] == "convit_tiny"


def test_grad_checkpointing_gives_the_same_gradients():
    model = _tiny(drop_path_rate=0.0)
    x = torch.randn(2, 3, 32, 32)
    model(x).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for a, p in zip(plain, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_timm_keeps_its_own_convit():
    assert type(timm.create_model("convit_tiny", img_size=32, patch_size=8)).__module__.startswith("timm")
