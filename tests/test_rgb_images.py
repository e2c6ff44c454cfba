"""Every public way to open an image gives RGB: real Planet JPEGs are 4-component (CMYK) files."""
from __future__ import annotations

import numpy as np
from PIL import Image

from course_utils.vision import ImageList, open_image

# CMYK ink for a pure red: no cyan, full magenta and yellow, no black.
RED_INK = (0, 255, 255, 0)


def _cmyk_jpeg(path, ink=RED_INK, size=(16, 12)):
    Image.new("CMYK", size, ink).save(path, quality=95)
    return path


def test_a_cmyk_jpeg_opens_as_rgb_in_its_true_colours(tmp_path):
    f = _cmyk_jpeg(tmp_path / "train_0.jpg")
    with Image.open(f) as raw:
        assert raw.mode == "CMYK"  # the file really is 4-component, like Planet's
    img = open_image(f)
    a = np.asarray(img)
    assert img.mode == "RGB" and a.shape == (12, 16, 3)
    assert a[..., 0].mean() > 200 and a[..., 1].mean() < 60 and a[..., 2].mean() < 60  # red, not washed-out grey


def test_open_image_leaves_no_file_open(tmp_path):
    f = _cmyk_jpeg(tmp_path / "a.jpg")
    img = open_image(f)
    f.unlink()  # would fail on Windows, and the pixels would be lost, if the image still read the file lazily
    assert np.asarray(img).shape == (12, 16, 3)


def test_an_image_list_item_is_rgb(tmp_path):
    for i in range(2):
        _cmyk_jpeg(tmp_path / f"train_{i}.jpg")
    items = ImageList.from_folder(tmp_path)
    assert items.get(0).mode == "RGB" and items[1].mode == "RGB"
    assert items.raw(0).mode == "CMYK"  # what the pipeline decodes itself, at the scale it needs
