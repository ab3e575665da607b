"""DeiT's distillation token and head: timm's deit_*_distilled models, the distilled option of every ViT, and
official checkpoint files."""
import pytest
import timm
import torch

import convvit
from convvit.inference.export import export_onnx


def _timm_pair(img_size=32):
    ours = convvit.create_model("deit_tiny_distilled", img_size=img_size, num_classes=7)
    theirs = timm.create_model("deit_tiny_distilled_patch16_224", img_size=img_size, num_classes=7)
    assert ours.state_dict().keys() == theirs.state_dict().keys()  # timm's (and the official repo's) keys
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def test_logits_equal_timms_in_eval_and_training_mode():
    ours, theirs = _timm_pair()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))  # the mean of the two heads
        ours.train(), theirs.train()
        torch.testing.assert_close(ours(x), theirs(x))  # still the mean until distilled training is on
        ours.set_distilled_training(True), theirs.set_distilled_training(True)
        (a, a_dist), (b, b_dist) = ours(x), theirs(x)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a_dist, b_dist)
    assert not torch.allclose(a, a_dist)  # two different heads
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), (a + a_dist) / 2)  # eval: the mean, whatever the switch


def test_official_deit_distilled_checkpoint_loads(tmp_path):
    """The official facebookresearch/deit files are ``{"model": state_dict}`` with timm's keys."""
    ref = timm.create_model("deit_tiny_distilled_patch16_224", img_size=32, num_classes=10).eval()
    path = tmp_path / "deit_tiny_distilled_patch16_224-b40b3cf7.pth"
    torch.save({"model": ref.state_dict()}, path)
    model = convvit.create_model("deit_tiny_distilled", img_size=32, num_classes=10, checkpoint_path=str(path))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref(x))
    other = convvit.create_model("deit_tiny_distilled", img_size=32, num_classes=4, checkpoint_path=str(path))
    assert other.head.out_features == other.head_dist.out_features == 4  # both heads re-made for 4 classes


@pytest.mark.parametrize("name", ["vit_c_nano_32px", "vit_p_nano_32px"])
def test_distilled_option_on_any_vit(name):
    plain = convvit.create_model(name, num_classes=5)
    model = convvit.create_model(name, num_classes=5, distilled=True)
    d = model.embed_dim
    extra = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == d + d + (d * 5 + 5)  # the token, its position slot, its head
    assert model.num_prefix_tokens == 2 and model.pos_embed.shape[1] == plain.pos_embed.shape[1] + 1
    assert "dist_token" in model.no_weight_decay()
    x = torch.randn(2, 3, 32, 32)
    model.train().set_distilled_training(True)
    cls, dist = model(x)
    assert cls.shape == dist.shape == (2, 5)
    (cls.sum() + dist.sum()).backward()
    assert model.dist_token.grad is not None and model.head_dist.weight.grad is not None
    model.reset_classifier(3)
    assert model.eval()(x).shape == (2, 3) and model.head_dist.out_features == 3
    model.reset_classifier(0, "")
    assert model(x).shape == (2, 2 + 64, d)  # no pooling: every token, both prefix tokens first
    with pytest.raises(ValueError, match="global_pool='token'"):
        convvit.create_model(name, distilled=True, global_pool="avg")


def test_onnx_export_of_a_distilled_model(tmp_path):
    pytest.importorskip("onnxruntime")
    model = convvit.create_model("vit_c_nano_32px", num_classes=4, distilled=True).eval()
    info = {"name": "vit_c_nano_32px", "num_classes": 4, "in_chans": 3, "img_size": (32, 32),
            "class_names": list("abcd"), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    exported = export_onnx(model, tmp_path / "m.onnx", info)  # compares the file's logits with the model's
    assert (tmp_path / "m.onnx").is_file() and exported is not None
