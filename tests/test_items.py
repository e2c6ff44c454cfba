"""items.ItemList: listing items, and splits that leave the validation or training set empty."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest
from helpers import CPU, labelled_images, shaded_images, tiny_model

from course_utils.data_block import ItemList
from course_utils.learner import Learner
from course_utils.vision import ImageList


# --- missing items ------------------------------------------------------------------------------------------
def test_a_csv_with_a_missing_item_names_its_row(tmp_path):
    with pytest.raises(ValueError, match="row 3 of the CSV"):
        ItemList.from_df(pd.DataFrame({"name": ["a", None]}))


# --- an empty validation or training set --------------------------------------------------------------------

def test_a_split_that_leaves_validation_empty_warns_and_training_shows_na(tmp_path, capsys):
    il = labelled_images(tmp_path, ["a", "b"] * 4)
    with pytest.warns(UserWarning, match="validation set is empty.*#na#"):
        lists = il.split_by_rand_pct(0.1, seed=0)  # 10% of 8 items rounds down to none
    data = lists.label_from_df("label").transform(size=8).databunch(bs=2, num_workers=0, device=CPU)
    learn = Learner(data, tiny_model(data.c), metrics=[])
    learn.fit(1, 1e-2)
    assert learn.recorder.final_results["valid_loss"] is None
    assert "#na#" in capsys.readouterr().out


def test_split_by_files_matching_nothing_warns(tmp_path):
    with pytest.warns(UserWarning, match="validation set is empty"):
        labelled_images(tmp_path, ["a", "b"]).split_by_files(["nothing.png"])


def test_split_by_folder_without_the_valid_folder_warns(tmp_path):
    shaded_images(tmp_path, 3, "train/a")
    with pytest.warns(UserWarning, match="no items in a top-level folder named 'valid'"):
        ImageList.from_folder(tmp_path).split_by_folder()


def test_split_none_is_deliberate_and_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labelled_images(tmp_path, ["a", "b"]).split_none()


def test_a_split_that_leaves_training_empty_is_an_error():
    with pytest.raises(ValueError, match="training set empty"):
        ItemList(["a", "b"]).split_by_idx([0, 1])
