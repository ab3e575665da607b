"""benchmarks/train_throughput.py stays runnable: both sides train, the loaders are timed (figures not asserted)."""
import argparse

from benchmark_scripts import load_script  # tests/benchmark_scripts.py


def _load():
    return load_script("train_throughput")


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
