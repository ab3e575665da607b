import math

import pytest
import timm
import torch
import torch.nn.functional as F

import convvit
from convvit.models.vit import VisionTransformer


def test_vit_c_drops_one_block_and_swaps_the_stem():
    with torch.device("meta"):
        p, c = convvit.create_model("vit_p_4gf"), convvit.create_model("vit_c_4gf")
    assert len(p.blocks) == 12 and len(c.blocks) == 11
    assert type(p.patch_embed).__name__ == "PatchifyStem" and type(c.patch_embed).__name__ == "ConvStem"
    assert [layer.conv.out_channels for layer in c.patch_embed.stem] == [48, 96, 192, 384]
    assert c.blocks[0].mlp.fc1.out_features == 1152 and c.blocks[0].attn.num_heads == 6
    assert c.pos_embed.shape == (1, 197, 384) and c.cls_token.shape == (1, 1, 384)
    assert all(b.norm1.eps == 1e-6 for b in c.blocks) and c.norm.eps == 1e-6


def test_18gf_stem_strides():
    with torch.device("meta"):
        m = convvit.create_model("vit_c_18gf")
    assert [layer.conv.stride[0] for layer in m.patch_embed.stem] == [2, 2, 1, 2, 1, 2]
    assert [layer.conv.out_channels for layer in m.patch_embed.stem] == [64, 128, 128, 256, 256, 512]


def test_pycls_initialisation():
    m = convvit.create_model("vit_c_1gf", img_size=64)
    assert torch.count_nonzero(m.head.weight) == 0 and torch.count_nonzero(m.head.bias) == 0
    assert torch.count_nonzero(m.cls_token) == 0
    assert abs(m.pos_embed.std().item() - 0.02) < 0.003
    fc1 = m.blocks[0].mlp.fc1
    bound = math.sqrt(6 / (fc1.in_features + fc1.out_features))  # xavier uniform
    assert fc1.weight.abs().max() <= bound and fc1.weight.abs().max() > 0.9 * bound
    assert fc1.bias.abs().max() < 1e-4  # normal(std=1e-6)
    p = convvit.create_model("vit_p_1gf", img_size=64)
    fan_in = 3 * 16 * 16
    assert abs(p.patch_embed.proj.weight.std().item() - 0.88 * math.sqrt(1 / fan_in)) < 0.01  # truncated normal


def test_pycls_conv_stem_initialisation():
    """pycls/models/vit.py (commit 5719de6, init as of 8709e4f): 3x3 convs normal(0, sqrt(2 / out_channels)),
    the last 1x1 conv normal(0, sqrt(1 / out_channels)) with zero bias."""
    torch.manual_seed(0)
    m = convvit.create_model("vit_c_4gf", img_size=64)
    for layer in m.patch_embed.stem:
        w = layer.conv.weight
        assert w.mean().abs() < 0.1 * w.std()
        assert w.std().item() == pytest.approx(math.sqrt(2.0 / w.shape[0]), rel=0.05), w.shape
    proj = m.patch_embed.proj
    assert proj.weight.std().item() == pytest.approx(math.sqrt(1.0 / proj.out_channels), rel=0.02)
    assert torch.count_nonzero(proj.bias) == 0


def test_mean_pool_classifier_has_no_class_token():
    m = convvit.create_model("vit_c_nano_32px", global_pool="pooled")
    assert m.cls_token is None and m.pos_embed.shape[1] == 64
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 1000)


def test_small_image_grayscale():
    m = convvit.create_model("vit_c_nano_32px", img_size=28, in_chans=1, num_classes=10)
    assert m(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert m.pretrained_cfg["input_size"] == (1, 28, 28) and len(m.pretrained_cfg["mean"]) == 1


def test_wrong_input_size_is_a_clear_error_unless_dynamic():
    m = convvit.create_model("vit_c_nano_32px")
    with pytest.raises(ValueError, match="input is 48x48 but the model was built for 32x32"):
        m(torch.randn(1, 3, 48, 48))
    m = convvit.create_model("vit_c_nano_32px", dynamic_img_size=True).eval()
    assert m(torch.randn(1, 3, 48, 48)).shape == (1, 1000)


def _bicubic_by_hand(pos_embed: torch.Tensor, built: int, new: int) -> torch.Tensor:
    """The class-token slot kept, the (built x built) grid bicubically resized (antialiased, as timm's default)."""
    prefix, grid = pos_embed[:, :1], pos_embed[:, 1:]  # (1, 1, C), (1, built*built, C)
    grid = grid.reshape(1, built, built, -1).permute(0, 3, 1, 2)  # (1, C, built, built)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False, antialias=True)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)], dim=1)


@pytest.mark.parametrize("size", [16, 48])
def test_dynamic_size_resamples_the_position_embedding_bicubically(size):
    """A dynamic-size model at another input size is the model built for that size with the position embedding
    resized bicubically by hand; at its own size the resampling is the identity."""
    torch.manual_seed(0)
    dynamic = convvit.create_model("vit_c_nano_32px", num_classes=5, dynamic_img_size=True).eval()
    with torch.no_grad():
        dynamic.pos_embed.normal_(std=1.0)  # a non-smooth embedding, so that a wrong resampling shows
    built = dynamic.patch_embed.grid_size[0]
    assert dynamic._pos_embed_for((built, built)) is dynamic.pos_embed

    fixed = convvit.create_model("vit_c_nano_32px", num_classes=5, img_size=size).eval()
    state = dict(dynamic.state_dict(), pos_embed=_bicubic_by_hand(dynamic.pos_embed.detach(), built, size // 4))
    fixed.load_state_dict(state)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(dynamic._pos_embed_for((size // 4, size // 4)), fixed.pos_embed)
        torch.testing.assert_close(dynamic(x), fixed(x))

        same = convvit.create_model("vit_c_nano_32px", num_classes=5).eval()
        same.load_state_dict(dynamic.state_dict())
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(dynamic(x), same(x), rtol=0, atol=0)


def test_drop_path_is_stochastic_in_training_only():
    m = convvit.create_model("vit_p_nano_32px", drop_path_rate=0.5)
    assert m.blocks[0].drop_path1.__class__.__name__ == "Identity"  # linear rule: first block 0
    assert m.blocks[-1].drop_path1.drop_prob == pytest.approx(0.5)
    x = torch.randn(4, 3, 32, 32)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    torch.manual_seed(1)
    a = m.forward_features(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, m.forward_features(x))


def test_deit_tiny_matches_timm_weights(tmp_path):
    """timm's deit_tiny_patch16_224 (random init, saved to a file) loaded into convvit's deit_tiny: same logits."""
    ref = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    path = tmp_path / "deit_tiny.pth"
    torch.save({"model": ref.state_dict()}, path)
    ours = convvit.create_model("deit_tiny", checkpoint_path=path).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - ref(x)).abs().max().item()
    assert diff < 1e-5


def test_constructor_validation():
    with pytest.raises(ValueError, match="stem_type"):
        VisionTransformer(img_size=32, stem_type="hybrid")
    with pytest.raises(ValueError, match="global_pool"):
        VisionTransformer(img_size=32, global_pool="max")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        VisionTransformer(img_size=32, embed_dim=100, num_heads=3)
