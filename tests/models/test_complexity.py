import pytest
import torch

import convvit
from convvit.models.complexity import PUBLISHED_COMPLEXITY, count_complexity
from convvit.models.vit import VisionTransformer


@pytest.mark.parametrize("name", sorted(PUBLISHED_COMPLEXITY))
def test_paper_table_within_two_percent(name):
    flops_g, params_m, acts_m = PUBLISHED_COMPLEXITY[name]
    cx = count_complexity(name)
    assert cx["flops"] / 1e9 == pytest.approx(flops_g, rel=0.02)
    assert cx["params"] / 1e6 == pytest.approx(params_m, rel=0.02)
    assert cx["acts"] / 1e6 == pytest.approx(acts_m, rel=0.02)


def test_vit_c_and_vit_p_twins_have_equal_flops():
    for p, c, size in [("vit_p_nano_32px", "vit_c_nano_32px", 28), ("vit_p_tiny_32px", "vit_c_tiny_32px", 32)]:
        fp, fc = count_complexity(p, img_size=size)["flops"], count_complexity(c, img_size=size)["flops"]
        assert fc == pytest.approx(fp, rel=0.02)


def test_exact_count_of_a_tiny_vit():
    """Hand count in the pycls convention: D=8, 2 heads, MLP 16, 1 block, 8x8 patches of a 16x16 RGB image."""
    m = VisionTransformer(img_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=2, mlp_dim=16, num_classes=3)
    L, D, M, P = 5, 8, 16, 4  # tokens (4 patches + class), width, MLP, patches
    flops = (
        P * (8 * 8 * 3 * D + D)  # patchify conv + bias
        + L * (D * 3 * D + 3 * D)  # qkv
        + 2 * L * L * D  # Q K^T and A V
        + L * (D * D + D)  # attention output projection
        + L * (D * M + M) + L * (M * D + D)  # MLP
        + (D * 3 + 3)  # head on the class token
    )
    acts = P * D + L * 3 * D + 2 * L * L + L * D + L * D + L * M + L * D + 3
    cx = count_complexity(m)
    assert cx["flops"] == flops
    assert cx["acts"] == acts
    assert cx["params"] == sum(p.numel() for p in m.parameters())


def test_meta_and_real_counts_agree():
    real = count_complexity(convvit.create_model("vit_c_nano_32px"))
    assert count_complexity("vit_c_nano_32px") == real


def test_count_restores_training_mode():
    m = convvit.create_model("vit_p_nano_32px").train()
    count_complexity(m)
    assert m.training
