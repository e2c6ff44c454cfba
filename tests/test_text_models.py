"""AWD-LSTM, the ULMFiT learners (generation, encoder transfer) and WikiText-103 weight loading."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch
from imdb import clas_data, lm_data

import course_utils
from course_utils.download import DATASETS
from course_utils.text import AWD_LSTM, Vocab, language_model_learner, text_classifier_learner
from course_utils.text.learner import decode_spec_tokens
from course_utils.text.models import (
    WT103_FWD_URL,
    WeightDropLSTM,
    clas_layer_groups,
    convert_weights,
    get_language_model,
    load_wt103,
    wt103_files,
)
from course_utils.text.tokenize import SPECIAL_TOKENS, UNK

TINY = dict(emb_sz=8, n_hid=16, n_layers=3)


@pytest.fixture
def lm_learn(imdb_path, tmp_path):
    return language_model_learner(lm_data(imdb_path), AWD_LSTM, config=TINY, drop_mult=0.3, pretrained=False,
                                  path=tmp_path)


def test_weight_drop_changes_the_recurrent_weights_only_in_training():
    torch.manual_seed(0)
    rnn = WeightDropLSTM(3, 4, weight_p=0.5)
    x = torch.randn(2, 5, 3)
    raw = rnn.module.weight_hh_l0.detach().clone()
    rnn.train()
    assert not torch.allclose(rnn(x, None)[0], rnn(x, None)[0])
    assert torch.equal(rnn.module.weight_hh_l0, raw)  # the parameter itself is never overwritten
    rnn.eval()
    assert torch.equal(rnn(x, None)[0], rnn.module(x)[0])


def test_language_model_decoder_is_tied_to_the_embedding_and_has_four_groups(lm_learn):
    model = lm_learn.model
    assert model[1].decoder.weight is model[0].encoder.weight
    assert len(lm_learn.layer_groups) == 4


def test_language_model_trains_and_generates_n_words(lm_learn, monkeypatch):
    lm_learn.fit_one_cycle(1, 1e-2, moms=(0.8, 0.7))
    assert set(lm_learn.recorder.final_results) == {"train_loss", "valid_loss", "accuracy"}
    drawn, multinomial = [], torch.multinomial
    monkeypatch.setattr(torch, "multinomial", lambda *a, **k: drawn.append(multinomial(*a, **k)) or drawn[-1])
    text = lm_learn.predict("The film was", n_words=6, temperature=0.75)
    assert len(drawn) == 6  # six tokens; "words" counts tokens, as in the lesson (xxmaj + word is one word)
    vocab = lm_learn.data.vocab
    tokens = vocab.textify(lm_learn.data.numericalize_text("The film was")[0].tolist() + [int(t) for t in drawn])
    assert text == decode_spec_tokens(tokens.split(" ")) and text.startswith("The film was ")
    assert "xxbos" not in text and "xxunk" not in text and vocab.stoi[UNK] not in [int(t) for t in drawn]


def test_the_encoder_round_trips_from_the_language_model_to_the_classifier(lm_learn, imdb_path, tmp_path):
    lm_learn.save_encoder("enc")
    data = clas_data(imdb_path, lm_learn.data.vocab)
    clas = text_classifier_learner(data, AWD_LSTM, config=TINY, drop_mult=0.5, pretrained=False, path=tmp_path)
    assert len(clas.layer_groups) == 5
    clas.load_encoder("enc")
    lm_state, clas_state = lm_learn.encoder.state_dict(), clas.encoder.state_dict()
    assert lm_state.keys() == clas_state.keys()
    assert all(torch.equal(lm_state[k], clas_state[k]) for k in lm_state)
    assert not any(p.requires_grad for p in clas.model[0].parameters())  # load_encoder freezes
    clas.freeze_to(-2)
    assert all(p.requires_grad for p in clas_layer_groups(clas.model)[3].parameters())
    label, idx, probs = clas.predict("I loved it. Superb music!")
    assert label in ("neg", "pos") and probs.shape == (2,) and float(probs.sum()) == pytest.approx(1.0)


def test_an_encoder_from_another_vocabulary_is_refused_with_advice(lm_learn, imdb_path, tmp_path):
    lm_learn.save_encoder("enc")
    other_vocab = Vocab.create([["only", "these", "words"]], min_freq=1)
    clas = text_classifier_learner(clas_data(imdb_path, other_vocab), AWD_LSTM, config=TINY, pretrained=False,
                                   path=tmp_path)
    with pytest.raises(RuntimeError, match="vocab=data_lm.vocab"):
        clas.load_encoder("enc")


# --- WikiText-103 weights ------------------------------------------------------------------------------
def _wt103_state(vocab_sz: int, emb: int = 8, hid: int = 16) -> dict:
    """A state dict with the keys and shapes of fastai's wt103-fwd `lstm_fwd.pth`."""
    torch.manual_seed(1)
    sd = {"0.encoder.weight": torch.randn(vocab_sz, emb)}
    sd["0.encoder_dp.emb.weight"] = sd["0.encoder.weight"].clone()
    sizes = [emb, hid, hid, emb]
    for i in range(3):
        n_in, n_out = sizes[i], sizes[i + 1]
        sd[f"0.rnns.{i}.weight_hh_l0_raw"] = torch.randn(4 * n_out, n_out)
        sd[f"0.rnns.{i}.module.weight_ih_l0"] = torch.randn(4 * n_out, n_in)
        sd[f"0.rnns.{i}.module.weight_hh_l0"] = torch.zeros(4 * n_out, n_out)  # the dropped copy: not used
        sd[f"0.rnns.{i}.module.bias_ih_l0"] = torch.randn(4 * n_out)
        sd[f"0.rnns.{i}.module.bias_hh_l0"] = torch.randn(4 * n_out)
    sd["1.decoder.weight"] = sd["0.encoder.weight"].clone()
    sd["1.decoder.bias"] = torch.randn(vocab_sz)
    return sd


@pytest.fixture
def wt103(tmp_path):
    old_itos = SPECIAL_TOKENS + ["the", "film", "good"]
    folder = tmp_path / "wt103-fwd"
    folder.mkdir()
    sd = _wt103_state(len(old_itos))
    torch.save({"model": sd}, folder / "lstm_fwd.pth")
    with open(folder / "itos_wt103.pkl", "wb") as f:
        pickle.dump(old_itos, f)
    return folder, old_itos, sd


def test_wt103_weights_load_with_rows_remapped_to_our_vocab(wt103):
    folder, old_itos, sd = wt103
    new_itos = SPECIAL_TOKENS + ["good", "zebra", "the"]
    model = get_language_model(len(new_itos), TINY)
    load_wt103(model, new_itos, wt103_files(folder))
    enc, old = model[0].encoder.weight.detach(), sd["0.encoder.weight"]
    assert torch.equal(enc[new_itos.index("good")], old[old_itos.index("good")])
    assert torch.equal(enc[new_itos.index("the")], old[old_itos.index("the")])
    assert torch.allclose(enc[new_itos.index("zebra")], old.mean(0))  # a new word gets the mean row
    bias = model[1].decoder.bias.detach()
    assert bias[new_itos.index("zebra")] == pytest.approx(float(sd["1.decoder.bias"].mean()))
    assert model[1].decoder.weight is model[0].encoder.weight
    assert torch.equal(model[0].rnns[1].module.weight_hh_l0.detach(), sd["0.rnns.1.weight_hh_l0_raw"])


def test_pretrained_learners_start_frozen_and_load_only_the_encoder_into_a_classifier(wt103, imdb_path, tmp_path):
    folder = wt103[0]
    data_lm = lm_data(imdb_path)
    lm = language_model_learner(data_lm, AWD_LSTM, config=TINY, pretrained=True,
                                pretrained_fnames=wt103_files(folder), path=tmp_path)
    assert not any(p.requires_grad for p in lm.model[0].rnns.parameters())
    clas = text_classifier_learner(clas_data(imdb_path, data_lm.vocab), AWD_LSTM, config=TINY, pretrained=True,
                                   pretrained_fnames=wt103_files(folder), path=tmp_path)
    assert torch.equal(clas.encoder.encoder.weight, lm.encoder.encoder.weight)


def test_wt103_with_other_sizes_is_refused_with_advice(wt103):
    model = get_language_model(len(SPECIAL_TOKENS), dict(emb_sz=4, n_hid=16, n_layers=3))
    with pytest.raises(RuntimeError, match="pretrained=False"):
        load_wt103(model, SPECIAL_TOKENS, wt103_files(wt103[0]))


def test_wt103_files_are_found_in_the_extracted_folder(wt103, tmp_path):
    nested = tmp_path / "models" / "wt103-fwd"
    (nested / "wt103-fwd").mkdir(parents=True)  # the archive's own top folder may stay
    for f in wt103[0].iterdir():
        (nested / "wt103-fwd" / f.name).write_bytes(f.read_bytes())
    pth, pkl = wt103_files(nested)
    assert (pth.name, pkl.name) == ("lstm_fwd.pth", "itos_wt103.pkl")
    with pytest.raises(FileNotFoundError, match="download"):
        wt103_files(tmp_path / "empty")


def test_a_vocabulary_pickle_holding_code_is_refused(tmp_path):
    from course_utils.text.models import read_itos
    f = tmp_path / "itos.pkl"
    f.write_bytes(pickle.dumps([io.BytesIO]))
    with pytest.raises(pickle.UnpicklingError):
        read_itos(f)


def test_convert_weights_accepts_a_bare_state_dict(wt103):
    _, old_itos, sd = wt103
    res = convert_weights(sd, old_itos, old_itos)
    assert "0.encoder_dp.emb.weight" not in res and "0.rnns.0.weight_hh_l0_raw" not in res
    assert torch.equal(res["0.encoder.weight"], sd["0.encoder.weight"])


def test_a_language_model_exports_and_loads_as_a_language_learner_that_writes_the_same(lm_learn, tmp_path):
    from course_utils.learner import load_learner
    from course_utils.text.learner import LanguageLearner

    lm_learn.fit(1, 1e-2, progress=False)
    f = lm_learn.export("lm.pkl")
    loaded = load_learner(f, device="cpu")
    assert type(loaded) is LanguageLearner and loaded.data.vocab.itos == lm_learn.data.vocab.itos
    texts = []
    for learn in (lm_learn, loaded):
        torch.manual_seed(3)
        texts.append(learn.predict("The film was", n_words=5))
    assert texts[0] == texts[1] and len(texts[0]) > len("The film was")


def test_an_export_asking_for_another_learner_class_is_refused(lm_learn):
    from course_utils.learner import load_learner
    from course_utils.persist import seal_export

    f = lm_learn.export("lm.pkl")
    state = torch.load(f, weights_only=True)
    state["model_spec"]["learner"] = "os:system"
    torch.save(seal_export({k: v for k, v in state.items() if k != "sha256"}), f)
    with pytest.raises(ValueError, match="learner class 'os:system' is not one of the course's"):
        load_learner(f)


def test_the_wt103_address_is_written_once_in_the_registry():
    assert WT103_FWD_URL == DATASETS["wt103"].sources[0].url
    package = Path(course_utils.__file__).parent
    assert [p.relative_to(package).as_posix() for p in sorted(package.rglob("*.py"))
            if "wt103-fwd.tgz" in p.read_text(encoding="utf-8")] == ["download.py"]
