"""Robustness of other inputs: broken image files reported all at once, colour masks, points labels of
the wrong shape, and texts that are not UTF-8, empty, or missing from a CSV."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from course_utils.data_block import ItemList
from course_utils.text import TextList
from course_utils.vision import ImageList, PointsItemList, open_mask

CPU = torch.device("cpu")


# --- image files ----------------------------------------------------------------------------------
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


# --- masks -------------------------------------------------------------------------------------------
def test_a_colour_mask_is_refused_saying_how_to_convert_it(tmp_path):
    Image.fromarray(np.array([[[128, 64, 128], [64, 0, 128]]], dtype=np.uint8)).save(tmp_path / "c_P.png")
    with pytest.raises(ValueError, match=r"c_P\.png is a RGB image.*colour table.*8-bit grey PNG"):
        open_mask(tmp_path / "c_P.png")


# --- points ---------------------------------------------------------------------------------------------
def test_a_points_label_that_is_not_row_col_pairs_names_its_item(tmp_path):
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    labels = {"0.png": [1.0, 2.0], "1.png": [1.0, 2.0, 3.0], "2.png": [4.0, 4.0]}
    with pytest.raises(ValueError, match=r"label of 1\.png is \[1\.0, 2\.0, 3\.0\].*\(row, col\) pair"):
        PointsItemList.from_folder(tmp_path).split_none().label_from_func(lambda p: labels[p.name])


# --- texts ---------------------------------------------------------------------------------------------
def _texts(tmp_path):
    for label in ("pos", "neg"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "train" / label / f"{i}.txt").write_text(f"a {label} review number {i}, quite short.")
    return tmp_path


def test_a_text_file_that_is_not_utf8_names_the_file_and_the_fix(tmp_path):
    root = _texts(tmp_path)
    (root / "train" / "pos" / "latin.txt").write_bytes("caf\xe9 na\xefve".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt.*re-save it as UTF-8"):
        TextList.from_folder(root).split_by_rand_pct(0.25, seed=0).label_from_folder()


def test_an_empty_text_is_kept_with_a_warning_naming_it(tmp_path):
    root = _texts(tmp_path)
    (root / "train" / "pos" / "blank.txt").write_text("  \n")
    with pytest.warns(UserWarning, match=r"1 of the training texts are empty, e.g. train/pos/blank\.txt"):
        ll = TextList.from_folder(root).split_by_idx([0, 5]).label_from_folder()
    data = ll.databunch(bs=2, device=CPU)
    assert next(iter(data.train_dl))[0].shape[0] == 2


def test_an_empty_text_in_a_table_is_named_by_its_position(tmp_path):
    df = pd.DataFrame({"text": ["good film", " ", "bad film", "fine"], "label": ["p", "n", "n", "p"]})
    with pytest.warns(UserWarning, match="text 1 of the training set"):
        TextList.from_df(df, tmp_path).split_none().label_from_df("label")


def test_a_csv_with_a_missing_text_names_its_row(tmp_path):
    (tmp_path / "t.csv").write_text("label,text\np,good\nn,\n")
    with pytest.raises(ValueError, match="row 3"):
        TextList.from_csv(tmp_path, "t.csv")


def test_a_csv_with_a_missing_item_names_its_row(tmp_path):
    with pytest.raises(ValueError, match="row 3 of the CSV"):
        ItemList.from_df(pd.DataFrame({"name": ["a", None]}))
