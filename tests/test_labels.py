"""labels: tags with stray spaces or none at all parse correctly, a row without a label is an error naming it,
numeric columns keep their type; and what already fails early (a missing column, a missing image, an unknown
class) keeps failing with a clear message."""
from __future__ import annotations

import pandas as pd
import pytest
from helpers import csv_file, labelled_images, named_images, shaded_images
from PIL import Image

from course_utils.data_block import CategoryList, FloatList
from course_utils.tables import read_csv
from course_utils.vision import ImageList


# --- CSV labels ---------------------------------------------------------------------------------------------
def test_tags_with_stray_spaces_and_empty_tag_lists_parse(tmp_path):
    il = labelled_images(tmp_path, ["a; b", " a ;b ", "", "b;;", "a", "b"])
    with pytest.warns(UserWarning, match=r"1 row\(s\) of the table have no tags in column 'label'"):
        ll = il.split_by_idx([5]).label_from_df("label", label_delim=";")  # the empty row: trained as no tag
    y = ll.train.y
    assert y.classes == ["a", "b"]
    assert [y.decode(y.get(i)) for i in range(len(y))] == [["a", "b"], ["a", "b"], [], ["b"], ["a"]]


def test_space_delimited_tags_with_double_spaces_parse(tmp_path):
    il = labelled_images(tmp_path, ["clear  primary", " haze", "clear"])
    ll = il.split_none().label_from_df("label", label_delim=" ")
    assert ll.train.y.classes == ["clear", "haze", "primary"]


def test_single_labels_are_stripped_of_stray_spaces(tmp_path):
    ll = labelled_images(tmp_path, ["cat", "cat ", " dog", "dog"]).split_none().label_from_df("label")
    assert ll.train.y.classes == ["cat", "dog"]


def test_a_missing_single_label_is_an_error_naming_the_row(tmp_path):
    il = labelled_images(tmp_path, ["cat", None, "dog", "dog"])
    with pytest.raises(ValueError, match=r"1 row\(s\) have no label in column 'label', e.g. the row of img/1.png"):
        il.split_none().label_from_df("label")


def test_a_missing_column_lists_the_real_columns(tmp_path):
    with pytest.raises(KeyError, match=r"No column 'tags'.*\['name', 'label'\]"):
        labelled_images(tmp_path, ["a", "b"]).split_none().label_from_df("tags")


def test_a_row_naming_a_missing_image_fails_when_listing(tmp_path):
    df = pd.DataFrame({"name": ["0", "nope"], "label": ["a", "b"]})
    with pytest.raises(FileNotFoundError, match="1 of 2 images .* do not exist, e.g. .*nope.png"):
        ImageList.from_df(df, shaded_images(tmp_path, 1), folder="img", suffix=".png")


def test_a_label_outside_the_given_classes_names_its_item(tmp_path):
    with pytest.raises(ValueError, match="Label 'bird' of training item img/2.png is not in the classes"):
        labelled_images(tmp_path, ["cat", "dog", "bird"]).split_none().label_from_df("label", classes=["cat", "dog"])


def test_validation_labels_the_training_set_lacks_are_removed_with_a_warning(tmp_path):
    il = labelled_images(tmp_path, ["cat", "dog", "cat", "dog", "bird"])
    with pytest.warns(UserWarning, match="1 validation items have labels the training set lacks \\(bird\\)"):
        ll = il.split_by_idx([3, 4]).label_from_df("label")
    assert len(ll.valid) == 1


# --- an empty tag cell in a multi-label CSV -----------------------------------------------------------------
def _tagged(root, tags):
    (root / "imgs").mkdir(parents=True)
    for i in range(len(tags)):
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(root / "imgs" / f"img_{i}.jpg")
    (root / "labels.csv").write_text("image_name,tags\n" + "".join(f"img_{i},{t}\n" for i, t in enumerate(tags)))
    return ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg").split_by_idx([10, 11])


def test_rows_without_tags_are_named_in_a_warning_and_trained_as_no_tag(tmp_path):
    tags = ["a b"] * 12
    tags[3], tags[7], tags[11] = "", "  ", '" "'  # empty, spaces only, a quoted delimiter: no tag in any
    src = _tagged(tmp_path, tags)
    with pytest.warns(UserWarning) as record:
        lls = src.label_from_df(label_delim=" ")
    [w] = [w for w in record if "no tags" in str(w.message)]
    assert str(w.message) == (
        "3 row(s) of the table have no tags in column 'tags' (the rows of imgs/img_3.jpg, imgs/img_7.jpg, "
        "imgs/img_11.jpg): they are trained as 'no tag applies' (a target of all zeros). If those rows should not "
        "be there, delete them from the CSV, or read it with pandas and pass df.dropna(subset=['tags']) to "
        "ImageList.from_df.")
    assert w.filename == __file__, "the warning points at the caller's line"
    assert lls.train.y.get(3).tolist() == [0.0, 0.0] and lls.valid.y.get(1).tolist() == [0.0, 0.0]
    assert lls.train.y.get(0).tolist() == [1.0, 1.0]


def test_many_rows_without_tags_show_the_first_five_and_the_count(tmp_path):
    src = _tagged(tmp_path, ["", "a", "b"] * 4)
    with pytest.warns(UserWarning, match=r"^4 row\(s\) .* \(the rows of imgs/img_0\.jpg, imgs/img_3\.jpg, "
                                         r"imgs/img_6\.jpg, imgs/img_9\.jpg\)"):
        src.label_from_df(label_delim=" ")
    src = _tagged(tmp_path / "more", ["", "a"] * 6)
    with pytest.warns(UserWarning, match=r"^6 row\(s\) .*img_8\.jpg, \.\.\.\): they are trained"):
        src.label_from_df(label_delim=" ")


def test_a_fully_tagged_table_gives_no_such_warning(planet_path, recwarn):
    lls = (ImageList.from_csv(planet_path, "train_v2.csv", folder="train-jpg", suffix=".jpg")
           .split_by_rand_pct(0.25, seed=42).label_from_df(label_delim=" "))
    assert len(lls.train) == 18 and not [w for w in recwarn if "no tags" in str(w.message)]


# --- numeric label columns ----------------------------------------------------------------------------------
def test_numeric_label_columns_keep_their_type(tmp_path):
    root = named_images(tmp_path, [f"{i:03d}" for i in range(12)])
    csv_file(root, ["name,size,count"] + [f"{i:03d},{i / 4},{i % 3}" for i in range(12)])
    df = read_csv(root / "labels.csv")
    assert df["name"].tolist()[:3] == ["000", "001", "002"]
    assert df["size"].dtype.kind == "f" and df["count"].dtype.kind == "i"
    src = (ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg")
           .split_by_rand_pct(0.25, seed=0))
    assert isinstance(src.label_from_df(cols="size").train.y, FloatList)
    assert isinstance(src.label_from_df(cols="count").train.y, CategoryList)
