"""Every shipped config parses with the CLI and names a registered model and dataset; each ImageNet model file,
composed with its family's shared recipe, resolves to the paper's recipe (REFERENCE sections 1-4)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import convvit
from convvit.cli import main
from convvit.data import get_dataset

ROOT = Path(__file__).resolve().parents[2] / "configs"
IMAGENET = ROOT / "imagenet"
# each family's shared recipe (imagenet/FAMILY.yaml) and its models (imagenet/MODEL.yaml: only what differs)
FAMILIES = {
    "vit": [f"vit_{family}_{gf}" for family in "pc" for gf in ("1gf", "4gf", "18gf", "36gf")],
    "deit": ["deit_tiny", "deit_small", "deit_base"],
    "convit": ["convit_tiny", "convit_small", "convit_base"],
    "cvt": ["cvt_13", "cvt_21", "cvt_w24"],
}
COMPOSED = [(family, model) for family, models in FAMILIES.items() for model in models]
STANDALONE = sorted(ROOT.glob("*/*.yaml"))
STANDALONE = [p for p in STANDALONE if p.parent != IMAGENET or p.stem in FAMILIES]


def _resolve(capsys, *configs: Path) -> dict:
    args = [a for c in configs for a in ("--config", str(c))]
    assert main(["fit", *args, "--print_config"]) == 0, capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


def test_configs_exist():
    names = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.yaml")}
    assert {"fashion_mnist/vit_c.yaml", "fashion_mnist/vit_p.yaml", "cifar10/vit_c.yaml"} <= names
    expected = {f"imagenet/{name}.yaml" for family, models in FAMILIES.items() for name in (family, *models)}
    assert {n for n in names if n.startswith("imagenet/")} == expected


@pytest.mark.parametrize("config", STANDALONE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(config, capsys):
    resolved = _resolve(capsys, config)
    if config.parent != IMAGENET:  # a family recipe names no model: its model files do
        assert convvit.is_model(resolved["model"]["name"]), resolved["model"]["name"]
        assert resolved["model"]["name"] in config.read_text()
    get_dataset(resolved["data"]["dataset"])


def _composed(capsys, family: str, model: str) -> tuple[dict, dict, dict]:
    override = IMAGENET / f"{model}.yaml"
    assert f"--config configs/imagenet/{family}.yaml --config configs/imagenet/{model}.yaml" in override.read_text()
    c = _resolve(capsys, IMAGENET / f"{family}.yaml", override)
    assert c["model"]["name"] == model and convvit.is_model(model)
    assert (c["data"]["dataset"], c["trainer"]["precision"]) == ("imagefolder", "auto")
    return c["model"], c["data"], c["trainer"]


@pytest.mark.parametrize("model", FAMILIES["vit"])
def test_imagenet_vit_config_is_the_papers_recipe(model, capsys):
    m, d, t = _composed(capsys, "vit", model)
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
    assert d["img_size"] == 224


@pytest.mark.parametrize("family, model", [fm for fm in COMPOSED if fm[0] != "vit"])
def test_imagenet_deit_convit_cvt_config_is_the_papers_recipe(family, model, capsys):
    m, d, t = _composed(capsys, family, model)
    # AdamW lr 5e-4 per 512 images, wd 0.05 (CvT-21 and W24: 0.1), model.no_weight_decay() excluded
    assert (m["optimizer"], m["lr"], m["lr_base_batch_size"]) == ("adamw", 5e-4, 512)
    assert m["weight_decay"] == (0.1 if model in ("cvt_21", "cvt_w24") else 0.05)
    assert m["exclude_no_weight_decay"] is True
    # 300 epochs, 5 warmup epochs from 1e-6, cosine to 1e-5 (factors of 5e-4)
    assert (t["max_epochs"], m["warmup_epochs"], m["lr_schedule"]) == (300, 5, "cosine")
    assert m["warmup_start_factor"] * 5e-4 == pytest.approx(1e-6) and m["min_lr_factor"] * 5e-4 == pytest.approx(1e-5)
    # RandAugment, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, random erasing 0.25
    assert (d["auto_augment"], m["mixup_alpha"], m["cutmix_alpha"], m["mixup_switch_prob"]) == (
        "rand-m9-mstd0.5-inc1", 0.8, 1.0, 0.5)
    assert (m["label_smoothing"], d["re_prob"]) == (0.1, 0.25)
    # DeiT and ConViT: repeated augmentation 3, drop path 0.1; EMA in DeiT only; CvT: neither (its drop path is
    # per stage, in the architecture)
    assert m["ema"] is (family == "deit")
    assert d["repeated_aug"] == (0 if family == "cvt" else 3)
    if family != "cvt":
        assert m["drop_path_rate"] == 0.1
    assert d["img_size"] == (384 if model == "cvt_w24" else 224)
