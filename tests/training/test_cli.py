"""`convvit fit | validate | test` through convvit.cli.main on tiny synthetic data and image folders."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import MODEL, STEPS_PER_EPOCH, TINY, fit, interrupted_at_epoch, run_dir
from PIL import Image
from safetensors import safe_open

from convvit.cli import main
from convvit.data import ImageDataModule
from convvit.inference.trained import load_trained_model
from convvit.training.module import ImageClassifier


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _last(rows: list[dict[str, str]], key: str) -> float:
    return float([r[key] for r in rows if r.get(key)][-1])


def test_fit_writes_a_complete_run_directory(trained_run, capsys):
    run = trained_run
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["name"] == "vit_c_nano_32px" and config["trainer"]["max_epochs"] == 2
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("epoch") for n in ckpts)  # top-k + last
    assert list(run.glob("events.out.tfevents.*"))  # TensorBoard
    assert (run / "curves.png").stat().st_size > 1000
    rows = _metrics(run)
    # one training loss per optimizer step (log_every_n_steps 1); the head starts at zero (pycls init), so the
    # first loss is that of uniform logits over 10 classes
    losses = [(int(r["epoch"]), int(r["step"]), float(r["train/loss_step"])) for r in rows if r.get("train/loss_step")]
    steps = range(2 * STEPS_PER_EPOCH)
    assert [(epoch, step) for epoch, step, _ in losses] == [(i // STEPS_PER_EPOCH, i) for i in steps]
    assert losses[0][2] == pytest.approx(math.log(10), abs=1e-5)
    # the lr per step: lr 3e-3, no warmup, half-cosine to zero over the 8 steps
    lrs = [float(r["lr-AdamW/pg1"]) for r in rows if r.get("lr-AdamW/pg1")]
    assert lrs == pytest.approx([1.5e-3 * (1 + math.cos(math.pi * i / 8)) for i in range(8)])
    assert [int(r["epoch"]) for r in rows if r.get("val/acc1")] == [0, 1]  # validated after each epoch
    _assert_logged_accuracy_is_the_checkpoints(run, rows, config["data"])

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["num_classes"] == 10 and hp["class_names"] == [f"class_{i}" for i in range(10)]
    assert hp["in_chans"] == 3 and hp["img_size"] == 16
    assert ckpt["global_step"] == 2 * STEPS_PER_EPOCH and ckpt["epoch"] == 1
    assert any(k.startswith("ema_model.") for k in ckpt["state_dict"])

    with safe_open(str(run / "final.safetensors"), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["class_names"]) == hp["class_names"] and meta["architecture"] == "vit_c_nano_32px"


def _assert_logged_accuracy_is_the_checkpoints(run: Path, rows: list[dict[str, str]], data: dict) -> None:
    """The last validation and the test accuracies (raw and EMA) are last.ckpt's on the test split, by hand."""
    dm = ImageDataModule(**data)
    dm.setup("fit")
    assert dm.val_split == "test"  # synthetic data has no validation split: it validates on its test split
    images, labels = map(torch.cat, zip(*dm.test_dataloader()))
    assert len(labels) == 16
    for weights, suffix in (("raw", ""), ("ema", "_ema")):
        model, _ = load_trained_model(run / "checkpoints" / "last.ckpt", weights)
        with torch.no_grad():
            top5 = model(images).topk(5, dim=-1).indices
        acc1 = (top5[:, 0] == labels).float().mean().item()
        acc5 = (top5 == labels[:, None]).any(-1).float().mean().item()
        for stage in ("val", "test"):
            assert _last(rows, f"{stage}/acc1{suffix}") == pytest.approx(acc1), (stage, weights)
            assert _last(rows, f"{stage}/acc5{suffix}") == pytest.approx(acc5), (stage, weights)


def _image_folder(root: Path, classes=("cat", "dog", "eel"), per_class=6) -> Path:
    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = (torch.rand(20, 20, 3, generator=g) * 80 + c * 80).to(torch.uint8).numpy()
                mode = "L" if i % 3 == 0 else "RGB"  # mixed modes convert to the model's channels
                # JPEGs (batch-decoded by the device pipeline) beside PNGs (decoded by PIL on either pipeline)
                Image.fromarray(pixels).convert(mode).save(folder / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.mark.parametrize("pipeline", ["cpu", "device"])
def test_fit_on_an_image_folder(tmp_path, pipeline):
    data = _image_folder(tmp_path / "images")
    args = list(TINY)
    args[args.index("--data.dataset") + 1] = "imagefolder"
    rc = main(["fit", *args, "--data.path", str(data), "--data.batch_size", "6", "--trainer.limit_train_batches", "2",
               "--data.pipeline", pipeline, "--data.crop_mode", "resized",
               "--trainer.default_root_dir", str(tmp_path / "runs"), "--name", "folder", "--test_after_fit", "false"])
    assert rc == 0
    ckpt = torch.load(tmp_path / "runs/folder/version_0/checkpoints/last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["class_names"] == ["cat", "dog", "eel"]
    assert ckpt["state_dict"]["model.head.weight"].shape[0] == 3
    assert ckpt["global_step"] == 2


def test_unknown_config_key_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("model:\n  name: vit_c_nano_32px\n  lrr: 0.1\n")
    assert main(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "model.lrr" in err and "did you mean model.lr" in err
    assert main(["fit", "--data.batchsize", "8"]) == 2
    assert "data.batchsize" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("optimizer", "adam"), ("lr_schedule", "cosin")])
def test_bad_recipe_choice_is_a_clear_error(tmp_path, capsys, option, value):
    rc = main(["fit", "--data.dataset", "synthetic", "--trainer.default_root_dir", str(tmp_path),
               f"--model.{option}", value])
    assert rc == 1
    assert f"--model.{option} must be one of" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.ckpt"))


def test_print_config_and_short_options(capsys):
    rc = main(["fit", "--model.name", "vit_p_nano_32px", "--data.dataset", "cifar10", "--data.batch_size", "7",
               "--trainer.precision", "bf16-mixed", "--print_config"])
    assert rc == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["name"] == "vit_p_nano_32px"
    assert config["data"]["dataset"] == "cifar10" and config["data"]["batch_size"] == 7
    assert config["trainer"]["precision"] == "bf16-mixed"
    assert config["checkpoint"]["monitor"] == "val/acc1"


def test_checkpoint_with_other_classes_is_refused(trained_run, tmp_path, capsys):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    rc = main(["validate", *TINY, "--data.synthetic_num_classes", "4", "--ckpt_path", str(ckpt),
               "--trainer.default_root_dir", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "trained on 10 classes" in err and "the data has 4 classes" in err and "class_3" in err


def test_validate_and_test_reload_the_checkpoint(trained_run, tmp_path):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    for command in ("validate", "test"):
        assert main([command, *TINY, "--ckpt_path", str(ckpt), "--trainer.default_root_dir", str(tmp_path)]) == 0
    fitted = _last(_metrics(trained_run), "test/acc1")
    retested = _last(_metrics(run_dir(tmp_path, version=1)), "test/acc1")
    assert retested == pytest.approx(fitted)


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    forward = ImageClassifier.forward

    def poisoned(self, x):
        out = forward(self, x)
        return out * float("nan") if self.training and self.global_step >= 3 else out

    monkeypatch.setattr(ImageClassifier, "forward", poisoned)
    rc = fit(tmp_path, "--last_checkpoint.every_n_train_steps", "1")
    assert rc == 1
    err = capsys.readouterr().err
    assert "at step 3" in err and "last.ckpt" in err
    ckpt = torch.load(run_dir(tmp_path) / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


@pytest.mark.parametrize("data", ["synthetic", "device_pipeline"])
def test_resume_is_exact(tmp_path, monkeypatch, data):
    """An interrupted run resumed with --ckpt_path ends bit-identical to an uninterrupted one
    (weights, EMA, optimizer state, schedule, step), with Mixup/CutMix and EMA on; also when the device
    pipeline draws the crops, flips and erasing of an image folder in the training process."""
    recipe = ["--trainer.max_epochs", "2", "--model.ema", "true", "--model.mixup_alpha", "0.8",
              "--model.cutmix_alpha", "1.0", "--model.warmup_epochs", "1", "--model.lr_schedule", "linear",
              "--test_after_fit", "false"]
    name = f"synthetic-{MODEL}"
    if data == "device_pipeline":  # 3 classes x 6 images in batches of 4 (drop_last): as many steps as synthetic
        folder = _image_folder(tmp_path / "images", per_class=6)
        recipe += ["--data.dataset", "imagefolder", "--data.path", str(folder), "--data.pipeline", "device",
                   "--data.crop_mode", "resized", "--data.batch_size", "4", "--data.re_prob", "0.5"]
        name = f"images-{MODEL}"  # runs are named after the data folder
    assert fit(tmp_path / "a", *recipe) == 0

    with interrupted_at_epoch(monkeypatch, 1):
        assert fit(tmp_path / "b", *recipe) == 1  # Lightning exits with 1 after a KeyboardInterrupt
    ckpt = run_dir(tmp_path / "b", name=name) / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == STEPS_PER_EPOCH
    assert fit(tmp_path / "b", *recipe, "--ckpt_path", str(ckpt)) == 0

    a = torch.load(run_dir(tmp_path / "a", name=name) / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run_dir(tmp_path / "b", version=1, name=name) / "checkpoints" / "last.ckpt", weights_only=True)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (1, 2 * STEPS_PER_EPOCH)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["lr_schedulers"] == b["lr_schedulers"]
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fit_then_test_prints_no_callback_override_notice(tmp_path):
    import io
    import logging

    notices = io.StringIO()
    handler = logging.StreamHandler(notices)
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(handler)
    try:
        assert fit(tmp_path) == 0  # fit, then the test of the final weights in the same trainer
    finally:
        logger.removeHandler(handler)
    assert "override existing callbacks" not in notices.getvalue()
