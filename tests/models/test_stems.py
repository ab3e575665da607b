import pytest
import torch
import torch.nn as nn

from convvit.models.stems import ConvStem, PatchifyStem


def test_patchify_shapes_and_keys():
    stem = PatchifyStem(img_size=64, patch_size=16, in_chans=3, embed_dim=32)
    assert stem(torch.randn(2, 3, 64, 64)).shape == (2, 16, 32)
    assert set(stem.state_dict()) == {"proj.weight", "proj.bias"}
    assert stem.proj.kernel_size == (16, 16) and stem.proj.stride == (16, 16)


def test_conv_stem_matches_paper_layout():
    """3x3 conv (no bias) -> BN -> ReLU per layer, then a 1x1 conv with bias to the width."""
    stem = ConvStem(img_size=224, in_chans=3, embed_dim=384, channels=(48, 96, 192, 384), strides=(2, 2, 2, 2))
    layers = list(stem.stem)
    assert [layer.conv.out_channels for layer in layers] == [48, 96, 192, 384]
    for layer in layers:
        assert layer.conv.kernel_size == (3, 3) and layer.conv.stride == (2, 2) and layer.conv.padding == (1, 1)
        assert layer.conv.bias is None
        assert isinstance(layer.norm, nn.BatchNorm2d) and isinstance(layer.act, nn.ReLU)
    assert stem.proj.kernel_size == (1, 1) and stem.proj.bias is not None and stem.proj.out_channels == 384
    assert stem.patch_size == 16 and stem.grid_size == (14, 14)
    assert stem(torch.randn(1, 3, 224, 224)).shape == (1, 196, 384)


@pytest.mark.parametrize("norm,act,norm_type,act_type", [
    ("layernorm", "gelu", "LayerNorm2d", nn.GELU),
    ("none", "none", "Identity", nn.Identity),
])
def test_conv_stem_norm_and_activation_options(norm, act, norm_type, act_type):
    stem = ConvStem(img_size=32, in_chans=1, embed_dim=16, channels=(8, 16), strides=(2, 2), norm=norm, act=act)
    assert type(stem.stem[0].norm).__name__ == norm_type
    assert isinstance(stem.stem[0].act, act_type)
    assert (stem.stem[0].conv.bias is None) == (norm != "none")  # a bias only where nothing normalises
    assert stem(torch.randn(2, 1, 32, 32)).shape == (2, 64, 16)


def test_conv_stem_custom_kernels():
    stem = ConvStem(img_size=32, in_chans=3, embed_dim=8, channels=(4, 8), strides=(2, 1), kernels=(5, 3))
    assert stem.stem[0].conv.kernel_size == (5, 5) and stem.stem[0].conv.padding == (2, 2)
    assert stem(torch.randn(1, 3, 32, 32)).shape == (1, 256, 8)


def test_strides_must_multiply_to_patch_size():
    with pytest.raises(ValueError, match=r"product of strides \[2, 2, 2\] is 8, but patch_size is 16"):
        ConvStem(img_size=224, channels=(8, 16, 32), strides=(2, 2, 2), patch_size=16)


def test_lengths_must_agree():
    with pytest.raises(ValueError, match=r"channels \(3 entries.*strides \(4"):
        ConvStem(img_size=224, channels=(8, 16, 32), strides=(2, 2, 2, 2))
    with pytest.raises(ValueError, match="kernels"):
        ConvStem(img_size=224, channels=(8, 16), strides=(2, 2), kernels=(3, 3, 3))


def test_img_size_must_divide_by_total_stride():
    with pytest.raises(ValueError, match=r"img_size 30x30 is not divisible by the conv stem total stride 4"):
        ConvStem(img_size=30, channels=(8, 16), strides=(2, 2))
    with pytest.raises(ValueError, match=r"not divisible by the patchify stem total stride 16"):
        PatchifyStem(img_size=100, patch_size=16)


def test_unknown_norm_or_activation():
    with pytest.raises(ValueError, match="unknown norm 'groupnorm'"):
        ConvStem(img_size=32, channels=(8,), strides=(2,), norm="groupnorm")
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        ConvStem(img_size=32, channels=(8,), strides=(2,), act="tanhh")
