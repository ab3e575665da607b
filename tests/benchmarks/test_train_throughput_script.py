"""benchmarks/train_throughput.py stays runnable: both sides train, the loaders are timed (figures not asserted)."""
import argparse
import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_throughput.py"


def _load():
    spec = importlib.util.spec_from_file_location("train_throughput", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_throughput"] = mod  # the timing callback is named by its module path
    spec.loader.exec_module(mod)
    return mod


def test_train_throughput_tiny(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    mod = _load()
    assert mod.main(["--dataset", "synthetic", "--batch_size", "8", "--num_workers", "0", "--steps", "2",
                     "--warmup", "1", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "median ratio convvit/plain" in out and "data loader alone: convvit" in out


def test_timm_pipeline_with_augmentation_gives_normalised_batches():
    mod = _load()
    args = argparse.Namespace(dataset="synthetic", img_size=None, batch_size=4, num_workers=0, augment="timm")
    loader, num_classes, in_chans, img_size = mod.timm_loader(args)
    x, y = next(iter(loader))
    assert x.shape == (4, in_chans, img_size, img_size) and y.shape == (4,)
    assert x.min() < 0 < x.max()  # normalised, not raw [0, 1] pixels
