from pathlib import Path

import numpy as np
import pytest
import torch

from convvit.data.readers import (
    CIFAR100_CLASSES,
    read_cifar,
    read_fashion_mnist,
    read_idx,
    scan_image_folder,
)

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


def test_read_idx_roundtrip(tmp_path, fakes):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (True, False):
        path = fakes.write_idx(tmp_path / f"x{gz}.idx", arr, gz=gz)
        if gz:
            path = path.rename(path.with_suffix(".gz"))
        out = read_idx(path)
        assert out.dtype == torch.uint8 and out.tolist() == arr.tolist()


def test_read_idx_truncated_and_bad_magic(tmp_path, fakes):
    path = fakes.write_idx(tmp_path / "x", np.zeros((5, 28, 28), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt.*download"):
        read_idx(path)
    path.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)
    bad_gz = tmp_path / "y.gz"
    bad_gz.write_bytes(b"not gzip")
    with pytest.raises(OSError, match="y.gz"):
        read_idx(bad_gz)


def test_fashion_mnist_debian_and_torchvision_layouts(tmp_path, fakes):
    data = fakes.make_fashion_mnist(tmp_path / "deb")
    x, y = read_fashion_mnist(tmp_path / "deb", "train")
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.uint8 and y.dtype == torch.long
    assert torch.equal(x[:, 0], torch.from_numpy(data["train"][0])) and y.tolist() == data["train"][1].tolist()
    xt, yt = read_fashion_mnist(tmp_path / "deb", "test")
    assert xt.shape == (10, 1, 28, 28)
    # torchvision: ROOT/FashionMNIST/raw with un-gzipped files
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    fakes.make_fashion_mnist(raw, gz=False)
    assert read_fashion_mnist(tmp_path / "tv", "train")[0].shape == (20, 1, 28, 28)


def test_fashion_mnist_missing_and_mismatched(tmp_path, fakes):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        read_fashion_mnist(tmp_path, "train")
    fakes.make_fashion_mnist(tmp_path)
    fakes.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match="do not match"):
        read_fashion_mnist(tmp_path, "train")


@pytest.mark.skipif(not DEBIAN_FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    x, y = read_fashion_mnist(DEBIAN_FMNIST, "test")
    assert x.shape == (10000, 1, 28, 28) and torch.bincount(y).tolist() == [1000] * 10
    assert abs(x.float().mean().item() / 255 - 0.2868) < 1e-3  # test-split mean


@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_batches_and_parent_folder(tmp_path, fakes, num_classes):
    data = fakes.make_cifar(tmp_path, num_classes)
    folder = next(tmp_path.iterdir())
    for path in (tmp_path, folder):  # parent folder or the batches folder itself
        x, y = read_cifar(path, "train", num_classes)
        assert x.shape == (len(data["train"][1]), 3, 32, 32) and x.dtype == torch.uint8
        assert torch.equal(x, torch.from_numpy(data["train"][0])) and y.tolist() == data["train"][1].tolist()
    assert read_cifar(tmp_path, "test", num_classes)[0].shape == (len(data["test"][1]), 3, 32, 32)
    assert len(CIFAR100_CLASSES) == 100


def test_cifar_missing_and_corrupt(tmp_path, fakes):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        read_cifar(tmp_path, "train", 10)
    fakes.make_cifar(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="test_batch.*corrupt"):
        read_cifar(tmp_path, "test", 10)


def test_scan_image_folder(tmp_path, fakes):
    root = fakes.make_image_folder(tmp_path, splits=("train",), classes=("b", "a"), n=2)
    fakes.write_image(root / "train" / "a" / "nested" / "deep.jpg")
    paths, labels = scan_image_folder(root / "train")
    assert [p.relative_to(root / "train").as_posix() for p in paths] == [
        "a/0.png", "a/1.png", "a/nested/deep.jpg", "b/0.png", "b/1.png"]
    assert labels == [0, 0, 0, 1, 1]


def test_scan_image_folder_errors(tmp_path, fakes):
    root = fakes.make_image_folder(tmp_path, splits=("train",), classes=("a", "b"), n=1)
    with pytest.raises(ValueError, match=r"missing \['c'\]"):
        scan_image_folder(root / "train", ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"not in training \['b'\]"):
        scan_image_folder(root / "train", ["a"])
    (root / "train" / "empty").mkdir()
    (root / "train" / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="without images.*empty"):
        scan_image_folder(root / "train")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_image_folder(tmp_path / "nope")
    with pytest.raises(NotADirectoryError, match="is a file; a folder is needed"):
        scan_image_folder(root / "train" / "a" / "0.png")
    (tmp_path / "flat").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        scan_image_folder(tmp_path / "flat")
