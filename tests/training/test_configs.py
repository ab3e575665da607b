"""Every shipped config parses with the CLI and names a registered model."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import convvit
from convvit.cli import main

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


def test_configs_exist():
    names = {str(p.relative_to(p.parents[1])) for p in CONFIGS}
    assert {"fashion_mnist/vit_c.yaml", "fashion_mnist/vit_p.yaml", "cifar10/vit_c.yaml"} <= names
    assert sum(n.startswith("imagenet/vit_") for n in names) == 8


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses(config, capsys):
    assert main(["fit", "--config", str(config), "--print_config"]) == 0, capsys.readouterr().err
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert convvit.is_model(resolved["model"]["name"]), resolved["model"]["name"]
