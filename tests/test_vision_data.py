"""vision.data.ImageList: every item is checked when the DataBunch is built, so a broken file, mask or point is
reported (all of them, by name) before training, not mid-epoch: truncated JPEGs, decompression bombs, images of
NaNs, EXIF orientation in training, broken links, `size=0` and images of mixed sizes."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers import sideways_photo
from PIL import Image

from course_utils.vision import (
    ImageList,
    PointsItemList,
    SegmentationItemList,
    cnn_learner,
    get_transforms,
    imagenet_stats,
    models,
)
from course_utils.vision.image import open_image

CPU = torch.device("cpu")
TAGS = ["a b", "b", "a c", "c", "b c", "a"]


def _tagged_images(root, n=24):
    """A tagged set: `imgs/img_i.jpg` (random 48-px JPEGs) and `labels.csv` (image_name, tags)."""
    (root / "imgs").mkdir()
    rng = np.random.default_rng(0)
    rows = ["image_name,tags"]
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / "imgs" / f"img_{i}.jpg")
        rows.append(f"img_{i},{TAGS[i % len(TAGS)]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _src(root):
    return (ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
            .split_by_rand_pct(0.2, seed=42)
            .label_from_df(label_delim=" "))


def _data(root, check=True, **tfm_kwargs):
    return (_src(root).transform(get_transforms(), size=32, **tfm_kwargs)
            .databunch(bs=4, num_workers=0, device=CPU, check=check).normalize(imagenet_stats))


def _truncate(p):
    p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])


# --- broken image files, all listed before training ---------------------------------------------------------
def test_a_truncated_jpeg_is_found_by_check(tmp_path):
    root = _tagged_images(tmp_path)
    _truncate(root / "imgs" / "img_9.jpg")
    problems = ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg").check()
    assert [p.name for p, _ in problems] == ["img_9.jpg"]
    assert "truncated" in problems[0][1]


def test_broken_images_are_all_listed_when_the_databunch_is_built(tmp_path):
    root = _tagged_images(tmp_path)
    _truncate(root / "imgs" / "img_9.jpg")
    (root / "imgs" / "img_10.jpg").write_bytes(b"")
    (root / "imgs" / "img_11.jpg").write_text("<html><body>Sign in to the Wi-Fi</body></html>")
    with pytest.raises(ValueError) as e:
        _data(root)
    msg = str(e.value)
    assert "3 of 24" in msg
    for name in ("img_9.jpg", "img_10.jpg", "img_11.jpg"):
        assert name in msg
    assert "check=False" in msg


def test_check_false_skips_the_check(tmp_path):
    root = _tagged_images(tmp_path)
    (root / "imgs" / "img_10.jpg").write_bytes(b"")
    data = _data(root, check=False)  # the user knows; the file fails only if it comes up in a batch
    assert len(data.train_ds) + len(data.valid_ds) == 24


def test_predict_on_a_truncated_jpeg_names_the_file(tmp_path):
    root = _tagged_images(tmp_path)
    learn = cnn_learner(_data(root), models.resnet18, pretrained=False)
    bad = tmp_path / "half.jpg"
    good = root / "imgs" / "img_3.jpg"
    bad.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"half\.jpg.*truncated"):
        learn.predict(bad)


def test_the_check_fills_the_decode_cache(tmp_path):
    root = _tagged_images(tmp_path)
    data = _data(root, cache=True)
    cache = data.train_ds.x.image_cache(32, None)
    assert cache.n_filled() == len(data.train_ds), "the check's decoding is not wasted: later epochs reuse it"


def test_a_large_dataset_shows_a_progress_bar(tmp_path, capsys, monkeypatch):
    import course_utils.vision.data as vdata
    monkeypatch.setattr(vdata, "CHECK_BAR_FROM", 10)
    _data(_tagged_images(tmp_path))
    assert "Checking" in capsys.readouterr().err


# --- masks and points checked before training ---------------------------------------------------------------
def test_bad_masks_are_all_listed_before_training(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(8):
        Image.new("RGB", (32, 32), (i * 20, 0, 0)).save(tmp_path / "images" / f"s_{i}.png")
        Image.fromarray(np.full((32, 32), i % 3, np.uint8)).save(tmp_path / "labels" / f"s_{i}_P.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "labels" / "s_5_P.png")  # a colour mask
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(tmp_path / "labels" / "s_6_P.png")  # wrong size
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(tmp_path / "labels" / "s_7_P.png")  # id 7 of 3 codes
    src = (SegmentationItemList.from_folder(tmp_path / "images").split_by_idx([0, 1])
           .label_from_func(lambda p: tmp_path / "labels" / f"{p.stem}_P.png", classes=["a", "b", "c"]))
    tfmd = src.transform(get_transforms(), size=16, tfm_y=True)  # item 0 of each set is fine
    with pytest.raises(ValueError) as e:
        tfmd.databunch(bs=2, num_workers=0, device=CPU)
    msg = str(e.value)
    assert "s_5_P.png is a RGB image" in msg
    assert "16 pixels" in msg or "32x16" in msg
    assert "s_7_P.png holds class id 7" in msg


def test_a_point_outside_its_image_is_found_before_training(tmp_path):
    for i in range(8):
        Image.new("RGB", (40, 30)).save(tmp_path / f"p_{i}.png")
    pts = {f"p_{i}.png": [[10.0, 10.0]] for i in range(8)}
    pts["p_6.png"] = [[45.0, 20.0]]  # row 45 of a 30-row image
    src = PointsItemList.from_folder(tmp_path).split_by_idx([0]).label_from_func(lambda p: pts[p.name])
    tfmd = src.transform(get_transforms(), size=(24, 32), tfm_y=True)
    with pytest.raises(ValueError, match=r"p_6\.png lie outside its 30x40 image"):
        tfmd.databunch(bs=2, num_workers=0, device=CPU)


# --- decompression bombs ------------------------------------------------------------------------------------
def test_a_decompression_bomb_is_named_and_check_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 is then > 2x the limit, like 20000x20000
    Image.new("RGB", (64, 64)).save(tmp_path / "huge.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "ok.png")
    Image.new("RGB", (16, 16)).save(tmp_path / "ok2.png")
    (tmp_path / "empty.png").write_bytes(b"")
    problems = ImageList.from_folder(tmp_path).check()
    assert sorted(p.name for p, _ in problems) == ["empty.png", "huge.png"]
    with pytest.raises(ValueError, match=r"huge\.png: it has 4,096 pixels.*MAX_IMAGE_PIXELS"):
        open_image(tmp_path / "huge.png")


# --- EXIF orientation ---------------------------------------------------------------------------------------


def test_exif_orientation_is_applied_in_training_and_predict(tmp_path):
    for i in range(6):
        sideways_photo(tmp_path / f"phone_{i}.jpg")
    src = ImageList.from_folder(tmp_path).split_by_idx([0]).label_from_func(lambda p: "phone")
    data = src.transform(None).databunch(bs=2, num_workers=0, device=CPU)  # no size: the images' own
    x, _ = data.one_batch()
    assert tuple(x.shape[-2:]) == (64, 32)
    assert x[0, 0, :20].mean() > 0.8 and x[0, 0, 44:].mean() < 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a one-class learner warns; here only the input matters
        learn = cnn_learner(data, models.resnet18, pretrained=False)
    assert tuple(learn.data.one_item(tmp_path / "phone_0.jpg").shape[-2:]) == (64, 32)


# --- broken links -------------------------------------------------------------------------------------------
def test_a_dangling_symlink_under_from_folder_is_reported(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"ok_{i}.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "moved_away.png")
    with pytest.warns(UserWarning, match=r"gone\.png.*moved_away\.png"):
        items = ImageList.from_folder(tmp_path)
    assert len(items) == 3


# --- size 0 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, -3, (0, 32)])
def test_a_size_of_zero_is_refused_at_transform(tmp_path, size):
    root = _tagged_images(tmp_path)
    with pytest.raises(ValueError, match="size must be"):
        _src(root).transform(get_transforms(), size=size)


# --- float images with NaN or infinite pixels ---------------------------------------------------------------
def _float_tiff(path, values):
    Image.fromarray(np.asarray(values, dtype=np.float32), mode="F").save(path)
    return path


@pytest.fixture
def tiffs(tmp_path):
    """Two classes of float TIFFs, one of them all NaN."""
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            _float_tiff(tmp_path / cls / f"{cls}{i}.tif", np.full((8, 8), 0.2 if cls == "a" else 0.8))
    _float_tiff(tmp_path / "b" / "b3.tif", np.full((8, 8), np.nan))
    return tmp_path


def test_check_lists_an_image_of_nans_with_what_to_do(tiffs, capsys):
    problems = ImageList.from_folder(tiffs).check()
    assert problems == [(tiffs / "b" / "b3.tif", f"Image {tiffs / 'b' / 'b3.tif'} has NaN or infinite pixel values "
                                                 "(64 of 64 pixels); re-export it as 8-bit, or replace the NaNs "
                                                 "(numpy.nan_to_num) and save it again.")]
    assert "1 of 8 images cannot be read" in capsys.readouterr().out


def test_an_image_of_nans_stops_the_databunch_before_training(tiffs):
    src = ImageList.from_folder(tiffs).split_by_rand_pct(0.25, seed=0).label_from_folder().transform(size=8)
    with pytest.raises(ValueError, match=r"1 of 8 items cannot be used for training:\n  - Image .*b3\.tif has NaN "
                                         r"or infinite pixel values"):
        src.databunch(bs=2, num_workers=0)


# --- unreadable image files ---------------------------------------------------------------------------------
def test_check_reports_a_truncated_jpeg_with_the_other_broken_files(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "whole.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:200])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    problems = ImageList.from_folder(tmp_path).check()
    assert sorted(p.name for p, _ in problems) == ["empty.png", "text.jpg", "truncated.jpg"]
    with pytest.raises(ValueError, match="3 of 5 images cannot be read"):
        ImageList.from_folder(tmp_path).check(strict=True)


# --- images of mixed sizes ----------------------------------------------------------------------------------
def _two_sizes(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8) if i else (10, 6), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    return ImageList.from_folder(tmp_path).split_by_idx([0]).label_from_folder()


def test_mixed_sizes_without_size_fail_at_transform_naming_two_files(tmp_path):
    with pytest.raises(ValueError) as e:
        _two_sizes(tmp_path).transform().databunch(bs=2, num_workers=0)
    msg = str(e.value)
    assert "0.png" in msg and "1.png" in msg
    assert "10x6" in msg and "8x8" in msg
    assert "size=" in msg


def test_mixed_sizes_without_transform_fail_at_databunch(tmp_path):
    with pytest.raises(ValueError, match="size="):
        _two_sizes(tmp_path).databunch(bs=2, num_workers=0)


def test_mixed_sizes_with_size_are_fine(tmp_path):
    data = _two_sizes(tmp_path).transform(size=8).databunch(bs=2, num_workers=0)
    assert data.one_batch()[0].shape == (2, 3, 8, 8)


def test_same_sizes_without_size_are_fine(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (8, 6), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    data = (ImageList.from_folder(tmp_path).split_by_idx([0]).label_from_folder()
            .transform().databunch(bs=2, num_workers=0))
    assert data.one_batch()[0].shape == (2, 3, 6, 8)
