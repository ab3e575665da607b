"""``convvit explain`` and ``convvit explain distance`` end to end, and their errors (nothing half-written)."""
from __future__ import annotations

import csv

import pytest
import torch

from convvit.cli import main


def _pngs(folder):
    return sorted(p.name for p in folder.glob("*.png"))


@pytest.mark.parametrize("family", ["vit_c", "convit", "cvt"])
def test_explain_images(checkpoints, image_dir, tmp_path, capsys, family):
    out = tmp_path / "out"
    argv = ["explain", "--ckpt_path", str(checkpoints[family]), str(image_dir), "--output", str(out), "--top_k", "2"]
    assert main(argv + ["--head_fusion", "max", "--discard_ratio", "0.5"]) == 0
    assert _pngs(out) == ["gray.png", "rgb.png", "rgba.png"]  # any mode and size
    assert not list(out.glob(".*"))  # no temporary file left
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "rgb.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"row", "col", "rollout"}
    assert "rgb.png: class_" in capsys.readouterr().out


def test_explain_output_named_png_is_that_file_for_one_image(checkpoints, image_dir, tmp_path, capsys):
    out = tmp_path / "x.png"  # it became a folder called x.png
    ckpt = str(checkpoints["vit_c"])
    assert main(["explain", "--ckpt_path", ckpt, str(image_dir / "rgb.png"), "--output", str(out)]) == 0
    assert out.is_file() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (tmp_path / "x.csv").is_file()
    capsys.readouterr()
    assert main(["explain", "--ckpt_path", ckpt, str(image_dir), "--output", str(tmp_path / "many.png")]) == 2
    err = capsys.readouterr().err
    assert "names a PNG file, but the 3 images give one figure each" in err and "--output" in err
    assert not (tmp_path / "many.png").exists()


def test_explain_distance(checkpoints, image_dir, tmp_path, capsys):
    out = tmp_path / "figs" / "distance.png"
    ckpts = [str(checkpoints["vit_c"]), str(checkpoints["convit"])]
    assert main(["explain", "distance", "--ckpt_path", *ckpts, "--data", str(image_dir), "--output", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    # vit_c_nano_32px: 3 layers x 4 heads; the small ConViT: 4 layers x 4 heads
    assert len(rows) == 3 * 4 + 4 * 4
    assert {r["model"] for r in rows} == {"vit_c_nano_32px", "convit_tiny"}
    assert all(float(r["distance_px"]) >= 0 for r in rows)


def test_explain_distance_on_a_registered_dataset(checkpoints, tmp_path, capsys, monkeypatch):
    # --data DATASET reads the split's first --num_images images from the dataset's default path
    from convvit.data import registry

    seen = []

    def read(root, split):
        seen.append((root, split))
        if not (root / "present").exists():
            raise FileNotFoundError(f"no dataset files in {root}")
        return (torch.rand(7, 1, 28, 28) * 255).byte(), torch.zeros(7, dtype=torch.long)

    spec = registry.DatasetSpec("tiny_gray", read=read, class_names=["a"], img_size=28, in_chans=1, path=str(tmp_path))
    monkeypatch.setitem(registry._DATASETS, "tiny_gray", spec)
    out = tmp_path / "d.png"
    argv = ["explain", "distance", "--ckpt_path", str(checkpoints["vit_c"]), "--data", "tiny_gray",
            "--output", str(out)]
    assert main(argv) == 1  # the dataset's files are missing: one line naming the fix, nothing written
    assert "cannot read the tiny_gray test split" in capsys.readouterr().err and not out.exists()
    (tmp_path / "present").write_text("")
    assert main(argv + ["--split", "train", "--num_images", "5"]) == 0
    assert seen[-1] == (tmp_path, "train")
    assert "vit_c_nano_32px, 3 layers" in capsys.readouterr().out
    with open(out.with_suffix(".csv")) as f:
        assert len(list(csv.DictReader(f))) == 3 * 4
    assert main(argv + ["--num_images", "0"]) == 2


def test_explain_errors(checkpoints, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    # not a convvit checkpoint: a plain state dict
    plain = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(2)}, plain)
    assert main(["explain", "--ckpt_path", str(plain), str(image_dir), "--output", str(out)]) == 1
    assert "not a convvit training checkpoint" in capsys.readouterr().err
    # an unreadable image among good ones: an error naming it, and no figure written for the others
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["explain", "--ckpt_path", str(checkpoints["vit_c"]), str(image_dir / "rgb.png"), str(bad),
                 "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("convvit: error: cannot read image") and "bad.png" in err and not out.exists()
    # an output that cannot be written
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["explain", "--ckpt_path", str(checkpoints["vit_c"]), str(image_dir), "--output",
                 str(blocker / "out")]) == 1
    assert "cannot write to" in capsys.readouterr().err
    # bad arguments: exit status 2, one line
    assert main(["explain", "--ckpt_path", str(checkpoints["vit_c"]), str(image_dir), "--output", str(out),
                 "--discard_ratio", "1.5"]) == 2
    assert main(["explain", "distance", "--ckpt_path", str(checkpoints["vit_c"]), "--data", str(image_dir),
                 "--output", str(tmp_path / "d.txt")]) == 2
    assert capsys.readouterr().err.count("convvit: error:") == 2
    assert not out.exists()


def test_model_without_attention_is_an_error(tmp_path, image_dir, capsys, monkeypatch):
    # every registered family has attention; a checkpoint of a model without any is refused all the same
    import convvit.inference.trained as trained

    info = dict(name="conv_only", img_size=(32, 32))
    monkeypatch.setattr(trained, "load_trained_model", lambda *a: (torch.nn.Conv2d(3, 4, 1), info))
    out = tmp_path / "o"
    assert main(["explain", "--ckpt_path", "x.ckpt", str(image_dir), "--output", str(out)]) == 1
    assert "has no attention layers" in capsys.readouterr().err and not out.exists()


def _rollout(folder, name="rgb.csv"):
    with open(folder / name) as f:
        return torch.tensor([float(r["rollout"]) for r in csv.DictReader(f)])


@pytest.mark.parametrize("family", ["vit_c", "convit", "cvt"])
def test_explain_in_bf16_draws_the_maps_fp32_draws(checkpoints, image_dir, tmp_path, capsys, family):
    runs = {}
    for precision in ("32", "bf16"):
        out = tmp_path / precision
        assert main(["explain", "--ckpt_path", str(checkpoints[family]), str(image_dir / "rgb.png"), "--output",
                     str(out), "--precision", precision]) == 0
        assert f"precision: {precision} (as given" in capsys.readouterr().out
        assert _pngs(out) == ["rgb.png"]
        runs[precision] = _rollout(out)
    assert torch.isfinite(runs["bf16"]).all() and not torch.equal(runs["bf16"], runs["32"])  # bf16 ran
    # the same map to bf16's rounding (8 bits of mantissa through every block: a few % of the largest weight)
    assert torch.allclose(runs["bf16"], runs["32"], rtol=0, atol=0.05 * runs["32"].max().item())


def test_explain_distance_auto_precision_follows_the_hardware(checkpoints, image_dir, tmp_path, capsys, monkeypatch):
    import convvit.precision as precision_rule

    monkeypatch.setattr(precision_rule, "cpu_bf16_flags", lambda: ["amx_bf16"])
    monkeypatch.setattr(precision_rule, "BF16_MIN_GMACS", 0.0)
    out = tmp_path / "d.png"
    assert main(["explain", "distance", "--ckpt_path", str(checkpoints["vit_c"]), "--data", str(image_dir),
                 "--output", str(out)]) == 0
    assert "precision: bf16 (auto: CPU with amx_bf16)" in capsys.readouterr().out
    with open(out.with_suffix(".csv")) as f:
        assert len(list(csv.DictReader(f))) == 3 * 4


def _loading(monkeypatch, load):
    """Make ``convvit explain`` load its model with ``load(ckpt_path, weights) -> (model, info)``."""
    from convvit.inference import trained

    monkeypatch.setattr(trained, "load_trained_model", load)


def test_explain_runs_the_model_once_per_image(checkpoints, image_dir, tmp_path, capsys, monkeypatch):
    from convvit.inference import trained

    load, calls = trained.load_trained_model, []

    def counting(*args):
        model, info = load(*args)
        model.register_forward_pre_hook(lambda *_: calls.append(1))
        return model, info

    _loading(monkeypatch, counting)
    for family in ("vit_c", "convit", "cvt"):
        calls.clear()
        out = tmp_path / family
        assert main(["explain", "--ckpt_path", str(checkpoints[family]), str(image_dir), "--output", str(out),
                     "--precision", "32"]) == 0  # 32: auto would count the model's flops with a forward of its own
        assert _pngs(out) == ["gray.png", "rgb.png", "rgba.png"] and len(calls) == 3


def test_explain_draws_a_family_defined_outside_convvit(outside_family, image_dir, tmp_path, capsys, monkeypatch):
    info = dict(name="pooled_key_vit", num_classes=3, in_chans=3, img_size=(16, 16), class_names=["a", "b", "c"],
                mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0, interpolation="bicubic")
    _loading(monkeypatch, lambda *args: (outside_family, info))
    out = tmp_path / "out"
    assert main(["explain", "--ckpt_path", "pooled.ckpt", str(image_dir), "--output", str(out),
                 "--precision", "32"]) == 0
    assert _pngs(out) == ["gray.png", "rgb.png", "rgba.png"]
    with open(out / "rgb.csv") as f:
        assert len(list(csv.DictReader(f))) == 16  # the 4 x 4 patch grid
    assert "rgb.png: " in capsys.readouterr().out
