import numpy as np
import pytest
from PIL import Image

from convvit.data import BadImageError, convert_image, list_images, load_image
from convvit.data.images import is_image_file


def mode_image(mode: str) -> Image.Image:
    """A 6x4 image of ``mode`` whose pixels are all (200, 30, 60)-ish, or full-range 16-bit gray."""
    rgb = Image.new("RGB", (6, 4), (200, 30, 60))
    if mode == "I;16":
        return Image.fromarray(np.full((4, 6), 65535, dtype=np.uint16))
    if mode == "P":
        return rgb.convert("P")
    return rgb.convert(mode)


# (mode, file format) pairs as users have them on disk
MODES = [("L", "PNG"), ("RGB", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("CMYK", "JPEG"),
         ("1", "PNG"), ("LA", "PNG"), ("RGB", "JPEG"), ("RGB", "WEBP"), ("L", "TIFF"), ("RGB", "BMP")]


@pytest.mark.parametrize("mode,fmt", MODES)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_load_image_converts_every_mode(tmp_path, mode, fmt, in_chans):
    path = tmp_path / f"img.{fmt.lower()}"
    mode_image(mode).save(path, format=fmt)
    img = load_image(path, in_chans)
    assert img.mode == ("L" if in_chans == 1 else "RGB")
    assert img.size == (6, 4)


def test_16bit_is_rescaled_not_clipped():
    arr = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    out = np.asarray(convert_image(Image.fromarray(arr), 1))
    assert out.tolist() == [[0, 100, 255]]  # PIL's own convert would give [0, 255, 255]
    assert np.asarray(convert_image(Image.fromarray(arr), 3))[0, 1].tolist() == [100, 100, 100]


def test_transparency_composited_over_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    out = np.asarray(convert_image(rgba, 3))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [10, 20, 30]
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 0, 0, 10, 20, 30])
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png", transparency=0)  # palette entry 0 is transparent
    out = np.asarray(load_image(tmp_path / "p.png", 3))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [10, 20, 30]


def test_rgb_to_gray_uses_luma():
    out = convert_image(Image.new("RGB", (1, 1), (200, 30, 60)), 1)
    assert out.getpixel((0, 0)) == round(0.299 * 200 + 0.587 * 30 + 0.114 * 60)


def test_bad_in_chans():
    with pytest.raises(ValueError, match="in_chans"):
        convert_image(Image.new("RGB", (1, 1)), 4)


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (8, 4))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 on display
    img.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (4, 8)


@pytest.mark.parametrize("kind", ["garbage", "truncated_png", "truncated_jpeg", "empty"])
def test_corrupt_image_error_names_file(tmp_path, kind):
    path = tmp_path / ("bad.jpg" if "jpeg" in kind else "bad.png")
    if kind == "garbage":
        path.write_bytes(b"this is not an image")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BadImageError, match="bad\\.(png|jpg)") as e:
        load_image(path)
    assert "skip_bad_images" in str(e.value)


def test_missing_image_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.png")


def test_list_images(tmp_path, caplog, fakes):
    write_image = fakes.write_image
    a = write_image(tmp_path / "d" / "b.png")
    b = write_image(tmp_path / "d" / "sub" / "a.JPG")
    write_image(tmp_path / "d" / "._a.jpg")  # macOS resource fork: hidden, not an image
    write_image(tmp_path / "d" / ".hidden" / "x.png")
    (tmp_path / "d" / "notes.txt").write_text("x")
    c = write_image(tmp_path / "c.webp")
    (tmp_path / "readme.md").write_text("x")
    found = list_images([tmp_path / "d", c, tmp_path / "d" / "b.png", tmp_path / "readme.md"])
    assert found == sorted([a, b, c])
    assert "readme.md" in caplog.text
    assert list_images(str(c)) == [c]
    assert is_image_file("x.TIFF") and not is_image_file("x.txt")


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files found"):
        list_images([tmp_path / "empty"])


def test_list_images_visits_each_real_file_once(tmp_path, caplog, fakes):
    root = tmp_path / "d"
    a = fakes.write_image(root / "a.png")
    b = fakes.write_image(root / "sub" / "b.png")
    (root / "sub" / "up").symlink_to("..")  # a cycle: os.walk(followlinks=True) went round it ~40 times
    (root / "a_link.png").symlink_to("a.png")  # the same file twice
    (root / "x.png").symlink_to("gone.png")  # dangling: it ended a whole predict run with Errno 2
    with caplog.at_level("WARNING"):
        assert list_images([root, b]) == [a, b]
    assert "x.png" in caplog.text and "not there" in caplog.text
    other = tmp_path / "other"
    c = fakes.write_image(other / "sub" / "c.png")
    (other / "again").symlink_to("sub")  # the same folder twice
    assert list_images(other) == [c]


def test_training_folder_with_links(tmp_path, fakes):
    from convvit.data.readers import scan_image_folder

    root = fakes.make_image_folder(tmp_path, splits=("train",), classes=("a", "b"), n=2)
    (root / "train" / "a" / "nested").mkdir()
    (root / "train" / "a" / "nested" / "up").symlink_to("..")
    (root / "train" / "b" / "dangling.png").symlink_to("nowhere.png")
    paths, labels = scan_image_folder(root / "train")
    assert [p.relative_to(root / "train").as_posix() for p in paths] == ["a/0.png", "a/1.png", "b/0.png", "b/1.png"]
    assert labels == [0, 0, 1, 1]


def test_decompression_bomb_message_reads_as_one_sentence(tmp_path, monkeypatch, fakes):
    from PIL import Image

    path = fakes.write_image(tmp_path / "big.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels: over twice the limit, a "bomb"
    with pytest.raises(BadImageError, match="decompression bomb") as err:
        load_image(path)
    assert ".." not in str(err.value)
