"""`convvit predict`: a CSV of top-k class names and probabilities for images and folders."""
from __future__ import annotations

import csv

import pytest
import torch
from PIL import Image

import convvit.precision as precision_rule
from convvit.cli import main
from convvit.inference.predict import prediction_columns


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
    assert reader.fieldnames == ["path", "pred", "prob", "pred2", "prob2", "pred3", "prob3", "precision"]
    assert sorted(r["path"] for r in rows) == sorted([str(folder / f"{i}.png") for i in range(4)] + [str(single)])
    names = {f"class_{i}" for i in range(10)}
    for r in rows:
        probs = [float(r["prob"]), float(r["prob2"]), float(r["prob3"])]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
        assert {r["pred"], r["pred2"], r["pred3"]} <= names and len({r["pred"], r["pred2"], r["pred3"]}) == 3
        assert r["precision"] == "32"  # a nano model: fp32 on any CPU


def test_prediction_columns():
    assert prediction_columns(1) == ["path", "pred", "prob", "precision"]
    assert prediction_columns(2) == ["path", "pred", "prob", "pred2", "prob2", "precision"]


def test_predict_missing_path_is_an_error(trained_run, tmp_path, capsys):
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    assert main(["predict", "--ckpt_path", str(ckpt), str(tmp_path / "nope")]) == 1
    assert "nope" in capsys.readouterr().err


def _images(folder, n, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        pixels = (torch.rand(20, 20, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"good{i}.png")
    return folder


def test_predict_skips_unreadable_images_and_writes_the_rest(trained_run, tmp_path, capsys):
    folder = _images(tmp_path / "imgs", 3)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    (folder / "cut.png").write_bytes((folder / "good0.png").read_bytes()[:40])
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "preds.csv"
    assert main(["predict", "--ckpt_path", str(ckpt), str(folder), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert "wrote 3 predictions" in captured.out and "skipped 2 unreadable" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("convvit: warning: skipping")]
    assert len(warnings) == 2 and "broken.jpg" in warnings[0] and "cut.png" in warnings[1]
    assert "skip_bad_images" not in captured.err  # an option of fit, not of predict
    with open(out) as f:
        assert sorted(r["path"] for r in csv.DictReader(f)) == [str(folder / f"good{i}.png") for i in range(3)]

    # --strict: the same CSV, and exit status 1
    out.unlink()
    assert main(["predict", "--ckpt_path", str(ckpt), str(folder), "--output", str(out), "--strict"]) == 1
    assert "convvit: error: 2 image(s) could not be read" in capsys.readouterr().err and out.exists()


def test_predict_with_nothing_readable_is_an_error(trained_run, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "preds.csv"
    ckpt = trained_run / "checkpoints" / "last.ckpt"
    assert main(["predict", "--ckpt_path", str(ckpt), str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "convvit: error: none of the 1 images could be read" in err
    assert not out.exists()


def test_predict_output_folder_gets_predictions_csv(trained_run, tmp_path, capsys):
    folder = _images(tmp_path / "imgs", 2)
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    assert main(["predict", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), str(folder),
                 "-o", str(out_dir)]) == 0
    assert (out_dir / "predictions.csv").is_file()
    assert str(out_dir / "predictions.csv") in capsys.readouterr().out


def test_predict_refuses_a_read_only_output_unless_forced(trained_run, tmp_path, capsys):
    folder = _images(tmp_path / "imgs", 1)
    out = tmp_path / "preds.csv"
    out.write_text("mine\n")
    out.chmod(0o444)
    argv = ["predict", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), str(folder), "-o", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"convvit: error: {out} exists and is read-only" in err and "--force" in err and "Traceback" not in err
    assert out.read_text() == "mine\n"
    assert main([*argv, "--force"]) == 0 and out.read_text().startswith("path,pred,prob")


@pytest.mark.parametrize("flags, extra, expected, reason", [
    (["amx_bf16"], [], "bf16", "auto: CPU with amx_bf16"),
    ([], [], "32", "auto: CPU without bf16 units"),
    ([], ["--precision", "bf16"], "bf16", "as given; this CPU has no bf16 units"),  # forced: runs, and says it is slow
    (["amx_bf16"], ["--precision", "32"], "32", "as given"),
])
def test_predict_precision_follows_the_hardware_and_is_recorded(trained_run, tmp_path, capsys, monkeypatch, flags,
                                                                extra, expected, reason):
    monkeypatch.setattr(precision_rule, "cpu_bf16_flags", lambda: flags)
    monkeypatch.setattr(precision_rule, "BF16_MIN_GMACS", 0.0)  # the tiny test model counts as large enough
    folder = _images(tmp_path / "imgs", 2)
    out = tmp_path / "preds.csv"
    assert main(["predict", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), str(folder),
                 "-o", str(out), *extra]) == 0
    assert f"precision: {expected} ({reason}" in capsys.readouterr().out
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["precision"] for r in rows] == [expected] * 2
    assert all(0 < float(r["prob"]) <= 1 for r in rows)


def test_predict_bad_batch_size_is_a_usage_error(trained_run, tmp_path, capsys):
    assert main(["predict", "--ckpt_path", str(trained_run / "checkpoints" / "last.ckpt"), str(tmp_path),
                 "--batch_size", "0"]) == 2
    assert "--batch_size must be >= 1" in capsys.readouterr().err
