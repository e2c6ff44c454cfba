"""TextList in the data block chain, language-model stream batches and sortish classifier batches."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import csv_file
from imdb import CPU, NEG, POS, clas_data, lm_data

from course_utils.text import TextList
from course_utils.text.data import PAD_IDX, LMStreamLoader, SortishLoader


def test_filter_by_folder_keeps_only_the_named_top_level_folders(imdb_path):
    tl = TextList.from_folder(imdb_path)
    kept = tl.filter_by_folder(include=["train", "unsup"])
    assert len(tl) == 8 * 2 + 3 * 2 + 3 + 1
    assert {Path(o).relative_to(imdb_path).parts[0] for o in kept.items} == {"train", "unsup"}
    with pytest.raises(ValueError, match="no top-level folder"):
        tl.filter_by_folder(include=["nope"])


def test_from_csv_splits_and_labels_like_imdb_sample(tmp_path):
    df = pd.DataFrame({"label": ["positive", "negative"] * 4, "text": (POS[:2] + NEG[:2]) * 2,
                       "is_valid": [False] * 6 + [True] * 2})
    df.to_csv(tmp_path / "texts.csv", index=False)
    data = (TextList.from_csv(tmp_path, "texts.csv", cols="text").split_from_df(col="is_valid")
            .label_from_df(cols="label").databunch(bs=2, device=CPU))
    assert len(data.train_ds) == 6 and len(data.valid_ds) == 2
    assert data.classes == ["negative", "positive"]
    assert data.vocab.textify(data.train_ds.x.ids[0][:2]) == "xxbos a"  # "wonderful": 2 < min_freq 3 -> xxunk


def test_an_empty_text_in_the_csv_names_its_row(tmp_path):
    (tmp_path / "texts.csv").write_text("label,text,is_valid\npositive,good,False\nnegative,,False\n")
    with pytest.raises(ValueError, match="row 3"):
        TextList.from_csv(tmp_path, "texts.csv")


def test_lm_batches_are_the_stream_shifted_by_one_token(imdb_path):
    data = lm_data(imdb_path)
    dl = data.valid_dl.dl  # unshuffled: the stream is the valid texts in order
    stream = np.concatenate(data.valid_ds.x.ids)
    xs, ys = zip(*iter(dl))
    x, y = torch.cat(xs, dim=1), torch.cat(ys, dim=1)  # batches side by side rebuild each row
    assert x.shape[0] == 4 and all(b.shape[1] <= 5 for b in xs)
    assert torch.equal(x[:, 1:], y[:, :-1])
    rows = len(stream[:-1]) // 4
    assert torch.equal(x.flatten(), torch.from_numpy(stream[:rows * 4]))
    assert torch.equal(y.flatten(), torch.from_numpy(stream[1:rows * 4 + 1]))
    assert len(dl) == len(xs)


def test_lm_training_stream_holds_every_text_once_per_epoch(imdb_path):
    data = lm_data(imdb_path, bs=2)
    x = torch.cat([b for b, _ in data.train_dl], dim=1).flatten()
    all_ids = np.concatenate(data.train_ds.x.ids)
    assert len(x) == 2 * ((len(all_ids) - 1) // 2)  # all tokens but at most two (the last target, an odd one)
    assert not Counter(x.tolist()) - Counter(all_ids.tolist())
    assert (x == 2).sum() >= len(data.train_ds) - 1  # an xxbos starts every text


def test_classifier_data_reuses_the_language_model_vocab(imdb_path):
    data_lm = lm_data(imdb_path)
    data = clas_data(imdb_path, data_lm.vocab)
    assert data.vocab.itos == data_lm.vocab.itos
    assert len(data.train_ds) == 16 and len(data.valid_ds) == 6  # unsup/ and other/ dropped
    assert data.c == 2


def test_sortish_batches_are_front_padded_and_grouped_by_length(imdb_path):
    data = clas_data(imdb_path, lm_data(imdb_path).vocab)
    ids = data.train_ds.x.ids
    loader = SortishLoader(data.train_ds, bs=4, shuffle=True)
    np.random.seed(3)
    batches = loader.batches()
    assert len(batches) == len(loader) == 4
    assert max(len(ids[i]) for i in batches[0]) == max(len(o) for o in ids)  # the longest batch comes first
    for b in batches:
        lens = [len(ids[i]) for i in b]
        assert lens == sorted(lens, reverse=True)  # sorted within the chunk, so neighbours have similar lengths
    np.random.seed(3)  # the same shuffle again
    x, y = next(iter(loader))
    for row, i in zip(x, batches[0]):
        n = len(ids[i])
        assert torch.equal(row[-n:], torch.from_numpy(ids[i]))
        assert (row[:-n] == PAD_IDX).all()


def test_validation_batches_are_longest_first_and_ordered_dl_keeps_the_set_order(imdb_path):
    data = clas_data(imdb_path, lm_data(imdb_path).vocab)
    lens = [int((x != PAD_IDX).sum(1).max()) for x, _ in data.valid_dl]
    assert lens == sorted(lens, reverse=True)
    ys = torch.cat([y for _, y in data.ordered_dl("valid")])
    assert ys.tolist() == data.valid_ds.y.items


def test_too_few_tokens_for_the_batch_size_is_a_clear_error(imdb_path):
    data = lm_data(imdb_path)
    with pytest.raises(ValueError, match="too few"):
        LMStreamLoader(data.valid_ds, bs=10_000, bptt=5, shuffle=False)


# --- a texts CSV with a header and no rows ------------------------------------------------------------------
def test_a_header_only_texts_csv_says_so(tmp_path):
    csv_file(tmp_path, ["label,text,is_valid"], name="texts.csv")
    with pytest.raises(ValueError, match=r"texts\.csv has a header .* but no rows"):
        TextList.from_csv(tmp_path, "texts.csv", cols="text")


# --- unreadable and empty texts -----------------------------------------------------------------------------
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
