"""Round two of the hostile-input trial (issue 16), tables and labels: CSVs in other encodings or empty,
tags joined by the wrong separator, the same image named twice, fewer than two classes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from course_utils.text import TextList
from course_utils.vision import ImageList


def _images(root, n=12):
    (root / "imgs").mkdir()
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(root / "imgs" / f"img_{i}.jpg")
    return root


ROWS = ["image_name,tags"] + [f"img_{i},{'café' if i % 2 else 'b'}" for i in range(12)]


# --- C3, C11, C12, T4: encodings and empty files ----------------------------------------------------
def test_a_utf16_csv_is_read(tmp_path):
    root = _images(tmp_path)
    (root / "labels.csv").write_text("\n".join(ROWS) + "\n", encoding="utf-16")  # Excel's "Unicode text"
    src = (ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
           .split_by_rand_pct(0.25, seed=0).label_from_df())
    assert sorted(src.train.y.classes) == ["b", "café"]


def test_a_latin1_csv_names_the_file_and_the_encoding(tmp_path):
    root = _images(tmp_path)
    (root / "labels.csv").write_bytes(("\n".join(ROWS) + "\n").encode("latin-1"))
    with pytest.raises(ValueError, match=r"labels\.csv is not UTF-8.*line 3.*encoding='latin-1'"):
        ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
    items = ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg", encoding="latin-1")
    assert "café" in items.inner_df["tags"].tolist()


def test_an_empty_csv_names_the_file(tmp_path):
    root = _images(tmp_path)
    (root / "labels.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"labels\.csv is empty"):
        ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")


def test_a_latin1_texts_csv_names_the_file(tmp_path):
    (tmp_path / "texts.csv").write_bytes("label,text\npos,très bien\nneg,mal\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"texts\.csv is not UTF-8"):
        TextList.from_csv(tmp_path, "texts.csv", cols="text")


# --- C5: tags joined by another separator --------------------------------------------------------------
@pytest.mark.parametrize("sep", [",", ";"])
def test_tags_joined_by_another_separator_warn(tmp_path, sep):
    root = _images(tmp_path)
    rows = ["image_name,tags"] + [f'img_{i},"a{sep}b"' if i % 2 else f"img_{i},c" for i in range(12)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=rf"contain '{sep}'.*a{sep}b.*label_delim='{sep}'"):
        (ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
         .split_by_rand_pct(0.25, seed=0).label_from_df(label_delim=" "))


# --- C8: the same image twice ----------------------------------------------------------------------------
def test_duplicate_names_warn_and_stay_on_one_side_of_the_split(tmp_path):
    root = _images(tmp_path)
    rows = ["image_name,tags"] + [f"img_{i},a" for i in range(12)] + [f"img_{i},b" for i in range(4)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"more than once.*img_0\.jpg \(rows 2, 14\)"):
        items = ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
    for seed in range(10):
        split = items.split_by_rand_pct(0.3, seed=seed)
        assert not {p.name for p in split.train.items} & {p.name for p in split.valid.items}


# --- fewer than two classes --------------------------------------------------------------------------------
def test_a_single_class_warns(tmp_path):
    root = _images(tmp_path)
    with pytest.warns(UserWarning, match="only one class"):
        ImageList.from_folder(root).split_by_rand_pct(0.25, seed=0).label_from_folder()


def test_codes_with_a_byte_order_mark_are_read_clean(tmp_path):
    from course_utils.train import own_data
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"s_{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "labels" / f"s_{i}.png")
    (tmp_path / "codes.txt").write_text("Sky\nRoad\n", encoding="utf-8-sig")
    src = own_data(tmp_path / "images", masks=tmp_path / "labels")
    assert src.train.y.classes == ["Sky", "Road"]
