"""Weights: safetensors round trip, checkpoint formats, head reset, resampling, refusal of unsafe or broken files."""
from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess
import sys

import pytest
import timm
import torch

import convvit
from convvit.models.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    convert_checkpoint,
    load_checkpoint,
    read_checkpoint_metadata,
    save_weights,
)
from convvit.models.convit import ConViT


def test_checkpoint_files_import_no_model_and_no_registry():
    """Reading and writing checkpoint files (training writes one every epoch) must not build the model registry."""
    code = (
        "import sys\n"
        "import convvit.checkpoints.files, convvit.checkpoints.containers, convvit.checkpoints.layout\n"
        "print(sorted(m for m in sys.modules if m.startswith('convvit.models')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _convit(**kwargs) -> ConViT:
    """A small ConViT built through the registry (so it has a pretrained_cfg)."""
    args = dict(img_size=32, num_classes=5, depth=3, local_up_to_layer=2)
    return convvit.create_model("convit_tiny", **{**args, **kwargs}).eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> bool:
    sb = b.state_dict()
    return all(torch.equal(v, sb[k]) for k, v in a.state_dict().items() if not k.startswith(skip))


def test_safetensors_round_trip_keeps_weights_and_metadata(tmp_path):
    model = _convit()
    names = ["cat", "dog", "eel", "fox", "gnu"]
    save_weights(model, tmp_path / "w" / "model.safetensors", {"class_names": json.dumps(names)})
    assert os.listdir(tmp_path / "w") == ["model.safetensors"]  # no temporary file left behind
    meta = read_checkpoint_metadata(tmp_path / "w" / "model.safetensors")
    assert meta["architecture"] == "convit_tiny" and meta["num_classes"] == "5"
    assert json.loads(meta["class_names"]) == names
    other = _convit()
    info = load_checkpoint(other, tmp_path / "w" / "model.safetensors")
    assert info["format"] == "convit" and info["metadata"]["class_names"] == json.dumps(names)
    assert _same_weights(model, other)


def test_lightning_checkpoint_loads_raw_or_ema_weights(tmp_path):
    raw, ema = _convit(), _convit()
    state = {f"model.{k}": v for k, v in raw.state_dict().items()}
    state.update({f"ema_model.module.{k}": v for k, v in ema.state_dict().items()})
    ckpt = {
        "epoch": 3, "global_step": 30, "pytorch-lightning_version": "2.5.0", "optimizer_states": [],
        "state_dict": state, "hyper_parameters": {"model_name": "convit_tiny", "class_names": list("abcde")},
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    target = _convit()
    info = load_checkpoint(target, tmp_path / "last.ckpt")
    assert info["container"] == "Lightning checkpoint" and _same_weights(raw, target)
    assert json.loads(info["metadata"]["class_names"]) == list("abcde")
    load_checkpoint(target, tmp_path / "last.ckpt", use_ema=True)
    assert _same_weights(ema, target)
    assert json.loads(read_checkpoint_metadata(tmp_path / "last.ckpt")["class_names"]) == list("abcde")


def test_a_model_prefix_beside_a_models_own_keys_is_part_of_them(tmp_path, monkeypatch):
    """Whether ``model.`` wraps the network or belongs to it is decided by the key formats the families
    register: a new family's format counts without an edit to the container code."""
    from convvit.models.checkpoints import formats

    monkeypatch.setattr(formats, "_formats", dict(formats._formats))
    formats.register_key_format(formats.KeyFormat(
        "test_trunk", "a test trunk model", detect=lambda keys: any(k.startswith("trunk.") for k in keys)
    ))
    own = {"trunk.weight": torch.ones(2), "model.weight": torch.zeros(2)}
    torch.save(own, tmp_path / "own.pth")
    state, info = convvit.models.checkpoints.read_checkpoint(tmp_path / "own.pth")
    assert state.keys() == own.keys() and info["format"] == "test_trunk"
    # beside a LightningModule's network there is nothing of a model: "model." is the wrapper
    wrapped = {"model.trunk.weight": torch.ones(2), "ema_model.module.trunk.weight": torch.ones(2)}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    assert convvit.models.checkpoints.read_checkpoint(tmp_path / "wrapped.pth")[0].keys() == {"trunk.weight"}


def test_timm_deit_checkpoint_loads_directly(tmp_path):
    reference = timm.create_model("deit_tiny_patch16_224", img_size=32, num_classes=5).eval()
    sd = reference.state_dict()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)
    model = convvit.create_model("deit_tiny", img_size=32, num_classes=5).eval()
    for wrapper in (None, "model", "state_dict"):  # plain, official DeiT, timm training checkpoint
        torch.nn.init.zeros_(model.pos_embed)
        torch.save(sd if wrapper is None else {wrapper: sd, "epoch": 1}, tmp_path / "deit.pth")
        load_checkpoint(model, tmp_path / "deit.pth")
        with torch.no_grad():
            assert (expected - model(x)).abs().max().item() < 1e-5, wrapper


def test_timm_training_checkpoint_with_argparse_args_loads(tmp_path):
    import argparse

    model = _convit()
    torch.save({"epoch": 1, "arch": "convit_tiny", "state_dict": model.state_dict(),
                "args": argparse.Namespace(lr=0.1)}, tmp_path / "checkpoint.pth.tar")
    target = _convit()
    load_checkpoint(target, tmp_path / "checkpoint.pth.tar")
    assert _same_weights(model, target)
    ema = _convit()
    torch.save({"state_dict": model.state_dict(), "state_dict_ema": ema.state_dict()}, tmp_path / "ema.pth.tar")
    load_checkpoint(target, tmp_path / "ema.pth.tar", use_ema=True)
    assert _same_weights(ema, target)
    with pytest.raises(CheckpointError, match="no EMA"):
        load_checkpoint(target, tmp_path / "checkpoint.pth.tar", use_ema=True)


def test_other_num_classes_resets_the_head_and_says_so(tmp_path, caplog):
    model = _convit(num_classes=5)
    save_weights(model, tmp_path / "five.safetensors")
    target = _convit(num_classes=3)
    head_before = target.head.weight.clone()
    with caplog.at_level(logging.WARNING, logger="convvit.models.checkpoints"):
        info = load_checkpoint(target, tmp_path / "five.safetensors")
    assert info["head_reset"] and "5 classes" in caplog.text and "3" in caplog.text
    assert torch.equal(target.head.weight, head_before)
    assert _same_weights(model, target, skip=("head.",))


def test_other_img_size_resamples_the_position_embedding(tmp_path):
    from timm.layers import resample_abs_pos_embed

    model = _convit(img_size=32)  # 2x2 patches
    save_weights(model, tmp_path / "w.safetensors")
    target = _convit(img_size=64)  # 4x4 patches
    info = load_checkpoint(target, tmp_path / "w.safetensors")
    assert info["resampled"] == ["pos_embed"]
    expected = resample_abs_pos_embed(model.pos_embed.detach(), [4, 4], [2, 2], num_prefix_tokens=0)
    assert torch.allclose(target.pos_embed, expected)
    assert target(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_other_in_chans_adapts_the_first_convolution(tmp_path):
    save_weights(_convit(), tmp_path / "rgb.safetensors")
    gray = _convit(in_chans=1)
    info = load_checkpoint(gray, tmp_path / "rgb.safetensors")
    assert info["adapted"] == ["patch_embed.proj.weight"] and gray.patch_embed.proj.weight.shape[1] == 1


def test_pickled_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    torch.save({"state_dict": _convit().state_dict(), "evil": Payload()}, tmp_path / "evil.pth")
    torch.save({"evil": Payload()}, tmp_path / "evil_legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("evil.pth", "evil_legacy.pth"):
        with pytest.raises(UnsafeCheckpointError, match="never runs code"):
            load_checkpoint(_convit(), tmp_path / name)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_and_empty_files_say_so(tmp_path, suffix):
    model = _convit()
    full = tmp_path / f"full{suffix}"
    if suffix == ".pth":
        torch.save(model.state_dict(), full)
    else:
        save_weights(model, full)
    data = full.read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(_convit(), tmp_path / f"cut{suffix}")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(_convit(), tmp_path / f"empty{suffix}")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(_convit(), tmp_path / f"missing{suffix}")


def test_other_architecture_names_keys_and_what_the_file_looks_like(tmp_path):
    cvt = convvit.create_model("cvt_13", embed_dims=(16, 32, 48), num_heads=(1, 2, 3), depths=(1, 1, 1))
    save_weights(cvt, tmp_path / "cvt.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_convit(), tmp_path / "cvt.safetensors")
    message = str(err.value)
    assert "does not fit convit_tiny" in message
    assert "missing in the file: cls_token" in message and "not in the model: stages.0." in message
    assert "CvT checkpoint" in message and "cvt_13" in message


def test_hugging_face_file_or_folder_loads_and_converts_with_labels(tmp_path):
    transformers = pytest.importorskip("transformers")
    labels = {0: "ant", 1: "bee", 2: "cow"}
    # HF needs depth[i] > i
    config = transformers.CvtConfig(num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()},
                                    embed_dim=[16, 32, 48], num_heads=[1, 2, 3], depth=[1, 2, 3])
    reference = transformers.CvtForImageClassification(config).eval()
    reference.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf_bin").mkdir()  # the older pytorch_model.bin format: a torch.save'd state dict
    torch.save(reference.state_dict(), tmp_path / "hf_bin" / "pytorch_model.bin")
    arch = dict(embed_dims=(16, 32, 48), num_heads=(1, 2, 3), depths=(1, 2, 3), act_layer="gelu")
    out = convert_checkpoint(tmp_path / "hf" / "model.safetensors", tmp_path / "cvt.safetensors", "cvt_13", **arch)
    meta = read_checkpoint_metadata(out)
    assert meta["num_classes"] == "3" and json.loads(meta["class_names"]) == ["ant", "bee", "cow"]
    assert meta["source_format"] == "hf_cvt" and meta["act_layer"] == "gelu"
    converted = convvit.create_model("cvt_13", num_classes=3, checkpoint_path=out, **arch).eval()
    from_folder = convvit.create_model("cvt_13", num_classes=3, checkpoint_path=tmp_path / "hf", **arch).eval()
    from_bin = convvit.create_model("cvt_13", num_classes=3, checkpoint_path=tmp_path / "hf_bin" / "pytorch_model.bin",
                                    **arch).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(pixel_values=x).logits
        assert (converted(x) - expected).abs().max().item() < 1e-4
        assert (from_folder(x) - expected).abs().max().item() < 1e-4
        assert (from_bin(x) - expected).abs().max().item() < 1e-4


def test_convert_keeps_a_fine_tuned_head_and_resolution(tmp_path):
    arch = dict(depth=3, local_up_to_layer=2)
    reference = timm.create_model("convit_tiny", img_size=32, num_classes=7, **arch).eval()
    torch.save({"model": reference.state_dict()}, tmp_path / "ft.pth")
    out = convert_checkpoint(tmp_path / "ft.pth", tmp_path / "ft.safetensors", "convit_tiny", **arch)
    model = convvit.create_model("convit_tiny", img_size=32, num_classes=7, checkpoint_path=out, **arch).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (reference(x) - model(x)).abs().max().item() < 1e-5
