"""Each model setting is declared once, as a field of a settings group, with its resume policy beside it."""
from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
import yaml
from conftest import TINY

from convvit import settings as convvit_settings
from convvit.cli import main
from convvit.data import ImageDataModule
from convvit.data import settings as data_settings
from convvit.data.datamodule import data_signature
from convvit.training import settings
from convvit.training.module import ImageClassifier, model_signature
from convvit.training.option_names import unknown_option
from convvit.training.settings import TRAINING_ONLY, setting


@dataclasses.dataclass
class _NewSettings:  # what a contributor adds: fields, each with its policy, and nothing else anywhere
    new_training_only: float = setting(0.0, doc="a setting that only shapes training.", policy=TRAINING_ONLY)
    new_fixed: float = setting(0.0, doc="a setting a checkpoint fixes.")


@pytest.fixture
def new_settings(monkeypatch):
    monkeypatch.setattr(settings, "MODEL_GROUPS", (*settings.MODEL_GROUPS, _NewSettings))
    # the signature is built once, at import; rebuild it from the groups as the import would have
    monkeypatch.setattr(ImageClassifier.__init__, "__signature__", model_signature())


def test_every_option_is_one_field_and_the_checkpoint_keeps_them_flat():
    names = [p for p in inspect.signature(ImageClassifier.__init__).parameters if p != "self"]
    assert names == [*settings.model_setting_names(), "distillation"]
    model = ImageClassifier("vit_c_nano_32px", num_classes=3, img_size=16, lr=2e-3)
    assert model.hparams["lr"] == 2e-3 and model.hparams["name"] == "vit_c_nano_32px"
    assert set(model.hparams) == set(names)
    with pytest.raises(TypeError, match="lrr"):
        ImageClassifier(lrr=1e-3)


def test_policies_are_read_off_the_fields():
    assert set(settings.with_policy(settings.RESUME_MAY_CHANGE)) == {
        "channels_last", "compile", "ema", "ema_decay", "ema_warmup"}
    assert set(settings.from_data()) == {
        "num_classes", "class_names", "in_chans", "img_size", "mean", "std", "crop_pct", "interpolation"}
    assert set(settings.data_fixed_by_checkpoint()) == {"in_chans", "img_size", "mean", "std", "crop_pct",
                                                         "interpolation"}
    assert {"lr", "optimizer", "mixup_alpha", "warmup_epochs", "init_checkpoint"} <= set(
        settings.with_policy(TRAINING_ONLY))


def test_a_new_training_only_setting_needs_only_its_field(new_settings, trained_run, tmp_path, capsys):
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"].update(new_training_only=1.0, new_fixed=1.0)  # as a run with them would save
    path = tmp_path / "with_new_settings.ckpt"
    torch.save(ckpt, path)
    evaluate = ["test", *TINY, "--ckpt_path", str(path), "--trainer.default_root_dir", str(tmp_path)]
    assert main([*evaluate, "--model.new_training_only", "2.0"]) == 0  # ignored by evaluation, as lr is
    capsys.readouterr()
    assert main([*evaluate, "--model.new_fixed", "2.0"]) == 1
    assert "--model.new_fixed 2 conflicts with the checkpoint being evaluated" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the data module
@dataclasses.dataclass
class _NewDataSettings:  # as above, for --data.*
    new_data_training_only: float = setting(0.0, doc="a data setting that only shapes training.",
                                            policy=TRAINING_ONLY)
    new_data_fixed: float = setting(0.0, doc="a data setting a checkpoint fixes.")


@pytest.fixture
def new_data_settings(monkeypatch):
    monkeypatch.setattr(data_settings, "DATA_GROUPS", (*data_settings.DATA_GROUPS, _NewDataSettings))
    monkeypatch.setattr(ImageDataModule.__init__, "__signature__", data_signature())


def test_every_data_option_is_one_field_and_the_checkpoint_keeps_them_flat():
    names = [p for p in inspect.signature(ImageDataModule.__init__).parameters if p != "self"]
    assert names == data_settings.data_setting_names() and names[:2] == ["dataset", "path"]
    dm = ImageDataModule("synthetic", None, img_size=16, re_prob=0.25)
    assert set(dm.hparams) == set(names) and dm.hparams["re_prob"] == 0.25 and dm.augmentation.re_prob == 0.25
    with pytest.raises(TypeError, match="batchsize"):
        ImageDataModule(batchsize=8)


def test_data_policies_are_read_off_the_fields():
    fixed = {"img_size", "in_chans", "mean", "std", "crop_pct", "interpolation"}
    assert set(convvit_settings.fixed_by_checkpoint(data_settings.DATA_GROUPS)) == fixed
    # nothing else about the data was held to a checkpoint before the groups, and nothing is now
    assert set(convvit_settings.exempt_from_checkpoint(data_settings.DATA_GROUPS, evaluating=False)) == set(
        data_settings.data_setting_names())


def test_a_new_data_setting_needs_only_its_field(new_data_settings, trained_run, tmp_path, capsys):
    assert unknown_option(["--data.new_data_fixed", "1"]) is None  # the fast check knows it
    assert "did you mean --data.new_data_fixed" in unknown_option(["--data.new_data_fixd", "1"])
    assert ImageDataModule("synthetic", new_data_fixed=1.0).hparams["new_data_fixed"] == 1.0
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["datamodule_hyper_parameters"].update(new_data_training_only=1.0, new_data_fixed=1.0)
    path = tmp_path / "with_new_data_settings.ckpt"
    torch.save(ckpt, path)
    evaluate = ["test", *TINY, "--ckpt_path", str(path), "--trainer.default_root_dir", str(tmp_path / "runs")]
    assert main([*evaluate, "--data.new_data_training_only", "2.0"]) == 0  # ignored by evaluation
    (config,) = (tmp_path / "runs").rglob("config.yaml")
    assert yaml.safe_load(config.read_text())["data"]["new_data_fixed"] == 1.0  # the checkpoint's, not the default
    capsys.readouterr()
    assert main([*evaluate, "--data.new_data_fixed", "2.0"]) == 1
    assert "--data.new_data_fixed 2 conflicts with the checkpoint being evaluated" in capsys.readouterr().err
    resume = ["fit", *TINY, "--ckpt_path", str(path), "--trainer.default_root_dir", str(tmp_path / "runs")]
    assert main([*resume, "--data.new_data_training_only", "2.0"]) == 1
    assert "--data.new_data_training_only 2 conflicts with the checkpoint being resumed" in capsys.readouterr().err


def test_only_the_leading_settings_go_by_position():
    """A call written for another parameter order is refused, not bound to whichever settings come next."""
    assert ImageClassifier("vit_c_nano_32px", num_classes=3, img_size=16).hparams["name"] == "vit_c_nano_32px"
    with pytest.raises(TypeError):
        ImageClassifier("vit_c_nano_32px", 10)
    assert ImageDataModule("synthetic", None, img_size=16).hparams["dataset"] == "synthetic"
    with pytest.raises(TypeError):
        ImageDataModule("synthetic", None, 64)
