"""The data block chain: ItemList -> split -> label -> transform -> DataBunch (lesson 3's planet)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
import torch.nn as nn
from helpers import COLOURS, N_PLANET, N_TRAIN_PER_CLASS, N_VALID_PER_CLASS, PLANET_CLASSES, PLANET_TINY, planet_tags
from PIL import Image

from course_utils.data_block import CategoryList, MultiCategoryList, TransformConfig
from course_utils.vision import ImageList, get_transforms, imagenet_stats


def _names(il) -> list[str]:
    return [Path(o).name for o in il.items]


@pytest.fixture
def planet_items(planet_path):
    return ImageList.from_csv(planet_path, "train_v2.csv", folder="train-jpg", suffix=".jpg")


# --- splitting ----------------------------------------------------------------------------------
def test_from_csv_lists_one_item_per_row_in_csv_order(planet_items, planet_path):
    assert len(planet_items) == N_PLANET
    assert planet_items.items[0] == planet_path / "train-jpg" / "train_0.jpg"
    assert _names(planet_items) == [f"train_{i}.jpg" for i in range(N_PLANET)]


def test_split_by_rand_pct_same_seed_gives_same_split(planet_items):
    a = planet_items.split_by_rand_pct(0.2, seed=7)
    b = planet_items.split_by_rand_pct(0.2, seed=7)
    assert _names(a.valid) == _names(b.valid)
    assert _names(a.train) == _names(b.train)


def test_split_by_rand_pct_different_seed_gives_different_split(planet_items):
    a = planet_items.split_by_rand_pct(0.25, seed=1)
    b = planet_items.split_by_rand_pct(0.25, seed=2)
    assert set(_names(a.valid)) != set(_names(b.valid))


@pytest.mark.parametrize("pct", [0.1, 0.2, 0.25, 0.3, 0.5])
def test_split_by_rand_pct_valid_share_is_int_of_pct_times_n(planet_items, pct):
    split = planet_items.split_by_rand_pct(pct, seed=0)
    assert len(split.valid) == int(pct * N_PLANET)
    assert len(split.train) == N_PLANET - int(pct * N_PLANET)


def test_split_by_rand_pct_is_a_partition_of_the_items(planet_items):
    split = planet_items.split_by_rand_pct(0.3, seed=3)
    train, valid = set(_names(split.train)), set(_names(split.valid))
    assert not train & valid
    assert train | valid == set(_names(planet_items))


def test_split_by_rand_pct_rejects_a_share_of_one_or_more(planet_items):
    with pytest.raises(ValueError, match="valid_pct"):
        planet_items.split_by_rand_pct(1.0)


def test_split_by_idx_puts_exactly_those_items_in_valid(planet_items):
    split = planet_items.split_by_idx([3, 0, 10])
    assert _names(split.valid) == ["train_0.jpg", "train_3.jpg", "train_10.jpg"]
    assert _names(split.train) == [f"train_{i}.jpg" for i in range(N_PLANET) if i not in (0, 3, 10)]


def test_split_by_idx_keeps_the_csv_rows_with_their_items(planet_items):
    split = planet_items.split_by_idx([5])
    assert split.valid.inner_df["image_name"].tolist() == ["train_5"]
    assert split.train.inner_df["image_name"].tolist()[5] == "train_6"


def test_split_by_idx_out_of_range_raises_index_error(planet_items):
    with pytest.raises(IndexError):
        planet_items.split_by_idx([N_PLANET])


def test_split_by_valid_func_sends_matching_items_to_valid(planet_items):
    split = planet_items.split_by_valid_func(lambda p: p.stem.endswith("7"))
    assert _names(split.valid) == ["train_7.jpg", "train_17.jpg"]
    assert len(split.train) == N_PLANET - 2


def test_split_by_fname_file_reads_one_name_per_line(planet_items, planet_path, tmp_path):
    (tmp_path / "valid.txt").write_text("train_2.jpg\n\ntrain_20.jpg\n")
    split = planet_items.split_by_fname_file("valid.txt", path=tmp_path)
    assert _names(split.valid) == ["train_2.jpg", "train_20.jpg"]
    assert len(split.train) == N_PLANET - 2


def test_split_by_fname_file_missing_file_raises(planet_items, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        planet_items.split_by_fname_file("nope.txt", path=tmp_path)


def test_split_by_folder_uses_train_and_valid_and_drops_other_folders(colour_path):
    items = ImageList.from_folder(colour_path)
    assert any(Path(o).relative_to(colour_path).parts[0] == "extra" for o in items.items)
    split = items.split_by_folder()
    top = lambda il: {Path(o).relative_to(colour_path).parts[0] for o in il.items}  # noqa: E731
    assert top(split.train) == {"train"}
    assert top(split.valid) == {"valid"}
    assert len(split.train) == N_TRAIN_PER_CLASS * len(COLOURS)
    assert len(split.valid) == N_VALID_PER_CLASS * len(COLOURS)


def test_split_none_keeps_everything_for_training(planet_items):
    split = planet_items.split_none()
    assert len(split.train) == N_PLANET and len(split.valid) == 0


# --- labelling -------------------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda il: il.label_from_df(label_delim=" "),
    lambda il: il.label_from_func(lambda p: p.stem),
    lambda il: il.label_from_folder(),
])
def test_labelling_before_splitting_raises_type_error_mentioning_split_none(planet_items, call):
    with pytest.raises(TypeError, match="split_none"):
        call(planet_items)


@pytest.mark.parametrize("old, new", [("random_split_by_pct", "split_by_rand_pct"), ("no_split", "split_none")])
def test_lesson_video_names_raise_attribute_error_naming_the_new_name(planet_items, old, new):
    with pytest.raises(AttributeError, match=new):
        getattr(planet_items, old)
    assert not hasattr(planet_items, old)


def test_lesson_video_label_from_csv_on_split_items_names_label_from_df(planet_items):
    split = planet_items.split_by_rand_pct(0.2, seed=0)
    with pytest.raises(AttributeError, match="label_from_df"):
        split.label_from_csv("train_v2.csv")


def test_unknown_attribute_still_raises_plain_attribute_error(planet_items):
    with pytest.raises(AttributeError, match="no attribute 'not_a_method'"):
        planet_items.not_a_method


def test_label_from_df_with_delimiter_gives_sorted_classes_and_multi_hot_targets(planet_items):
    ll = planet_items.split_by_idx([2, 9]).label_from_df(label_delim=" ")
    y = ll.train.y
    assert isinstance(y, MultiCategoryList)
    assert y.classes == PLANET_CLASSES == sorted(PLANET_CLASSES)
    # training item 2 is train_3 ("agriculture clear primary"): train_2 went to validation.
    assert planet_tags(3) == "agriculture clear primary"
    assert ll.train.x.items[2].name == "train_3.jpg"
    assert y.get(2).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    # valid item 0 is train_2 ("haze primary water").
    assert ll.valid.y.get(0).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    # every target round-trips to its CSV tags
    for i, name in enumerate(_names(ll.train.x)):
        k = int(Path(name).stem.split("_")[1])
        assert y.decode(y.get(i)) == sorted(planet_tags(k).split())


def test_multi_label_loss_is_bce_with_logits(planet_src):
    assert isinstance(planet_src.train.y.loss_func(), nn.BCEWithLogitsLoss)


@pytest.mark.skipif(not (PLANET_TINY / "train_v2.csv").is_file(), reason="bundled planet_tiny data not present")
def test_label_from_df_on_the_bundled_planet_tiny_csv():
    """The real Kaggle format: train_0 is tagged 'clear conventional_mine primary road'."""
    df = pd.read_csv(PLANET_TINY / "train_v2.csv")
    ll = (ImageList.from_csv(PLANET_TINY, "train_v2.csv", folder="train-jpg", suffix=".jpg")
          .split_by_idx([len(df) - 1])
          .label_from_df(label_delim=" "))
    y = ll.train.y
    expected_classes = sorted({t for tags in df["tags"] for t in tags.split()})
    assert y.classes == expected_classes
    assert ll.train.x.items[0].name == "train_0.jpg"
    assert y.decode(y.get(0)) == sorted(df["tags"][0].split())
    assert int(y.get(0).sum()) == len(df["tags"][0].split())


def test_label_from_folder_gives_category_list_and_cross_entropy(colour_path):
    ll = ImageList.from_folder(colour_path).split_by_folder().label_from_folder()
    y = ll.train.y
    assert isinstance(y, CategoryList) and not isinstance(y, MultiCategoryList)
    assert y.classes == sorted(COLOURS)
    assert isinstance(y.loss_func(), nn.CrossEntropyLoss)
    for i, p in enumerate(ll.train.x.items):
        assert y.classes[int(y.get(i))] == Path(p).parent.name
        assert y.get(i).dtype == torch.long


def test_label_from_func_gives_category_list_with_the_function_labels(colour_path):
    ll = (ImageList.from_folder(colour_path).split_by_folder()
          .label_from_func(lambda p: "warm" if p.name.startswith("red") else "cold"))
    y = ll.train.y
    assert type(y) is CategoryList
    assert y.classes == ["cold", "warm"]
    assert isinstance(y.loss_func(), nn.CrossEntropyLoss)
    for i, p in enumerate(ll.train.x.items):
        assert y.decode(y.get(i)) == ("warm" if Path(p).name.startswith("red") else "cold")


def test_single_label_not_in_given_classes_raises_value_error_naming_the_item(colour_path):
    split = ImageList.from_folder(colour_path).split_by_folder()
    with pytest.raises(ValueError, match=r"'blue'.*blue_0\.png"):
        split.label_from_folder(classes=["green", "red"])


def test_multi_label_not_in_given_classes_raises_value_error_naming_the_item(planet_items):
    split = planet_items.split_by_idx([0])
    # train_1 is the first training item whose tags include 'cloudy'
    with pytest.raises(ValueError, match=r"'cloudy'.*train_1\.jpg"):
        split.label_from_df(label_delim=" ", classes=["agriculture", "clear", "haze", "primary", "water"])


def test_given_classes_fix_the_order_of_the_targets(planet_items):
    classes = ["water", "primary", "haze", "cloudy", "clear", "agriculture"]
    ll = planet_items.split_by_idx([0]).label_from_df(label_delim=" ", classes=classes)
    assert ll.train.y.classes == classes
    assert ll.train.y.get(0).tolist() == [0, 0, 0, 1, 0, 0]  # training item 0 is train_1: cloudy


def test_single_label_valid_items_with_unseen_labels_are_dropped_with_a_warning(colour_path):
    split = ImageList.from_folder(colour_path).split_by_folder()
    train_labels = [Path(p).parent.name if Path(p).parent.name != "blue" else "red" for p in split.train.items]
    valid_labels = [Path(p).parent.name for p in split.valid.items]
    with pytest.warns(UserWarning, match="blue"):
        ll = split.label_from_lists(train_labels, valid_labels)
    assert len(ll.valid.x) == len(ll.valid.y) == 2 * N_VALID_PER_CLASS
    assert all(Path(p).parent.name != "blue" for p in ll.valid.x.items)


def test_csv_missing_item_column_raises_key_error_listing_the_columns(planet_path):
    with pytest.raises(KeyError, match=r"image_name.*tags"):
        ImageList.from_csv(planet_path, "train_v2.csv", cols="id", folder="train-jpg", suffix=".jpg")


def test_csv_missing_label_column_raises_key_error_listing_the_columns(planet_items):
    split = planet_items.split_by_rand_pct(0.2, seed=0)
    with pytest.raises(KeyError, match=r"'labels'.*\['image_name', 'tags'\]"):
        split.label_from_df(cols="labels", label_delim=" ")


def test_csv_naming_missing_image_files_raises_file_not_found(planet_path, tmp_path):
    df = pd.read_csv(planet_path / "train_v2.csv")
    df.loc[len(df)] = ["train_999", "clear"]
    with pytest.raises(FileNotFoundError, match="train_999"):
        ImageList.from_df(df, planet_path, folder="train-jpg", suffix=".jpg")


def test_csv_with_wrong_suffix_raises_file_not_found(planet_path):
    with pytest.raises(FileNotFoundError, match="suffix"):
        ImageList.from_csv(planet_path, "train_v2.csv", folder="train-jpg", suffix=".png")


# --- DataBunch -------------------------------------------------------------------------------------
def test_databunch_knows_number_of_classes_and_class_names(planet_data, colour_data):
    assert planet_data.c == len(PLANET_CLASSES) and planet_data.classes == PLANET_CLASSES
    assert colour_data.c == 3 and colour_data.classes == sorted(COLOURS)
    assert isinstance(planet_data.loss_func, nn.BCEWithLogitsLoss)
    assert isinstance(colour_data.loss_func, nn.CrossEntropyLoss)


def test_train_dl_yields_full_normalized_batches_of_the_requested_size(planet_data):
    batches = list(planet_data.train_dl)
    # 18 training items, bs 4: the short last batch is dropped
    assert len(planet_data.train_ds) == 18
    assert len(batches) == len(planet_data.train_dl) == 18 // 4
    for x, y in batches:
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
        assert y.shape == (4, len(PLANET_CLASSES)) and set(y.unique().tolist()) <= {0.0, 1.0}
        raw = planet_data.denorm(x)
        assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
        assert x.min() < -0.5  # normalised: dark pixels fall well below zero
        mean = torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1)
        std = torch.tensor(imagenet_stats[1]).view(1, 3, 1, 1)
        torch.testing.assert_close(x, (raw - mean) / std)


def test_valid_dl_keeps_every_item_in_order(planet_data):
    ys = torch.cat([y for _, y in planet_data.valid_dl])
    expected = torch.stack([planet_data.valid_ds.y.get(i) for i in range(len(planet_data.valid_ds))])
    assert len(planet_data.valid_ds) == 6
    torch.testing.assert_close(ys, expected)


def test_valid_dl_batch_is_the_normalised_item(planet_data):
    x, _ = next(iter(planet_data.valid_dl))
    item, _ = planet_data.valid_ds[0]
    mean = torch.tensor(imagenet_stats[0]).view(3, 1, 1)
    std = torch.tensor(imagenet_stats[1]).view(3, 1, 1)
    torch.testing.assert_close(x[0], (item - mean) / std)


def test_databunch_with_batch_larger_than_train_set_raises(planet_src):
    with pytest.raises(ValueError, match="bs"):
        planet_src.transform(size=32).databunch(bs=64, num_workers=0)


def test_normalize_twice_raises(planet_data):
    with pytest.raises(RuntimeError, match="once"):
        planet_data.normalize(imagenet_stats)


def test_normalize_with_imagenet_stats_gives_expected_values_for_a_known_pixel(tmp_path):
    rgb = (255, 0, 128)
    for split in ("train", "valid"):
        (tmp_path / split / "a").mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), rgb).save(tmp_path / split / "a" / f"{i}.png")
    data = (ImageList.from_folder(tmp_path).split_by_folder().label_from_folder()
            .transform(size=8).databunch(bs=2, num_workers=0).normalize(imagenet_stats))
    x, _ = next(iter(data.valid_dl))
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    for c in range(3):
        torch.testing.assert_close(x[:, c], torch.full_like(x[:, c], expected[c]), atol=1e-5, rtol=0)


def test_normalize_without_stats_uses_training_batch_statistics(planet_src):
    data = planet_src.transform(size=32).databunch(bs=4, num_workers=0)
    raw = torch.cat([x for x, _ in data.train_dl])
    data.normalize()
    assert data.norm is not None
    mean = data.norm.mean.flatten()
    # the statistics come from one batch of these images, so they lie close to the whole set's
    torch.testing.assert_close(mean, raw.mean((0, 2, 3)), atol=0.05, rtol=0)


def test_show_batch_draws_a_grid_titled_with_the_tags(planet_data):
    plt.close("all")
    planet_data.show_batch(rows=2)
    fig = plt.gcf()
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4
    valid_titles = {";".join(sorted(planet_tags(i).split())) for i in range(N_PLANET)}
    for ax in shown:
        assert ax.get_title() in valid_titles
        img = ax.images[0].get_array()
        assert img.shape == (32, 32, 3)


def test_show_batch_single_label_titles_are_class_names(colour_data):
    plt.close("all")
    colour_data.show_batch(rows=2, ds_type="valid")
    titles = [ax.get_title() for ax in plt.gcf().axes if ax.images]
    assert len(titles) == 4 and set(titles) <= set(COLOURS)


def test_add_test_gives_an_unlabelled_test_loader(planet_src, planet_path):
    test_items = sorted((planet_path / "test-jpg").glob("*.jpg"))
    data = planet_src.add_test(test_items).transform(size=32).databunch(bs=4, num_workers=0)
    x, _ = next(iter(data.test_dl))
    assert x.shape == (1, 3, 32, 32)


def test_transform_checks_the_first_item_immediately(planet_src):
    """A bad setting fails at `transform`, not in the middle of training."""
    with pytest.raises(ValueError):
        planet_src.transform(get_transforms(), size="big")


def test_transform_options_become_one_frozen_config_per_set(planet_src):
    import dataclasses

    ls = planet_src.transform(get_transforms(), size=32, cache=True)
    assert ls.train.tfm_cfg == TransformConfig(size=32, cache=True, train=True)
    assert ls.valid.tfm_cfg == dataclasses.replace(ls.train.tfm_cfg, train=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ls.valid.tfm_cfg.train = True


@pytest.mark.parametrize("bogus", ["bogus", "train", "max_zoom"])
def test_an_unknown_transform_option_is_refused_naming_it_and_the_known_ones(planet_src, bogus):
    with pytest.raises(TypeError, match=rf"unknown option\(s\) '{bogus}'; its options are size, resize_method, "
                                        r"tfm_y, cache.*get_transforms"):
        planet_src.transform(get_transforms(), size=32, **{bogus: 1})


def test_numpy_string_classes_become_plain_strings_so_exports_load_safely():
    import numpy as np

    from course_utils.data_block import CategoryList

    y = CategoryList([0, 1], np.array(["cat", "dog"]))
    assert y.classes == ["cat", "dog"] and all(type(c) is str for c in y.classes)


def test_label_from_re_labels_with_the_first_group_and_names_a_file_it_cannot_label(colour_path):
    src = ImageList.from_folder(colour_path, extensions=[".png"]).split_by_folder()
    labelled = src.label_from_re(r"/([a-z]+)_\d+\.png$")
    assert labelled.train.y.classes == sorted(COLOURS)
    assert all(labelled.train.y.label_str(labelled.train.y.get(i)) == Path(p).parent.name
               for i, p in enumerate(labelled.train.x.items))
    with pytest.raises(ValueError, match=r"does not match .*\.png"):
        src.label_from_re(r"/(\d+)_[a-z]+\.png$")


# --- every problem of the data in one report -------------------------------------------------------------
def _jpeg_folder(tmp_path, n=12, tags=None):
    """n small JPEGs 0.jpg ... in tmp_path/img, with a CSV naming them (and their tags); 3.jpg is cut in half and
    5.jpg is empty, as a copy that was interrupted leaves them."""
    (tmp_path / "img").mkdir()
    for i in range(n):
        Image.new("RGB", (16, 16), (i * 20, 40, 90)).save(tmp_path / "img" / f"{i}.jpg", quality=95)
    data = (tmp_path / "img" / "3.jpg").read_bytes()
    (tmp_path / "img" / "3.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "img" / "5.jpg").write_bytes(b"")
    tags = tags or ["a b" if i % 2 else "a" for i in range(n)]
    return pd.DataFrame({"name": [str(i) for i in range(n)], "tags": tags})


def test_a_missing_file_is_reported_with_the_unreadable_ones(tmp_path):
    """A table naming a missing file, with a truncated and an empty JPEG among the rest: one error names all three."""
    df = _jpeg_folder(tmp_path)
    df = pd.concat([df, pd.DataFrame({"name": ["nope"], "tags": ["a"]})], ignore_index=True)
    with pytest.raises(FileNotFoundError) as e:
        ImageList.from_df(df, tmp_path, folder="img", suffix=".jpg")
    msg = str(e.value)
    assert msg.startswith("1 of 13 images listed in the table do not exist, e.g. ") and "nope.jpg" in msg
    assert "problems too (2)" in msg and "3.jpg" in msg and "5.jpg" in msg


def test_a_missing_label_is_reported_with_the_unreadable_files(tmp_path):
    df = _jpeg_folder(tmp_path, tags=["a", None] + ["b"] * 10)
    il = ImageList.from_df(df, tmp_path, folder="img", suffix=".jpg")
    with pytest.raises(ValueError, match=r"(?s)1 row\(s\) have no label in column 'tags'.*img/1.jpg.*"
                                         r"The files have problems too \(2 of 12\)") as e:
        il.split_none().label_from_df("tags")
    assert "3.jpg" in str(e.value) and "5.jpg" in str(e.value)


def test_the_databunch_check_groups_problems_by_kind_with_counts(tmp_path):
    df = _jpeg_folder(tmp_path)
    il = ImageList.from_df(df, tmp_path, folder="img", suffix=".jpg")
    (tmp_path / "img" / "7.jpg").unlink()  # gone after listing
    src = il.split_none().label_from_df("tags", label_delim=" ").transform(None, size=16)
    with pytest.raises(ValueError) as e:
        src.databunch(bs=2, num_workers=0)
    msg = str(e.value)
    assert msg.startswith("3 of 12 items cannot be used for training:\n")
    assert "  files that do not exist (1):\n    - " in msg and "7.jpg" in msg
    assert "  files that cannot be read (2):\n    - " in msg




# --- repeated rows, Unicode names -----------------------------------------------------------------------
def test_a_table_naming_few_files_many_times_gives_a_short_warning(tmp_path):
    """200,000 rows naming 24 files: the warning counts each file's rows and shows the first few, not all."""
    (tmp_path / "img").mkdir()
    for i in range(24):
        Image.new("RGB", (4, 4)).save(tmp_path / "img" / f"{i}.png")
    df = pd.DataFrame({"name": [str(i % 24) for i in range(200_000)], "label": "a"})
    with pytest.warns(UserWarning, match=r"names 24 image\(s\) more than once: img/0.png \(8334 rows: 2, 26, 50, "
                                         r"\.\.\.\)") as w:
        ImageList.from_df(df, tmp_path, folder="img", suffix=".png")
    assert max(len(str(r.message)) for r in w) < 1000


@pytest.mark.parametrize("copies", [2, 3])
def test_a_random_split_of_repeated_files_keeps_the_share_and_the_copies_together(tmp_path, copies):
    (tmp_path / "img").mkdir()
    for i in range(24):
        Image.new("RGB", (4, 4)).save(tmp_path / "img" / f"{i}.png")
    df = pd.DataFrame({"name": [str(i) for i in range(24)] * copies, "label": "a"})
    with pytest.warns(UserWarning, match="more than once"):
        il = ImageList.from_df(df, tmp_path, folder="img", suffix=".png")
    n = 24 * copies
    for seed in range(5):
        split = il.split_by_rand_pct(0.2, seed=seed)
        assert abs(len(split.valid) - 0.2 * n) <= copies / 2 + 0.5, (seed, len(split.valid))
        assert not set(map(str, split.valid.items)) & set(map(str, split.train.items))


def test_a_random_split_emptied_by_repeats_names_the_repeated_files(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "img" / "0.png")
    df = pd.DataFrame({"name": ["0"] * 10, "label": "a"})
    with pytest.warns(UserWarning, match="more than once"):
        il = ImageList.from_df(df, tmp_path, folder="img", suffix=".png")
    with pytest.raises(ValueError, match=r"leaves the validation set empty because the items repeat: 1 of them .*"
                                         r"img/0.png \(10 times\)"):
        il.split_by_rand_pct(0.2, seed=0)


def test_class_names_in_two_unicode_forms_are_one_class(tmp_path):
    """'café' as one letter (NFC) and as 'e' + accent (NFD) print the same: they are read as one class."""
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    for name in (nfc, nfd, "tea"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (4, 4)).save(tmp_path / name / f"{i}.png")
    with pytest.warns(UserWarning, match=r"two Unicode forms .*'caf\u00e9'"):
        ll = ImageList.from_folder(tmp_path).split_none().label_from_folder()
    assert ll.train.y.classes == [nfc, "tea"]
    tagged = ImageList.from_folder(tmp_path).split_none().label_from_func(lambda p: [p.parent.name, "x"])
    assert tagged.train.y.classes == [nfc, "tea", "x"]
