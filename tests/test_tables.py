"""tables.read_csv and the CSV side of labelling: other encodings, empty or header-only files, rows with more
fields than the header, tags joined by the wrong separator, names in another unicode form, zero-padded names, the
same image named twice, fewer than two classes."""
from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from helpers import csv_file, named_images
from PIL import Image

from course_utils.tables import read_csv, same_names_on_disk
from course_utils.text import TextList
from course_utils.vision import ImageList


def _images(root, n=12):
    (root / "imgs").mkdir()
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(root / "imgs" / f"img_{i}.jpg")
    return root


ROWS = ["image_name,tags"] + [f"img_{i},{'café' if i % 2 else 'b'}" for i in range(12)]


# --- encodings and empty files ------------------------------------------------------------------------------
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


# --- tags joined by another separator -----------------------------------------------------------------------
@pytest.mark.parametrize("sep", [",", ";"])
def test_tags_joined_by_another_separator_warn(tmp_path, sep):
    root = _images(tmp_path)
    rows = ["image_name,tags"] + [f'img_{i},"a{sep}b"' if i % 2 else f"img_{i},c" for i in range(12)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=rf"contain '{sep}'.*a{sep}b.*label_delim='{sep}'"):
        (ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
         .split_by_rand_pct(0.25, seed=0).label_from_df(label_delim=" "))


# --- the same image twice -----------------------------------------------------------------------------------
def test_duplicate_names_warn_and_stay_on_one_side_of_the_split(tmp_path):
    root = _images(tmp_path)
    rows = ["image_name,tags"] + [f"img_{i},a" for i in range(12)] + [f"img_{i},b" for i in range(4)]
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match=r"more than once.*img_0\.jpg \(rows 2, 14\)"):
        items = ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
    for seed in range(10):
        split = items.split_by_rand_pct(0.3, seed=seed)
        assert not {p.name for p in split.train.items} & {p.name for p in split.valid.items}


# --- fewer than two classes ---------------------------------------------------------------------------------
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


# --- names in another unicode form than the CSV's (NFC and NFD) ---------------------------------------------
NFC = [unicodedata.normalize("NFC", f"café_{i}") for i in range(12)]


NFD = [unicodedata.normalize("NFD", n) for n in NFC]


def test_names_that_differ_only_in_unicode_form_are_matched(tmp_path):
    named_images(tmp_path, NFD)
    (tmp_path / "Ångström").mkdir()  # a folder in one form, named in the other
    (tmp_path / "Ångström" / "x.jpg").write_bytes(b"")
    asked = [tmp_path / "imgs" / f"{n}.jpg" for n in NFC] + [tmp_path / "imgs" / "nope.jpg",
                                                             tmp_path / unicodedata.normalize("NFD", "Ångström/x.jpg")]
    found = same_names_on_disk(asked)
    assert found[:12] == [tmp_path / "imgs" / f"{n}.jpg" for n in NFD]
    assert all(p.is_file() for p in found[:12]) and found[12] == asked[12]  # a missing file stays missing
    assert found[13] == tmp_path / "Ångström" / "x.jpg" and found[13].is_file()


def test_a_csv_naming_files_in_another_unicode_form_finds_them(tmp_path):
    root = named_images(tmp_path, NFD)
    csv_file(root, ["image_name,tags"] + [f"{n},a" for n in NFC])
    items = ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
    assert all(p.is_file() for p in items.items)


# --- unquoted commas between tags ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad_rows, line", [("all", 2), ({3}, 5), ({0}, 2), ({5}, 7)])
def test_a_row_with_more_fields_than_the_header_names_its_line(tmp_path, bad_rows, line):
    root = named_images(tmp_path, [f"img_{i}" for i in range(12)])
    def tags(i):
        return "cloudy,haze" if bad_rows == "all" or i in bad_rows else "clear"
    csv_file(root, ["image_name,tags"] + [f"img_{i},{tags(i)}" for i in range(12)])
    with pytest.raises(ValueError, match=rf"labels\.csv, line {line}, has 3 fields.*header.*2.*quote the value "
                                         r"\(\"cloudy,haze\"\).*separate tags with spaces \(cloudy haze\)"):
        ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")


def test_two_extra_fields_in_the_first_row_name_its_line(tmp_path):
    csv = csv_file(tmp_path, ["image_name,tags", "img_0,cloudy,haze,water", "img_1,clear"])
    with pytest.raises(ValueError, match=r"line 2, has 4 fields"):
        read_csv(csv)


def test_an_index_column_asked_for_is_still_read(tmp_path):
    csv = csv_file(tmp_path, ["a,b", "x,1,2", "y,3,4"])
    df = read_csv(csv, index_col=0)
    assert list(df.index) == ["x", "y"] and list(df.columns) == ["a", "b"]


# --- a header and no rows -----------------------------------------------------------------------------------
def test_a_header_only_csv_says_so(tmp_path):
    root = named_images(tmp_path, [f"img_{i}" for i in range(4)])
    csv_file(root, ["image_name,tags", "", ""])
    with pytest.raises(ValueError, match=r"labels\.csv has a header \(image_name, tags\) but no rows"):
        ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")


# --- zero-padded numeric names ------------------------------------------------------------------------------
def test_zero_padded_names_stay_text(tmp_path):
    names = [f"{i:04d}" for i in range(24)]
    root = named_images(tmp_path, names)
    csv_file(root, ["image_name,tags"] + [f"{n},{'a' if i % 2 else 'b'}" for i, n in enumerate(names)])
    items = ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
    assert [p.name for p in items.items] == [f"{n}.jpg" for n in names]


def test_a_dtype_given_is_respected(tmp_path):
    csv = csv_file(tmp_path, ["name,n", "0001,1", "0002,2"])
    assert read_csv(csv, dtype={"name": int})["name"].tolist() == [1, 2]
