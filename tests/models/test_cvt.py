"""CvT: parameter counts, Hugging Face and official-checkpoint equivalence, stage features, timm contract."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import convvit
from convvit.models.cvt import CvT, tokens_to_map
from convvit.models.layers import QuickGELU

# REFERENCE section 4 (exact official parameter counts).
PARAMS = {"cvt_13": 19_997_000, "cvt_21": 31_623_000, "cvt_w24": 277_196_000}
CVT_13 = dict(dims=(64, 192, 384), depths=(1, 2, 10), heads=(1, 3, 6))


def _small(**kwargs) -> CvT:
    args = dict(embed_dims=(16, 32, 48), depths=(1, 1, 2), num_heads=(1, 2, 3), num_classes=4)
    return CvT(**{**args, **kwargs})


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_param_counts_match_the_paper(name):
    with torch.device("meta"):
        model = convvit.create_model(name)
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - PARAMS[name]) / PARAMS[name] < 0.005, params


def _randomise_batchnorm(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)


def test_hugging_face_cvt_13_gives_the_same_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.CvtConfig(
        num_labels=1000, embed_dim=list(CVT_13["dims"]), depth=list(CVT_13["depths"]), num_heads=list(CVT_13["heads"])
    )
    reference = transformers.CvtForImageClassification(config).eval()
    _randomise_batchnorm(reference)
    reference.save_pretrained(tmp_path)  # model.safetensors + config.json
    model = convvit.create_model("cvt_13", act_layer="gelu", checkpoint_path=tmp_path / "model.safetensors").eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected, actual = reference(pixel_values=x).logits, model(x)
    assert (expected - actual).abs().max().item() < 1e-4
    assert expected.abs().max().item() > 1e-2  # the comparison is not between two near-zero outputs


def _official_state_dict(dims, depths, heads, num_classes=1000, mlp_ratio=4) -> dict[str, torch.Tensor]:
    """A random state dict with the official microsoft/CvT key names and shapes (REFERENCE section 4)."""
    sd: dict[str, torch.Tensor] = {}
    kernels, in_chans = (7, 3, 3), 3
    for i, (dim, depth) in enumerate(zip(dims, depths)):
        s = f"stage{i}"
        sd[f"{s}.patch_embed.proj.weight"] = torch.randn(dim, in_chans, kernels[i], kernels[i]) * 0.1
        sd[f"{s}.patch_embed.proj.bias"] = torch.randn(dim) * 0.1
        sd[f"{s}.patch_embed.norm.weight"] = 1 + 0.1 * torch.randn(dim)
        sd[f"{s}.patch_embed.norm.bias"] = 0.1 * torch.randn(dim)
        if i == len(dims) - 1:
            sd[f"{s}.cls_token"] = torch.randn(1, 1, dim) * 0.02
        for j in range(depth):
            b = f"{s}.blocks.{j}"
            for norm in ("norm1", "norm2"):
                sd[f"{b}.{norm}.weight"] = 1 + 0.1 * torch.randn(dim)
                sd[f"{b}.{norm}.bias"] = 0.1 * torch.randn(dim)
            for t in "qkv":
                sd[f"{b}.attn.conv_proj_{t}.conv.weight"] = torch.randn(dim, 1, 3, 3) * 0.2
                sd[f"{b}.attn.conv_proj_{t}.bn.weight"] = 1 + 0.1 * torch.randn(dim)
                sd[f"{b}.attn.conv_proj_{t}.bn.bias"] = 0.1 * torch.randn(dim)
                sd[f"{b}.attn.conv_proj_{t}.bn.running_mean"] = 0.1 * torch.randn(dim)
                sd[f"{b}.attn.conv_proj_{t}.bn.running_var"] = 1 + 0.1 * torch.rand(dim)
                sd[f"{b}.attn.conv_proj_{t}.bn.num_batches_tracked"] = torch.tensor(100)
                sd[f"{b}.attn.proj_{t}.weight"] = torch.randn(dim, dim) * 0.02
                sd[f"{b}.attn.proj_{t}.bias"] = torch.zeros(dim)
            sd[f"{b}.attn.proj.weight"] = torch.randn(dim, dim) * 0.02
            sd[f"{b}.attn.proj.bias"] = torch.zeros(dim)
            sd[f"{b}.mlp.fc1.weight"] = torch.randn(dim * mlp_ratio, dim) * 0.02
            sd[f"{b}.mlp.fc1.bias"] = torch.zeros(dim * mlp_ratio)
            sd[f"{b}.mlp.fc2.weight"] = torch.randn(dim, dim * mlp_ratio) * 0.02
            sd[f"{b}.mlp.fc2.bias"] = torch.zeros(dim)
        in_chans = dim
    sd["norm.weight"] = torch.ones(dims[-1])
    sd["norm.bias"] = torch.zeros(dims[-1])
    sd["head.weight"] = torch.randn(num_classes, dims[-1]) * 0.02
    sd["head.bias"] = torch.zeros(num_classes)
    return sd


def test_official_checkpoint_loads_without_missing_or_unexpected_keys(tmp_path):
    official = _official_state_dict(**CVT_13)
    torch.save(official, tmp_path / "CvT-13-224x224-IN-1k.pth")
    model = convvit.create_model("cvt_13")
    info = convvit.load_checkpoint(model, tmp_path / "CvT-13-224x224-IN-1k.pth")
    assert info["format"] == "official_cvt"
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and not info["head_reset"]
    assert len(official) == len(model.state_dict())
    assert torch.equal(model.stages[2].blocks[7].attn.proj_k.weight, official["stage2.blocks.7.attn.proj_k.weight"])
    assert torch.equal(model.stages[1].blocks[1].attn.conv_proj_v.bn.running_var,
                       official["stage1.blocks.1.attn.conv_proj_v.bn.running_var"])
    assert torch.equal(model.stages[2].cls_token, official["stage2.cls_token"])


def test_class_token_only_in_the_last_stage_and_quick_gelu_by_default():
    with torch.device("meta"):
        model = convvit.create_model("cvt_13")
        gelu = convvit.create_model("cvt_13", act_layer="gelu")
    assert [k for k in model.state_dict() if "cls_token" in k] == ["stages.2.cls_token"]
    assert "pos_embed" not in " ".join(model.state_dict())
    assert isinstance(model.stages[0].blocks[0].mlp.act, QuickGELU)
    assert type(gelu.stages[0].blocks[0].mlp.act) is nn.GELU
    attn = model.stages[2].blocks[0].attn
    assert attn.scale == 384**-0.5
    assert attn.conv_proj_q.conv.stride == (1, 1) and attn.conv_proj_k.conv.stride == (2, 2)
    assert attn.conv_proj_v.conv.groups == 384 and attn.conv_proj_v.conv.bias is None
    assert model.stages[0].blocks[0].norm1.eps == 1e-5 and model.norm.eps == 1e-5


def test_any_input_size_and_three_stage_maps_at_strides_4_8_16():
    model = _small().eval()
    assert [(f["num_chs"], f["reduction"]) for f in model.feature_info] == [(16, 4), (32, 8), (48, 16)]
    for h, w in ((64, 64), (96, 128), (50, 70)):
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            final, maps = model.forward_intermediates(x)
            assert model(x).shape == (2, 4)
        sizes = [((h + 2 * 2 - 7) // 4 + 1, (w + 2 * 2 - 7) // 4 + 1)]  # conv 7/4/2, then 3/2/1 twice
        for _ in range(2):
            sizes.append(tuple((s + 2 * 1 - 3) // 2 + 1 for s in sizes[-1]))
        expected = [(2, c, *hw) for c, hw in zip((16, 32, 48), sizes)]
        assert [tuple(m.shape) for m in maps] == expected
        assert final.shape == (2, 1 + expected[2][2] * expected[2][3], 48)
    with torch.no_grad():
        only = model.forward_intermediates(torch.randn(1, 3, 64, 64), indices=[0, 1], stop_early=True,
                                           intermediates_only=True)
    assert [m.shape[1] for m in only] == [16, 32]


def test_forward_features_matches_the_class_token_path():
    model = _small().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert torch.allclose(model.forward_features(x), final, atol=1e-6)
        assert torch.allclose(model.forward_head(final), model(x), atol=1e-6)


def test_timm_contract():
    model = _small()
    x = torch.randn(2, 3, 64, 64)
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (2, 48)
    assert model.num_features == 48 and model.get_classifier().out_features == 4
    model.reset_classifier(6, "avg")
    assert model(x).shape == (2, 6)
    assert model.no_weight_decay() == {"stages.2.cls_token"}
    assert set(model.group_matcher()) == {"stem", "blocks"}
    with pytest.raises(TypeError):
        convvit.create_model("cvt_13", not_an_argument=1)
    with pytest.raises(ValueError, match="cls_token"):
        CvT(cls_token=False)
    pruned = _small()
    assert pruned.prune_intermediate_layers(indices=[0, 1]) == [0, 1] and len(pruned.stages) == 2


def test_grad_checkpointing_gives_the_same_gradients():
    model = _small(drop_path_rate=0.0).eval()  # eval: BatchNorm uses running stats both times
    x = torch.randn(2, 3, 64, 64)
    model(x).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).sum().backward()
    for a, p in zip(plain, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_cvt_names_are_registered_into_timm():
    import timm

    with torch.device("meta"):
        model = timm.create_model("cvt_13", num_classes=3)
    assert isinstance(model, CvT) and model.num_classes == 3


def test_folded_quick_gelu_mlp_matches_the_plain_one():
    from convvit.models.cvt import QuickGELUMlp
    from convvit.models.layers import Mlp

    plain = Mlp(16, 64, act_layer=QuickGELU)
    folded = QuickGELUMlp(16, 64, act_layer=QuickGELU)
    folded.load_state_dict(plain.state_dict())
    x = torch.randn(3, 5, 16, requires_grad=True)
    assert torch.allclose(folded(x), plain(x), atol=1e-6)
    g_plain = torch.autograd.grad(plain(x).square().sum(), [x, plain.fc1.weight])
    g_folded = torch.autograd.grad(folded(x).square().sum(), [x, folded.fc1.weight])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_plain, g_folded))
    for no_autograd in (torch.no_grad, torch.inference_mode):  # the in-place inference path
        with no_autograd():
            assert torch.allclose(folded(x), plain(x), atol=1e-6)
    assert isinstance(_small().stages[0].blocks[0].mlp, QuickGELUMlp)


def test_eval_folds_batchnorm_into_the_conv_and_training_still_updates_its_statistics():
    from convvit.models.cvt import ConvProjection

    proj = ConvProjection(8, stride=2)
    _randomise_batchnorm(proj)
    x = torch.randn(2, 8, 9, 9)

    def unfused() -> torch.Tensor:  # the two layers one after the other, as the checkpoints were trained
        return proj.bn(proj.conv(x)).flatten(2).transpose(1, 2)

    proj.eval()
    assert torch.allclose(proj(x), unfused(), atol=1e-6)
    with torch.no_grad():  # changed weights and statistics are picked up: nothing is cached
        proj.conv.weight.mul_(1.5)
        proj.bn.running_var.mul_(2.0)
        proj.bn.bias.add_(0.3)
    assert torch.allclose(proj(x), unfused(), atol=1e-6)
    # gradients reach both layers through the fold, as through the two layers
    grads = torch.autograd.grad(proj(x).square().sum(), [proj.conv.weight, proj.bn.weight, proj.bn.bias])
    expected = torch.autograd.grad(unfused().square().sum(), [proj.conv.weight, proj.bn.weight, proj.bn.bias])
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(grads, expected))

    # training after eval: batch statistics, and the running ones move
    mean, var, seen = proj.bn.running_mean.clone(), proj.bn.running_var.clone(), int(proj.bn.num_batches_tracked)
    proj.train()
    y = proj(x)
    batch = proj.conv(x)
    batch_var = batch.var((0, 2, 3), unbiased=False, keepdim=True)
    normalised = (batch - batch.mean((0, 2, 3), keepdim=True)) / torch.sqrt(batch_var + 1e-5)
    expected = normalised * proj.bn.weight.view(1, -1, 1, 1) + proj.bn.bias.view(1, -1, 1, 1)
    assert torch.allclose(y, expected.flatten(2).transpose(1, 2), atol=1e-5)
    assert int(proj.bn.num_batches_tracked) == seen + 1
    with torch.no_grad():  # momentum 0.1; the running variance is the unbiased one
        assert torch.allclose(proj.bn.running_mean, 0.9 * mean + 0.1 * batch.mean((0, 2, 3)), atol=1e-6)
        assert torch.allclose(proj.bn.running_var, 0.9 * var + 0.1 * batch.var((0, 2, 3)), atol=1e-5)
    proj.eval()  # and eval uses the updated statistics
    assert torch.allclose(proj(x), unfused(), atol=1e-6)


def test_eval_model_matches_the_unfused_computation():
    from convvit.models.cvt import ConvProjection

    model = _small().eval()
    _randomise_batchnorm(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fused = model(x)
        for m in model.modules():
            if isinstance(m, ConvProjection):  # the unfused forward: conv, then BatchNorm
                m.forward = lambda t, m=m: m.bn(m.conv(t)).flatten(2).transpose(1, 2)
        unfused = model(x)
    assert torch.allclose(fused, unfused, atol=1e-5) and fused.abs().max() > 1e-2


def test_every_stage_and_attention_argument_reaches_its_layer():
    # one distinct value per argument, so that two of them swapped (they were passed by position) show
    model = CvT(embed_dims=(8, 16, 24), depths=(1, 2, 2), num_heads=(1, 2, 3), mlp_ratio=2.0, qkv_bias=False,
                patch_sizes=(5, 3, 7), patch_strides=(3, 2, 1), patch_paddings=(1, 2, 0), kernel_qkv=5, stride_q=2,
                stride_kv=3, padding_q=0, padding_kv=2, act_layer="gelu", norm_eps=1e-3, attn_drop_rate=0.25,
                proj_drop_rate=0.125, drop_path_rate=(0.0, 0.5, 0.75), num_classes=2)
    for i, stage in enumerate(model.stages):
        embed = stage.patch_embed.proj
        assert (embed.in_channels, embed.out_channels) == ((3, 8, 16)[i], (8, 16, 24)[i])
        assert (embed.kernel_size[0], embed.stride[0], embed.padding[0]) == ((5, 3, 7)[i], (3, 2, 1)[i], (1, 2, 0)[i])
        assert stage.patch_embed.norm.eps == 1e-3
        assert (stage.cls_token is not None) == (i == 2)
        for j, block in enumerate(stage.blocks):
            attn = block.attn
            assert attn.num_heads == (1, 2, 3)[i] and attn.dim_out == (8, 16, 24)[i]
            assert attn.with_cls_token == (i == 2) and attn.proj_q.bias is None
            assert attn.attn_drop == 0.25 and attn.proj_drop.p == 0.125 and block.mlp.drop.p == 0.125
            for proj, stride, padding in ((attn.conv_proj_q, 2, 0), (attn.conv_proj_k, 3, 2), (attn.conv_proj_v, 3, 2)):
                assert (proj.conv.kernel_size, proj.conv.stride, proj.conv.padding) == (
                    (5, 5), (stride,) * 2, (padding,) * 2
                )
            assert block.mlp.fc1.out_features == 2 * (8, 16, 24)[i] and type(block.mlp.act) is nn.GELU
            assert block.norm1.eps == 1e-3
            drop_path = getattr(block.drop_path1, "drop_prob", 0.0)
            assert drop_path == pytest.approx(((0.0,), (0.0, 0.5), (0.0, 0.75))[i][j])


@pytest.mark.parametrize("stride_kv, padding_kv", [(2, 1), (3, 0), (1, 1)])
def test_attention_probs_come_with_the_key_grid_of_the_strided_keys(stride_kv, padding_kv):
    from convvit.models.cvt import ConvAttention

    attn = ConvAttention(dim_in=8, dim_out=8, num_heads=2, stride_kv=stride_kv, padding_kv=padding_kv,
                         with_cls_token=True).eval()
    for grid in ((7, 5), (4, 4)):
        x = torch.randn(2, 1 + grid[0] * grid[1], 8)
        with torch.no_grad():
            probs, key_grid = attn.attention_probs(x, grid)
            keys = attn.conv_proj_k(tokens_to_map(x[:, 1:], grid).contiguous())  # (B, H_kv * W_kv, C)
        assert probs.shape == (2, 2, x.shape[1], 1 + key_grid[0] * key_grid[1])
        assert key_grid[0] * key_grid[1] == keys.shape[1]
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))
