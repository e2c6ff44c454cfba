"""The video's fastai v1 text names: TextDataBunch.from_csv and friends, the Text item, DataBunch.save /
load_data (and the `.load` alias), and the names that are not supported saying what to type instead."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from imdb import CPU, NEG, POS, clas_data, lm_data

from course_utils.data_block import DataBunch, load_data
from course_utils.text import AWD_LSTM, TextFileList, TextFilesList, TextSplitData
from course_utils.text.data import Text, TextClasDataBunch, TextDataBunch, TextList, TextLMDataBunch
from course_utils.text.learner import RNNLearner, language_model_learner, text_classifier_learner

TINY = dict(emb_sz=8, n_hid=16, n_layers=2)


@pytest.fixture
def csv_path(tmp_path):
    """imdb_sample's layout: texts.csv with label, text, is_valid (40 rows, the last 8 for validation)."""
    texts = [f"{kind[i % 3]} Seen on day {i}." for kind in (POS, NEG) for i in range(20)]
    labels = ["positive"] * 20 + ["negative"] * 20
    order = np.random.default_rng(0).permutation(40)
    df = pd.DataFrame({"label": np.array(labels)[order], "text": np.array(texts)[order],
                       "is_valid": [False] * 32 + [True] * 8})
    df.to_csv(tmp_path / "texts.csv", index=False)
    return tmp_path


# --- from_csv ---------------------------------------------------------------------------------------------
def test_textdatabunch_from_csv_gives_the_videos_classifier_data(csv_path):
    data = TextDataBunch.from_csv(csv_path, "texts.csv", bs=8, seed=1, device=CPU)
    assert type(data) is TextClasDataBunch and isinstance(data, TextDataBunch)
    assert (len(data.train_ds), len(data.valid_ds)) == (32, 8)  # a random 20%, not the is_valid column
    assert data.classes == ["negative", "positive"] and data.c == 2
    assert data.vocab.itos[:2] == ["xxunk", "xxpad"] and "film" in data.vocab.stoi
    x, y = data.one_batch()
    assert x.dtype == torch.long and x.shape[0] == 8 and set(y.tolist()) <= {0, 1}
    labels = [data.classes[i] for i in data.train_ds.y.items]
    texts = [data.train_ds.x.items[i] for i in range(len(data.train_ds))]
    is_pos = [any(t.startswith(p) for p in POS) for t in texts]
    assert is_pos == [lab == "positive" for lab in labels]  # labels stay with their texts


def test_from_csv_is_the_data_block_chain(csv_path):
    alias = TextClasDataBunch.from_csv(csv_path, "texts.csv", valid_col="is_valid", bs=8, device=CPU)
    chain = (TextList.from_csv(csv_path, "texts.csv", cols="text").split_from_df(col="is_valid")
             .label_from_df(cols="label").databunch(bs=8, device=CPU))
    assert alias.vocab.itos == chain.vocab.itos
    assert alias.valid_ds.x.items == chain.valid_ds.x.items and alias.valid_ds.y.items == chain.valid_ds.y.items
    a, b = TextDataBunch.from_csv(csv_path, "texts.csv", bs=8, seed=3), TextDataBunch.from_csv(
        csv_path, "texts.csv", bs=8, seed=3)
    assert a.valid_ds.x.items == b.valid_ds.x.items  # a seed gives the same random split


def test_textlmdatabunch_from_csv_makes_language_model_batches(csv_path):
    data = TextLMDataBunch.from_csv(csv_path, "texts.csv", bs=4, bptt=6, device=CPU)
    assert type(data) is TextLMDataBunch and data.bptt == 6
    x, y = next(iter(data.valid_dl))
    assert x.shape == (4, 6) and torch.equal(x[:, 1:], y[:, :-1])  # targets: the next token


def test_from_df_splits_as_given(csv_path):
    df = pd.read_csv(csv_path / "texts.csv")
    data = TextClasDataBunch.from_df(csv_path, df[:30], df[30:], text_cols="text", label_cols="label", bs=8,
                                     device=CPU)
    assert data.valid_ds.x.items == df["text"][30:].tolist()
    assert [data.classes[i] for i in data.valid_ds.y.items] == df["label"][30:].tolist()


# --- the Text item -------------------------------------------------------------------------------------------
def test_a_training_item_shows_its_tokens_and_its_ids(csv_path):
    data = TextClasDataBunch.from_csv(csv_path, "texts.csv", bs=8, device=CPU)
    item, label = data.train_ds[0]
    ids = data.train_ds.x.ids[0]
    assert isinstance(item, Text)
    assert repr(item).startswith("Text xxbos ") and str(item) == data.vocab.textify(ids)
    first = item.data[:10]
    assert isinstance(first, np.ndarray) and first.dtype == np.int64  # not numpy's own .data, a memoryview
    assert first.tolist() == ids[:10].tolist() and all(isinstance(i, int) for i in first.tolist())
    assert len(item) == len(ids) and np.array_equal(np.asarray(item), ids)
    assert label.item() in (0, 1)


def test_batches_still_read_the_ids(imdb_path):
    data = lm_data(imdb_path)
    stream = np.concatenate(data.valid_ds.x.ids)
    x, _ = next(iter(data.valid_dl))
    assert torch.equal(x[0], torch.from_numpy(stream[:x.shape[1]]))


# --- save / load_data -------------------------------------------------------------------------------------------
def _same_data(a: DataBunch, b: DataBunch) -> None:
    assert type(a) is type(b) and a.path == b.path
    assert a.vocab.itos == b.vocab.itos
    for da, db in ((a.train_ds, b.train_ds), (a.valid_ds, b.valid_ds)):
        assert da.x.items == db.x.items and list(da.y.items) == list(db.y.items)
        assert len(da.x.ids) == len(db.x.ids) and all(np.array_equal(p, q) for p, q in zip(da.x.ids, db.x.ids))
    for (xa, ya), (xb, yb) in zip(a.valid_dl, b.valid_dl):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_save_then_load_data_gives_the_same_classifier_data(imdb_path):
    data = clas_data(imdb_path, lm_data(imdb_path).vocab)
    f = data.save()
    assert f == imdb_path / "data_save.pkl" and f.is_file()
    back = load_data(imdb_path, device=CPU)
    _same_data(data, back)
    assert back.classes == ["neg", "pos"] and back.bs == data.bs
    assert back.train_ds.x.tokenizer.state() == data.train_ds.x.tokenizer.state()
    assert not list(imdb_path.glob(".data_save.pkl.*"))  # written through a temporary file, renamed


def test_save_then_load_data_gives_the_same_language_model_data_with_a_new_bs(imdb_path):
    data = lm_data(imdb_path, bs=4, bptt=5)
    data.save("data_lm.pkl")
    back = load_data(imdb_path, "data_lm.pkl", device=CPU)
    _same_data(data, back)
    assert back.bptt == 5
    smaller = load_data(imdb_path, "data_lm.pkl", bs=2, device=CPU)
    assert (smaller.bs, smaller.val_bs, smaller.bptt) == (2, 2, 5)
    assert next(iter(smaller.valid_dl))[0].shape == (2, 5)


def test_the_videos_load_alias_reads_what_save_wrote(imdb_path):
    lm = lm_data(imdb_path)
    lm.save("tmp_lm")
    assert type(TextLMDataBunch.load(imdb_path, "tmp_lm", bs=2)) is TextLMDataBunch
    assert type(TextDataBunch.load(imdb_path, "tmp_lm")) is TextLMDataBunch
    with pytest.raises(TypeError, match=r"holds a TextLMDataBunch, not a TextClasDataBunch.*load_data"):
        TextClasDataBunch.load(imdb_path, "tmp_lm")


def test_save_and_load_data_of_an_image_databunch(planet_data, planet_path):
    planet_data.save("planet_data.pkl")
    back = load_data(planet_path, "planet_data.pkl", device=CPU)
    assert type(back) is DataBunch and type(back.train_ds.x) is type(planet_data.train_ds.x)
    assert back.classes == planet_data.classes and back.bs == planet_data.bs
    assert back.valid_ds.x.items == planet_data.valid_ds.x.items
    assert back.valid_ds.y.items == planet_data.valid_ds.y.items
    assert back.valid_ds.cfg == planet_data.valid_ds.cfg and back.train_ds.cfg == planet_data.train_ds.cfg
    assert back.norm.state() == planet_data.norm.state()
    (xa, ya), (xb, yb) = planet_data.one_batch("valid"), back.one_batch("valid")
    assert torch.allclose(xa, xb) and torch.equal(ya, yb)


def test_load_data_without_a_saved_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No saved data at .*nope\.pkl.*data\.save\('nope\.pkl'\)"):
        load_data(tmp_path, "nope.pkl")


def test_a_file_with_code_in_it_is_refused_naming_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this ran",))

    f = tmp_path / "data_save.pkl"
    torch.save({"format": "course_utils.DataBunch", "evil": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError, match=rf"Refusing to load {f}"):
        load_data(tmp_path)


def test_a_crafted_or_changed_file_is_refused_naming_it(imdb_path):
    data = lm_data(imdb_path)
    state = data.save_state()
    f = imdb_path / "bad.pkl"
    state["sets"]["train"]["x_state"]["ids"][0] = len(data.vocab) + 5  # an id past the vocabulary
    torch.save(state, f)
    with pytest.raises(ValueError, match=rf"Cannot load {f} as a DataBunch: its token ids do not fit its vocab"):
        load_data(imdb_path, "bad.pkl")
    torch.save({**data.save_state(), "bunch_cls": "Popen"}, f)
    with pytest.raises(ValueError, match=rf"Cannot load {f} .*Unknown data type 'Popen'"):
        load_data(imdb_path, "bad.pkl")
    torch.save({"0.weight": torch.zeros(2)}, f)  # a model's weights, not data
    with pytest.raises(ValueError, match=rf"Cannot load {f} .*not written by DataBunch.save"):
        load_data(imdb_path, "bad.pkl")


def test_crafted_class_labels_are_refused(imdb_path):
    data = clas_data(imdb_path, lm_data(imdb_path).vocab)
    state = data.save_state()
    state["sets"]["valid"]["labels"]["values"][0] = 7  # there are 2 classes
    torch.save(state, imdb_path / "bad.pkl")
    with pytest.raises(ValueError, match="not the index of one of its 2 classes"):
        load_data(imdb_path, "bad.pkl")


# --- names of the video that are not supported, or changed ---------------------------------------------------
def test_old_list_names_say_to_type_textlist():
    with pytest.raises(AttributeError, match=r"type instead: TextList\.from_folder\(path\)"):
        TextFilesList.from_folder("imdb")
    with pytest.raises(TypeError, match=r"TextFileList.*type instead: TextList\.from_folder"):
        TextFileList("imdb")
    with pytest.raises(TypeError, match=r"split_by_folder\(valid='test'\)"):
        TextSplitData("imdb")
    assert not hasattr(TextFileList, "__wrapped__")  # Python's own probes still get a plain AttributeError


def test_pretrained_model_says_what_to_type(imdb_path):
    data = lm_data(imdb_path)
    with pytest.raises(TypeError, match=r"pretrained=True.*language_model_learner\(data_lm, AWD_LSTM, "
                                        r"drop_mult=0\.3\)"):
        language_model_learner(data, pretrained_model="https://example.com/wt103.tgz", drop_mult=0.3)
    with pytest.raises(TypeError, match=r"text_classifier_learner\(data_clas, AWD_LSTM, drop_mult=0\.5\)"):
        text_classifier_learner(clas_data(imdb_path, data.vocab), pretrained_model="wt103")


def test_the_arch_may_be_left_out_as_in_the_video(imdb_path):
    lm = lm_data(imdb_path)
    learn = text_classifier_learner(clas_data(imdb_path, lm.vocab), drop_mult=0.5, pretrained=False, config=TINY)
    assert isinstance(learn, RNNLearner)
    assert language_model_learner(lm, pretrained=False, config=TINY).model is not None
    with pytest.raises(ValueError, match="Only AWD_LSTM"):
        language_model_learner(lm, "resnet34", pretrained=False)
    assert AWD_LSTM is not None


def test_renamed_chain_steps_say_their_new_names(imdb_path):
    texts = TextList.from_folder(imdb_path)
    with pytest.raises(AttributeError, match="split_by_rand_pct"):
        texts.random_split_by_pct(0.1)
    with pytest.raises(AttributeError, match="label_for_lm"):
        texts.split_by_rand_pct(0.1).label_const(0)
