"""Tests for emocap.images: every odd input either becomes an 8-bit RGB image or an ImageLoadError naming it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emocap import images
from emocap.images import ImageLoadError, expand_inputs, iter_image_files, load_image


def _rgb(im):
    assert isinstance(im, Image.Image)
    assert im.mode == "RGB"
    return np.asarray(im).astype(int)


def _noise(h, w, c=3, seed=0):
    shape = (h, w, c) if c else (h, w)
    return np.random.RandomState(seed).randint(0, 256, shape, dtype=np.uint8)


# ------------------------------------------------------------------ modes


def test_rgb_path_roundtrip(tmp_path):
    arr = _noise(20, 30)
    path = tmp_path / "rgb.png"
    Image.fromarray(arr).save(path)
    out = _rgb(load_image(path))
    assert out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(_rgb(load_image(str(path))), arr)


def test_grayscale(tmp_path):
    gray = _noise(16, 24, c=None)
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    for src in (path, Image.fromarray(gray, mode="L"), gray):
        out = _rgb(load_image(src))
        assert out.shape == (16, 24, 3)
        for ch in range(3):
            np.testing.assert_array_equal(out[..., ch], gray)


def test_rgba_composited_on_white(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[0, 0] = (10, 20, 30, 0)  # fully transparent -> white
    arr[0, 1] = (200, 0, 0, 255)  # opaque red stays red
    arr[0, 2] = (0, 0, 0, 128)  # half-transparent black over white
    arr[1:, :] = (0, 255, 0, 255)
    path = tmp_path / "rgba.png"
    Image.fromarray(arr, mode="RGBA").save(path)
    for src in (path, Image.fromarray(arr, mode="RGBA"), arr):
        out = _rgb(load_image(src))
        assert tuple(out[0, 0]) == (255, 255, 255)
        assert tuple(out[0, 1]) == (200, 0, 0)
        expected = 255 * (1 - 128 / 255)  # black * a + white * (1 - a)
        assert np.all(np.abs(out[0, 2] - expected) <= 1)
        assert tuple(out[2, 2]) == (0, 255, 0)


def test_la_image():
    la = Image.new("LA", (3, 3), (50, 0))
    assert tuple(_rgb(load_image(la))[1, 1]) == (255, 255, 255)


def test_palette(tmp_path):
    colours = [(255, 0, 0), (0, 0, 255), (12, 34, 56)]
    pal = Image.new("P", (3, 2))
    pal.putpalette([v for c in colours for v in c] + [0] * (768 - 9))
    pal.putdata([0, 1, 2, 2, 1, 0])
    path = tmp_path / "pal.png"
    pal.save(path)
    loaded = Image.open(path)
    assert loaded.mode == "P"
    out = _rgb(load_image(path))
    assert [tuple(out[0, i]) for i in range(3)] == colours
    assert [tuple(out[1, i]) for i in range(3)] == colours[::-1]


def test_palette_with_transparency(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 9, 9, 9] + [0] * (768 - 6))
    pal.putdata([0, 1])
    path = tmp_path / "pal_t.png"
    pal.save(path, transparency=0)
    out = _rgb(load_image(path))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 1]) == (9, 9, 9)


def test_cmyk(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))  # no ink: white
    cmyk.putpixel((1, 1), (255, 0, 0, 0))  # full cyan
    cmyk.putpixel((2, 2), (0, 0, 0, 255))  # full black
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=100)
    assert Image.open(path).mode == "CMYK"
    out = _rgb(load_image(cmyk))
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[1, 1]) == (0, 255, 255)
    assert tuple(out[2, 2]) == (0, 0, 0)
    from_file = _rgb(load_image(path))
    assert from_file.shape == (4, 4, 3)
    assert from_file[0, 3].min() > 200  # JPEG is lossy: white stays near white


def test_16bit_png(tmp_path):
    arr = np.zeros((8, 8), dtype=np.uint16)
    arr[0, 0], arr[0, 1], arr[0, 2], arr[0, 3] = 65535, 32768, 257 * 100, 1000
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = _rgb(load_image(path))
    for x in range(4):
        expected = round(arr[0, x] / 65535 * 255)
        assert np.all(np.abs(out[0, x] - expected) <= 1), (x, out[0, x], expected)
    assert out[0, 0, 0] == 255 and out[0, 1, 0] in (127, 128) and out[0, 2, 0] == 100


def test_dark_16bit_image_is_scaled_by_type_range(tmp_path):
    # a 16-bit image whose values all lie below 256 is dark, not an 8-bit image
    arr = np.full((4, 4), 200, dtype=np.uint16)
    arr[0, 0] = 0
    path = tmp_path / "dark16.png"
    Image.fromarray(arr).save(path)
    out = _rgb(load_image(path))
    assert out.max() <= round(200 / 65535 * 255) + 1
    np.testing.assert_array_equal(_rgb(load_image(arr)), out)


def test_float_arrays_in_unit_range():
    arr = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(3, 4)
    out = _rgb(load_image(arr))
    expected = np.floor(arr.astype(np.float64) * 255 + 0.5)
    assert np.abs(out[..., 0] - expected).max() <= 1
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    rgb = np.zeros((2, 2, 3), dtype=np.float64)
    rgb[0, 0] = (1.0, 0.5, 0.0)
    out = _rgb(load_image(rgb))
    assert tuple(out[0, 0]) in {(255, 128, 0), (255, 127, 0)}


def test_integer_and_bool_arrays():
    ints = np.array([[0, 1, 2], [128, 254, 255]], dtype=np.int64)  # 8-bit values in a wide int type
    np.testing.assert_array_equal(_rgb(load_image(ints))[..., 0], ints)
    small = np.array([[0, 1], [1, 0]], dtype=np.int32)  # still 8-bit values, not a [0, 1] float image
    np.testing.assert_array_equal(_rgb(load_image(small))[..., 0], small)
    mask = np.array([[True, False]])
    np.testing.assert_array_equal(_rgb(load_image(mask))[..., 0], [[255, 0]])


def test_chw_arrays():
    hwc = _noise(10, 14)
    chw = np.moveaxis(hwc, -1, 0).copy()
    assert chw.shape == (3, 10, 14)
    out = load_image(chw)
    assert out.size == (14, 10)
    np.testing.assert_array_equal(_rgb(out), hwc)
    one = _noise(6, 9, c=None)[None]  # 1xHxW
    np.testing.assert_array_equal(_rgb(load_image(one))[..., 1], one[0])
    hw1 = _noise(6, 9, c=None)[..., None]  # HxWx1
    np.testing.assert_array_equal(_rgb(load_image(hw1))[..., 2], hw1[..., 0])


def test_chw_float_tensor_like():
    chw = np.zeros((3, 5, 7), dtype=np.float32)
    chw[0] = 1.0  # red plane
    out = _rgb(load_image(chw))
    assert out.shape == (5, 7, 3)
    assert tuple(out[2, 3]) == (255, 0, 0)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5), (5, 5, 2)])
def test_bad_array_shapes(shape):
    with pytest.raises(ImageLoadError, match="array"):
        load_image(np.zeros(shape, dtype=np.uint8))


def test_exif_rotated_jpeg(tmp_path):
    arr = np.zeros((40, 60, 3), dtype=np.uint8)  # stored as 60 wide x 40 high
    arr[:10, :10] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    assert Image.open(path).size == (60, 40)
    out = load_image(path)
    assert out.size == (40, 60)  # transposed
    px = _rgb(out)
    # rotating clockwise moves the stored top-left corner to the displayed top-right
    assert px[3, 36, 0] > 200 and px[3, 36, 1] < 60
    assert px[3, 3, 0] < 60
    # a PIL image with the same EXIF is turned upright too
    assert load_image(Image.open(path)).size == (40, 60)


@pytest.mark.parametrize("fmt, size", [("PNG", (5000, 300)), ("JPEG", (5000, 300)), ("PNG", (200, 6000))])
def test_huge_image_downscaled(tmp_path, fmt, size):
    path = tmp_path / f"huge.{fmt.lower()}"
    Image.new("RGB", size, (10, 120, 200)).save(path, format=fmt)
    out = load_image(path)
    assert max(out.size) <= images.MAX_SIDE
    assert max(out.size) >= images.MAX_SIDE // 2  # downscaled, not shrunk to nothing
    # aspect ratio kept (within rounding)
    assert abs(out.size[0] / out.size[1] - size[0] / size[1]) / (size[0] / size[1]) < 0.02
    assert np.abs(_rgb(out)[out.size[1] // 2, out.size[0] // 2] - (10, 120, 200)).max() <= 3


# ------------------------------------------------------------------ bad inputs


def _truncated(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(_noise(64, 64)).save(buf, format=fmt)
    data = buf.getvalue()
    path = tmp_path / f"truncated_image.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path, fmt):
    path = _truncated(tmp_path, fmt)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert path.name in str(info.value)
    assert info.value.source == str(path)


def test_text_file_renamed_jpg(tmp_path):
    path = tmp_path / "notes_not_image.jpg"
    path.write_text("this is not an image\n" * 10)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert "notes_not_image.jpg" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty_file.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty_file.png"):
        load_image(path)


def test_missing_path(tmp_path):
    path = tmp_path / "does_not_exist.png"
    with pytest.raises(ImageLoadError, match="does_not_exist.png") as info:
        load_image(path)
    assert "not found" in str(info.value)


def test_folder(tmp_path):
    folder = tmp_path / "a_folder.png"
    folder.mkdir()
    with pytest.raises(ImageLoadError, match="a_folder.png") as info:
        load_image(folder)
    assert "folder" in str(info.value)


def test_source_overrides_name(tmp_path):
    with pytest.raises(ImageLoadError, match="shown_name"):
        load_image(tmp_path / "x.png", source="shown_name")


def test_unsupported_type():
    with pytest.raises(ImageLoadError):
        load_image(12345)


def test_image_load_error_is_value_error():
    assert issubclass(ImageLoadError, ValueError)


# ------------------------------------------------------------------ inputs


def test_expand_inputs(tmp_path):
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(folder / "b.png")
    Image.new("RGB", (4, 4)).save(folder / "sub" / "a.JPG")
    (folder / "readme.txt").write_text("x")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    single = tmp_path / "single.bmp"
    Image.new("RGB", (4, 4)).save(single)
    missing = tmp_path / "missing_thing.png"

    files, problems = expand_inputs([folder, empty, single, missing])
    assert sorted(p.name for p in files) == ["a.JPG", "b.png", "single.bmp"]
    assert len(problems) == 2
    reasons = dict(problems)
    assert "no image files" in reasons[str(empty)]
    assert "not found" in reasons[str(missing)]


def test_iter_image_files_non_recursive(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (2, 2)).save(tmp_path / "top.png")
    Image.new("RGB", (2, 2)).save(tmp_path / "sub" / "deep.png")
    assert [p.name for p in iter_image_files(tmp_path, recursive=False)] == ["top.png"]
    assert sorted(p.name for p in iter_image_files(tmp_path)) == ["deep.png", "top.png"]
