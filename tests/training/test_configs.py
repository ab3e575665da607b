"""Every shipped config parses with the CLI and names a registered model and dataset; the ImageNet ViT configs,
composed with their shared recipe, resolve to the paper's recipe (REFERENCE section 1; pycls vitconfigs)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import convvit
from convvit.data import get_dataset
from convvit.training.cli import main

ROOT = Path(__file__).resolve().parents[2] / "configs"
VIT_RECIPE = ROOT / "imagenet" / "vit.yaml"
VIT_MODELS = [f"vit_{family}_{gf}" for family in "pc" for gf in ("1gf", "4gf", "18gf", "36gf")]
# the per-model ViT files only override the shared recipe: they are checked composed with it
STANDALONE = sorted(p for p in ROOT.rglob("*.yaml") if p.parent.name != "imagenet" or not p.stem.startswith("vit_"))


def _resolve(capsys, *configs: Path) -> dict:
    args = [a for c in configs for a in ("--config", str(c))]
    assert main(["fit", *args, "--print_config"]) == 0, capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


def test_configs_exist():
    names = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.yaml")}
    assert {"fashion_mnist/vit_c.yaml", "fashion_mnist/vit_p.yaml", "cifar10/vit_c.yaml", "imagenet/vit.yaml"} <= names
    assert {n for n in names if n.startswith("imagenet/vit_")} == {f"imagenet/{m}.yaml" for m in VIT_MODELS}


@pytest.mark.parametrize("config", STANDALONE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(config, capsys):
    resolved = _resolve(capsys, config)
    if config != VIT_RECIPE:  # the shared recipe names no model: its per-model file does
        assert convvit.is_model(resolved["model"]["name"]), resolved["model"]["name"]
        assert resolved["model"]["name"] in config.read_text()
    get_dataset(resolved["data"]["dataset"])


@pytest.mark.parametrize("model", VIT_MODELS)
def test_imagenet_vit_config_is_the_papers_recipe(model, capsys):
    override = ROOT / "imagenet" / f"{model}.yaml"
    assert "model" in yaml.safe_load(override.read_text())
    c = _resolve(capsys, VIT_RECIPE, override)
    m, d, t = c["model"], c["data"], c["trainer"]
    assert m["name"] == model
    # AdamW, lr 1e-3 per 2048 images (36GF: the official configs' 7e-4), wd 0.24 (36GF too, as the configs)
    assert (m["optimizer"], m["betas"], m["weight_decay"]) == ("adamw", [0.9, 0.999], 0.24)
    assert m["lr"] == (7e-4 if model.endswith("36gf") else 1e-3) and m["lr_base_batch_size"] == 2048
    assert d["batch_size"] * t["devices"] * t["num_nodes"] == 2048
    assert m["exclude_no_weight_decay"] is False  # pos embedding and class token are decayed, as in pycls
    # 5 warmup epochs from 0.1 x lr, half-cosine to 0.005 x lr, 100 epochs
    assert (m["warmup_epochs"], m["warmup_start_factor"], m["lr_schedule"], m["min_lr_factor"]) == (5, 0.1, "cosine",
                                                                                                   0.005)
    assert t["max_epochs"] == 100
    # AutoAugment, Mixup 0.8 / CutMix 1.0 (one of the two per batch), label smoothing 0.1, EMA
    assert (d["auto_augment"], m["mixup_alpha"], m["cutmix_alpha"], m["mixup_switch_prob"]) == ("original", 0.8,
                                                                                                 1.0, 0.5)
    assert (m["label_smoothing"], m["ema"]) == (0.1, True)
    # no gradient clipping, dropout, stochastic depth or random erasing
    assert t["gradient_clip_val"] is None and m["drop_path_rate"] == 0.0 and d["re_prob"] == 0.0
    assert (d["dataset"], d["img_size"], t["precision"]) == ("imagefolder", 224, "auto")
