"""`convvit predict`: a CSV of top-k class names and probabilities for images and folders."""
from __future__ import annotations

import csv

import torch
from PIL import Image

from convvit.training.cli import main
from convvit.training.predict import prediction_columns


def test_predict_writes_top_k_csv(trained_run, tmp_path, capsys):
    folder = tmp_path / "imgs" / "nested"
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(1)
    modes = ["RGB", "L", "RGBA", "P"]
    for i, mode in enumerate(modes):
        pixels = (torch.rand(24, 20, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).convert(mode).save(folder / f"{i}.png")
    single = tmp_path / "one.jpg"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(single)

    out = tmp_path / "preds.csv"
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    assert main(["predict", "--ckpt_path", str(ckpt), str(tmp_path / "imgs"), str(single),
                 "--top_k", "3", "--output", str(out)]) == 0
    assert "wrote 5 predictions" in capsys.readouterr().out
    with open(out) as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["path", "pred", "prob", "pred2", "prob2", "pred3", "prob3"]
    assert sorted(r["path"] for r in rows) == sorted([str(folder / f"{i}.png") for i in range(4)] + [str(single)])
    names = {f"class_{i}" for i in range(10)}
    for r in rows:
        probs = [float(r["prob"]), float(r["prob2"]), float(r["prob3"])]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        assert {r["pred"], r["pred2"], r["pred3"]} <= names and len({r["pred"], r["pred2"], r["pred3"]}) == 3


def test_prediction_columns():
    assert prediction_columns(1) == ["path", "pred", "prob"]
    assert prediction_columns(2) == ["path", "pred", "prob", "pred2", "prob2"]


def test_predict_missing_path_is_an_error(trained_run, tmp_path, capsys):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    assert main(["predict", "--ckpt_path", str(ckpt), str(tmp_path / "nope")]) == 1
    assert "nope" in capsys.readouterr().err
