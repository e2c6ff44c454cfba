"""vision.image: every colour mode Pillow opens becomes the right 8-bit RGB, EXIF orientation is applied, and a
float image with NaN or infinite pixels is refused where it is read."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import sideways_photo
from PIL import Image

from course_utils.vision import (
    ImageList,
)
from course_utils.vision.image import load_rgb, open_image, open_lazy


def _rgb_of(tmp_path, img: Image.Image, name: str) -> np.ndarray:
    """Save `img`, open it the way the data pipeline does, and return its RGB pixels."""
    f = tmp_path / name
    img.save(f)
    with open_lazy(f) as opened:
        mode = opened.mode
        rgb = load_rgb(opened)
    assert rgb.mode == "RGB"
    return mode, np.asarray(rgb)


def test_grey_L_becomes_equal_channels(tmp_path):
    mode, a = _rgb_of(tmp_path, Image.fromarray(np.array([[0, 128], [200, 255]], dtype=np.uint8)), "g.png")
    assert mode == "L"
    assert a.shape == (2, 2, 3)
    assert a[..., 0].tolist() == [[0, 128], [200, 255]]
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


def test_palette_P_uses_its_palette(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putdata([0, 1])
    mode, a = _rgb_of(tmp_path, img, "p.png")
    assert mode == "P"
    assert a[0].tolist() == [[10, 20, 30], [200, 100, 50]]


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 0, 0, 0] + [0] * 762)
    img.putdata([0, 1])
    img.info["transparency"] = 1  # palette entry 1 (black) is fully transparent
    f = tmp_path / "pt.png"
    img.save(f, transparency=1)
    with open_lazy(f) as opened:
        assert opened.mode == "P" and "transparency" in opened.info
        a = np.asarray(load_rgb(opened))
    assert a[0].tolist() == [[10, 20, 30], [255, 255, 255]]


def test_rgba_is_composited_on_white(tmp_path):
    px = np.array([[[255, 0, 0, 255], [0, 0, 0, 0], [0, 0, 255, 128]]], dtype=np.uint8)
    mode, a = _rgb_of(tmp_path, Image.fromarray(px, "RGBA"), "rgba.png")
    assert mode == "RGBA"
    assert a[0, 0].tolist() == [255, 0, 0]         # opaque: unchanged
    assert a[0, 1].tolist() == [255, 255, 255]     # transparent black: white, not black
    assert a[0, 2].tolist() == pytest.approx([127, 127, 255], abs=1)  # half-transparent blue over white


def test_la_is_composited_on_white(tmp_path):
    px = np.array([[[50, 255], [50, 0]]], dtype=np.uint8)
    mode, a = _rgb_of(tmp_path, Image.fromarray(px, "LA"), "la.png")
    assert mode == "LA"
    assert a[0].tolist() == [[50, 50, 50], [255, 255, 255]]


def test_cmyk_becomes_rgb(tmp_path):
    img = Image.new("CMYK", (2, 1))
    img.putdata([(0, 0, 0, 0), (255, 0, 0, 0)])  # white, cyan
    mode, a = _rgb_of(tmp_path, img, "c.tif")
    assert mode == "CMYK"
    assert a[0].tolist() == [[255, 255, 255], [0, 255, 255]]


def test_16bit_is_scaled_not_clipped(tmp_path):
    px = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    mode, a = _rgb_of(tmp_path, Image.fromarray(px), "d.png")
    assert mode.startswith("I")  # 'I;16' (Pillow >= 10) or 'I'
    assert a[0, :, 0].tolist() == [0, 1, 128, 255]  # clipping would give [0, 255, 255, 255]
    assert (a[..., 0] == a[..., 2]).all()


def test_32bit_int_I_is_scaled_as_16bit(tmp_path):
    px = np.array([[0, 65535, 32896]], dtype=np.int32)
    mode, a = _rgb_of(tmp_path, Image.fromarray(px, "I"), "i.tif")
    assert mode == "I"
    assert a[0, :, 1].tolist() == [0, 255, 128]


def test_float_F_in_unit_range_and_beyond(tmp_path):
    mode, a = _rgb_of(tmp_path, Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F"), "f.tif")
    assert mode == "F"
    assert a[0, :, 0].tolist() == [0, 128, 255]
    _, b = _rgb_of(tmp_path, Image.fromarray(np.array([[-10.0, 0.0, 10.0]], dtype=np.float32), "F"), "f2.tif")
    assert b[0, :, 0].tolist() == [0, 128, 255]  # outside [0, 1]: the image's own range


def test_bilevel_1_becomes_black_and_white(tmp_path):
    img = Image.new("1", (2, 1))
    img.putdata([0, 255])
    mode, a = _rgb_of(tmp_path, img, "b.png")
    assert mode == "1"
    assert a[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_mixed_modes_in_one_dataset_form_a_batch(tmp_path):
    """One folder of grey, palette, RGBA and 16-bit images trains like a folder of RGB JPEGs."""
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("L", (8, 8), 100).save(tmp_path / cls / "grey.png")
        Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(tmp_path / cls / "rgba.png")
        Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(tmp_path / cls / "deep.png")
        Image.new("RGB", (8, 8), (1, 2, 3)).convert("P").save(tmp_path / cls / "pal.png")
    data = (ImageList.from_folder(tmp_path).split_by_idx([0, 4]).label_from_folder()
            .transform(size=8).databunch(bs=2, num_workers=0))
    x, _ = data.one_batch()
    assert x.shape == (2, 3, 8, 8)
    assert x.min() >= 0 and x.max() <= 1


# --- mixed sizes --------------------------------------------------------------------------------------------


# --- float images with NaN or infinite pixels ---------------------------------------------------------------
def _float_tiff(path, values):
    Image.fromarray(np.asarray(values, dtype=np.float32), mode="F").save(path)
    return path


@pytest.mark.parametrize("values, bad", [(np.full((8, 8), np.nan), 64), ([[0.5, np.inf], [0.1, 0.2]], 1),
                                         ([[-np.inf, 0.5], [np.nan, 0.2]], 2)])
def test_a_float_image_with_nan_or_inf_is_refused_where_it_is_read(tmp_path, values, bad):
    f = _float_tiff(tmp_path / "nan.tif", values)
    size = np.asarray(values).size
    with pytest.raises(ValueError) as err:
        open_image(f)
    assert str(err.value) == (f"Image {f} has NaN or infinite pixel values ({bad} of {size} pixels); re-export it "
                              "as 8-bit, or replace the NaNs (numpy.nan_to_num) and save it again.")


def test_a_finite_float_image_still_opens(tmp_path):
    f = _float_tiff(tmp_path / "ok.tif", [[0.0, 0.5], [1.0, 0.25]])
    assert np.asarray(open_image(f))[..., 0].tolist() == [[0, 128], [255, 64]]


# --- EXIF orientation ---------------------------------------------------------------------------------------


def test_exif_orientation_is_applied_when_opening(tmp_path):
    from course_utils.vision.image import image_size
    sideways_photo(tmp_path / "phone.jpg")
    assert image_size(tmp_path / "phone.jpg") == (32, 64), "the size checks see the upright size"
    with open_image(tmp_path / "phone.jpg") as img:
        a = np.asarray(img.convert("RGB"))
    assert a.shape == (64, 32, 3)
    assert a[:20, :, 0].mean() > 200 and a[44:, :, 0].mean() < 50, "red on top, as every photo viewer shows it"
