"""Robustness of labels and splits: an empty validation set is warned about, tags with stray spaces or none at
all parse correctly, a row without a label is an error naming it; and what already fails early (a missing
column, a missing image, an unknown class, an empty training set) keeps failing with a clear message."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import tiny_model
from course_utils.data_block import ItemList
from course_utils.learner import Learner
from course_utils.vision import ImageList

CPU = torch.device("cpu")


def _images(tmp_path, n: int = 6, folder: str = "img"):
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / folder / f"{i}.png")
    return tmp_path


def _from(tmp_path, labels, **kw):
    df = pd.DataFrame({"name": [str(i) for i in range(len(labels))], "label": labels})
    return ImageList.from_df(df, _images(tmp_path, len(labels)), folder="img", suffix=".png", **kw)


# --- empty validation set ----------------------------------------------------------------------
def test_a_split_that_leaves_validation_empty_warns_and_training_shows_na(tmp_path, capsys):
    il = _from(tmp_path, ["a", "b"] * 4)
    with pytest.warns(UserWarning, match="validation set is empty.*#na#"):
        lists = il.split_by_rand_pct(0.1, seed=0)  # 10% of 8 items rounds down to none
    data = lists.label_from_df("label").transform(size=8).databunch(bs=2, num_workers=0, device=CPU)
    learn = Learner(data, tiny_model(data.c), metrics=[])
    learn.fit(1, 1e-2)
    assert learn.recorder.final_results["valid_loss"] is None
    assert "#na#" in capsys.readouterr().out


def test_split_by_files_matching_nothing_warns(tmp_path):
    with pytest.warns(UserWarning, match="validation set is empty"):
        _from(tmp_path, ["a", "b"]).split_by_files(["nothing.png"])


def test_split_by_folder_without_the_valid_folder_warns(tmp_path):
    _images(tmp_path, 3, "train/a")
    with pytest.warns(UserWarning, match="no items in a top-level folder named 'valid'"):
        ImageList.from_folder(tmp_path).split_by_folder()


def test_split_none_is_deliberate_and_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _from(tmp_path, ["a", "b"]).split_none()


def test_a_split_that_leaves_training_empty_is_an_error():
    with pytest.raises(ValueError, match="training set empty"):
        ItemList(["a", "b"]).split_by_idx([0, 1])


# --- CSV labels ---------------------------------------------------------------------------------
def test_tags_with_stray_spaces_and_empty_tag_lists_parse(tmp_path):
    il = _from(tmp_path, ["a; b", " a ;b ", "", "b;;", "a", "b"])
    with pytest.warns(UserWarning, match=r"1 row\(s\) of the table have no tags in column 'label'"):
        ll = il.split_by_idx([5]).label_from_df("label", label_delim=";")  # the empty row: trained as no tag
    y = ll.train.y
    assert y.classes == ["a", "b"]
    assert [y.decode(y.get(i)) for i in range(len(y))] == [["a", "b"], ["a", "b"], [], ["b"], ["a"]]


def test_space_delimited_tags_with_double_spaces_parse(tmp_path):
    ll = _from(tmp_path, ["clear  primary", " haze", "clear"]).split_none().label_from_df("label", label_delim=" ")
    assert ll.train.y.classes == ["clear", "haze", "primary"]


def test_single_labels_are_stripped_of_stray_spaces(tmp_path):
    ll = _from(tmp_path, ["cat", "cat ", " dog", "dog"]).split_none().label_from_df("label")
    assert ll.train.y.classes == ["cat", "dog"]


def test_a_missing_single_label_is_an_error_naming_the_row(tmp_path):
    il = _from(tmp_path, ["cat", None, "dog", "dog"])
    with pytest.raises(ValueError, match=r"1 row\(s\) have no label in column 'label', e.g. the row of img/1.png"):
        il.split_none().label_from_df("label")


def test_a_missing_column_lists_the_real_columns(tmp_path):
    with pytest.raises(KeyError, match=r"No column 'tags'.*\['name', 'label'\]"):
        _from(tmp_path, ["a", "b"]).split_none().label_from_df("tags")


def test_a_row_naming_a_missing_image_fails_when_listing(tmp_path):
    df = pd.DataFrame({"name": ["0", "nope"], "label": ["a", "b"]})
    with pytest.raises(FileNotFoundError, match="1 of 2 images .* do not exist, e.g. .*nope.png"):
        ImageList.from_df(df, _images(tmp_path, 1), folder="img", suffix=".png")


def test_a_label_outside_the_given_classes_names_its_item(tmp_path):
    with pytest.raises(ValueError, match="Label 'bird' of training item img/2.png is not in the classes"):
        _from(tmp_path, ["cat", "dog", "bird"]).split_none().label_from_df("label", classes=["cat", "dog"])


def test_validation_labels_the_training_set_lacks_are_removed_with_a_warning(tmp_path):
    il = _from(tmp_path, ["cat", "dog", "cat", "dog", "bird"])
    with pytest.warns(UserWarning, match="1 validation items have labels the training set lacks \\(bird\\)"):
        ll = il.split_by_idx([3, 4]).label_from_df("label")
    assert len(ll.valid) == 1


def test_fewer_training_items_than_a_batch_is_an_error(tmp_path):
    ll = _from(tmp_path, ["a", "b", "a"]).split_none().label_from_df("label").transform(size=8)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ll.databunch(bs=8, num_workers=0, device=CPU)
