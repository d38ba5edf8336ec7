"""Image finding, preprocessing, loading, calibration sets and labels (mnetdeploy.data). No TensorFlow here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnetdeploy.data import (calibration_set, files_hash, find_images, imagefolder_labels, load_images,
                             match_csv_labels, preprocess, read_default_calibration, read_labels_csv, resize_size)
from mnetdeploy.errors import UserError


def _save(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _rgb(color, size=(40, 30)):
    return Image.new("RGB", size, color)


# ---------------------------------------------------------------------------------------------- find_images

def test_find_images_imagefolder_sorted_by_relative_path(tmp_path):
    for rel in ("dog/b.png", "cat/z.jpg", "cat/a.JPEG", "dog/a.bmp"):
        _save(tmp_path / rel, _rgb("red"))
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    _save(tmp_path / ".hidden" / "x.png", _rgb("red"))
    rel = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert rel == ["cat/a.JPEG", "cat/z.jpg", "dog/a.bmp", "dog/b.png"]


def test_find_images_flat_and_non_recursive(tmp_path):
    _save(tmp_path / "2.png", _rgb("red"))
    _save(tmp_path / "10.png", _rgb("red"))
    _save(tmp_path / "sub" / "1.png", _rgb("red"))
    assert [p.name for p in find_images(tmp_path, recursive=False)] == ["10.png", "2.png"]
    assert len(find_images(tmp_path)) == 3


def test_find_images_missing_folder(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        find_images(tmp_path / "nope")


def test_find_images_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UserError, match=r"no images .*point to a folder"):
        find_images(tmp_path)


# ---------------------------------------------------------------------------------------------- preprocess

def test_resize_size_is_the_0875_crop():
    assert resize_size(224) == 256
    assert resize_size(128) == 146
    assert resize_size(96) == 110


def test_preprocess_shape_dtype_range_and_scaling():
    out = preprocess(_rgb((255, 0, 128), size=(300, 200)), 96)
    assert out.shape == (96, 96, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], 1.0)
    np.testing.assert_allclose(out[..., 1], -1.0)
    np.testing.assert_allclose(out[..., 2], 128 / 127.5 - 1, atol=1e-6)


def test_preprocess_center_crops_after_resizing_shorter_side():
    # 256x256, left half black, right half white: at 224 the crop starts at column 16, so the boundary at
    # column 128 lands at column 112 of the output.
    arr = np.zeros((256, 256, 3), np.uint8)
    arr[:, 128:] = 255
    out = preprocess(Image.fromarray(arr), 224)
    np.testing.assert_array_equal(out[:, :112], -1.0)
    np.testing.assert_array_equal(out[:, 112:], 1.0)
    # A wide image: the shorter side (100) becomes 256, the crop is taken from the horizontal middle.
    wide = np.zeros((100, 400, 3), np.uint8)
    wide[:, 180:220] = 255  # x2.56 -> columns 461..563 of 1024; the crop spans 400..624 -> 61..163
    out = preprocess(Image.fromarray(wide), 224)
    assert out[112, 112, 0] == pytest.approx(1.0)
    assert out[112, 0, 0] == pytest.approx(-1.0) and out[112, 223, 0] == pytest.approx(-1.0)
    white = np.flatnonzero(out[112, :, 0] > 0)
    assert 59 <= white[0] <= 62 and 162 <= white[-1] <= 165


def test_preprocess_grayscale_becomes_three_equal_channels():
    out = preprocess(Image.new("L", (50, 60), 51), 32)
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out, 51 / 127.5 - 1, atol=1e-6)


def test_preprocess_rgba_composites_transparent_pixels_on_white():
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # fully transparent black
    np.testing.assert_allclose(preprocess(image, 32), 1.0)
    opaque = Image.new("RGBA", (64, 64), (0, 255, 0, 255))
    np.testing.assert_allclose(preprocess(opaque, 32)[..., 1], 1.0)
    np.testing.assert_allclose(preprocess(opaque, 32)[..., 0], -1.0)


def test_preprocess_palette_png_from_disk(tmp_path):
    image = Image.new("P", (40, 40), 1)
    image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    path = _save(tmp_path / "p.png", image)
    with Image.open(path) as loaded:
        assert loaded.mode == "P"
        out = preprocess(loaded, 32)
    np.testing.assert_allclose(out[0, 0], np.array([200, 100, 50]) / 127.5 - 1, atol=1e-6)


def test_preprocess_cmyk_and_16_bit():
    cmyk = preprocess(Image.new("CMYK", (40, 40), (0, 0, 0, 0)), 32)  # no ink = white
    np.testing.assert_allclose(cmyk, 1.0)
    deep = Image.fromarray(np.full((40, 40), 65535, np.uint16))  # 16-bit white must not wrap or clip to grey
    np.testing.assert_allclose(preprocess(deep, 32), 1.0)


# --------------------------------------------------------------------------------------------- load_images

def test_load_images_skips_corrupt_files_with_reasons(tmp_path):
    good = [_save(tmp_path / f"{i}.png", _rgb((i * 40, 0, 0))) for i in range(3)]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    truncated = tmp_path / "truncated.jpg"
    _rgb("blue", size=(200, 200)).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:300])
    loaded = load_images([good[0], bad, good[1], truncated, good[2]], 32)
    assert loaded.count == 3 and loaded.array.shape == (3, 32, 32, 3)
    assert loaded.paths == good
    assert [p for p, _ in loaded.skipped] == [bad, truncated]
    assert all(reason for _, reason in loaded.skipped)
    np.testing.assert_allclose(loaded.array[2, 0, 0, 0], 80 / 127.5 - 1, atol=1e-6)


def test_load_images_min_ok_and_strict_mode(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"garbage")
    good = _save(tmp_path / "y.png", _rgb("red"))
    with pytest.raises(UserError, match="only 1 of 2 images could be read"):
        load_images([bad, good], 32, min_ok=2)
    with pytest.raises(UserError, match="cannot read image"):
        load_images([bad, good], 32, skip_bad=False)


# ----------------------------------------------------------------------------------------- calibration_set

def _folder_of(tmp_path, count):
    for i in range(count):
        _save(tmp_path / "imgs" / f"{i:03d}.png", _rgb((i, 255 - i, 7)))
    return tmp_path / "imgs"


def test_calibration_set_is_seeded_and_recorded(tmp_path):
    folder = _folder_of(tmp_path, 12)
    a = calibration_set(folder, 5, seed=3, resolution=32)
    b = calibration_set(folder, 5, seed=3, resolution=32)
    c = calibration_set(folder, 5, seed=4, resolution=32)
    assert a.source == "images" and a.count == 5 and a.array.shape == (5, 32, 32, 3)
    assert a.files == b.files and a.content_hash == b.content_hash
    np.testing.assert_array_equal(a.array, b.array)
    assert a.files != c.files and a.content_hash != c.content_hash
    assert a.files == sorted(a.files)
    assert a.content_hash == files_hash([folder / f for f in a.files])
    assert a.warnings == []


def test_calibration_set_asking_for_too_many_warns_and_uses_all(tmp_path):
    folder = _folder_of(tmp_path, 4)
    cal = calibration_set(folder, 10, seed=0, resolution=32)
    assert cal.count == 4
    assert cal.warnings == [f"asked for 10 calibration images; {folder} has 4 image file(s): calibrating on 4"]


def test_calibration_warning_counts_what_was_usable(tmp_path):
    """45 files of which 4 are corrupt: the warning says 41 calibrated, not "using all 45"."""
    folder = _folder_of(tmp_path, 41)
    for i in range(4):
        (folder / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    cal = calibration_set(folder, 100, seed=0, resolution=32)
    assert cal.count == 41
    assert len(cal.warnings) == 1
    assert cal.warnings[0].startswith(f"asked for 100 calibration images; {folder} has 45 image file(s), "
                                      "4 unreadable (e.g. ")
    assert cal.warnings[0].endswith(": calibrating on 41")
    some = calibration_set(folder, 45, seed=0, resolution=32)  # all 45 chosen, 4 unreadable
    assert some.count == 41 and some.warnings[0].startswith("4 unreadable (e.g. ")
    assert some.warnings[0].endswith("of the 45 chosen calibration images: calibrating on 41")


def test_webp_and_tiff_are_read_and_other_photo_formats_are_named(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, suffix in enumerate([".webp", ".tif", ".TIFF", ".jpg"]):
        _save(folder / f"{i}{suffix}", _rgb((40 * i, 90, 200)))
    (folder / "a.heic").write_bytes(b"\0" * 16)
    (folder / "b.HEIC").write_bytes(b"\0" * 16)
    (folder / "c.gif").write_bytes(b"GIF89a")
    (folder / ".hidden.heic").write_bytes(b"\0")
    cal = calibration_set(folder, 4, seed=0, resolution=32)
    assert sorted(cal.files) == ["0.webp", "1.tif", "2.TIFF", "3.jpg"]
    assert cal.warnings == [f"{folder}: 1 .gif, 2 .heic file(s) ignored (not a supported image type: "
                            "jpg/jpeg/png/bmp/webp/tif/tiff); convert them to use them"]


def test_default_config_first_n_and_relative_directory(tmp_path):
    _folder_of(tmp_path, 10)
    config = tmp_path / "calibration" / "default.yaml"
    config.parent.mkdir()
    config.write_text("directory: imgs\nfirst: 4\n")  # relative to the project root = config's grandparent
    default = read_default_calibration(config)
    assert default.directory == (tmp_path / "imgs").resolve() and default.first == 4
    cal = calibration_set(None, 3, seed=1, resolution=32, config=config)
    assert cal.source == "images" and cal.count == 3
    assert set(cal.files) <= {"000.png", "001.png", "002.png", "003.png"}


def test_default_config_without_folder_falls_back_to_synthetic(tmp_path):
    config = tmp_path / "calibration" / "default.yaml"
    config.parent.mkdir()
    config.write_text("directory: does/not/exist\nfirst: 100\n")
    cal = calibration_set(None, 6, seed=2, resolution=32, config=config)
    assert cal.source == "synthetic" and cal.count == 6 and cal.array.shape == (6, 32, 32, 3)
    assert cal.files == [] and "SYNTHETIC" in cal.warnings[0]
    assert -1.0 <= cal.array.min() and cal.array.max() <= 1.0
    assert calibration_set(None, 6, seed=2, resolution=32, config=config).content_hash == cal.content_hash
    assert calibration_set(None, 6, seed=3, resolution=32, config=config).content_hash != cal.content_hash


def test_default_config_rejects_unknown_keys(tmp_path):
    config = tmp_path / "default.yaml"
    config.write_text("directory: x\nfrist: 3\n")
    with pytest.raises(UserError, match="unknown key.*frist"):
        read_default_calibration(config)


def test_shipped_default_uses_first_100_shared_images(imagenet_sample):
    default = read_default_calibration()
    assert default.directory == imagenet_sample.resolve() and default.first == 100
    cal = calibration_set(None, 20, seed=0, resolution=224)
    first_100 = {p.name for p in find_images(imagenet_sample)[:100]}
    assert cal.source == "images" and cal.count == 20 and set(cal.files) <= first_100
    assert cal.array.shape == (20, 224, 224, 3) and cal.array.min() >= -1 and cal.array.max() <= 1


# ------------------------------------------------------------------------------------------------- labels

def test_read_labels_csv_shared_sample_both_offsets(imagenet_sample):
    csv = imagenet_sample / "labels.csv"
    zero, one = read_labels_csv(csv, 0), read_labels_csv(csv, 1)
    assert len(zero) == 500 and zero["n01440764_tench.jpg"] == 0 and one["n01440764_tench.jpg"] == 1
    assert all(one[f] == zero[f] + 1 for f in zero)
    assert zero["n13133613_ear.jpg"] == 998


def test_read_labels_csv_generic_index_column(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text("file,index\na.jpg,3\nsub/b.jpg,0\n")
    assert read_labels_csv(csv, 0) == {"a.jpg": 3, "sub/b.jpg": 0}
    assert read_labels_csv(csv, 1) == {"a.jpg": 4, "sub/b.jpg": 1}
    csv.write_text("file,name\na.jpg,cat\n")
    with pytest.raises(UserError, match="no class-index column"):
        read_labels_csv(csv, 0)
    csv.write_text("file,index\na.jpg,three\n")
    with pytest.raises(UserError, match=r"l.csv:2: index 'three' is not an integer"):
        read_labels_csv(csv, 0)


def test_csv_labels_match_relative_path_or_name_and_report_missing(tmp_path):
    paths = [_save(tmp_path / "x" / "a.png", _rgb("red")), _save(tmp_path / "b.png", _rgb("red"))]
    table = {"x/a.png": 5, "b.png": 7}
    assert match_csv_labels(tmp_path, paths, table, tmp_path / "l.csv") == {paths[0]: 5, paths[1]: 7}
    with pytest.raises(UserError, match="no label for 1 image"):
        match_csv_labels(tmp_path, paths, {"b.png": 7}, tmp_path / "l.csv")


def test_imagefolder_labels_are_sorted_subfolder_indices(tmp_path):
    paths = [_save(tmp_path / rel, _rgb("red")) for rel in ("zebra/1.png", "ant/1.png", "mole/2.png", "ant/2.png")]
    paths = find_images(tmp_path)
    labels = imagefolder_labels(tmp_path, paths)
    assert {p.relative_to(tmp_path).as_posix(): i for p, i in labels.items()} == {
        "ant/1.png": 0, "ant/2.png": 0, "mole/2.png": 1, "zebra/1.png": 2}
    assert set(imagefolder_labels(tmp_path, paths, offset=1).values()) == {1, 2, 3}
    _save(tmp_path / "loose.png", _rgb("red"))
    with pytest.raises(UserError, match="outside class subfolders"):
        imagefolder_labels(tmp_path, find_images(tmp_path))
