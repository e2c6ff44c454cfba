"""Every learner the course makes exports, and loads with load_learner (weights_only, on a CPU, from another
working directory) into a learner whose `predict` gives what the original gave."""
from __future__ import annotations

import pytest
import torch
from kinds import KINDS, make_learner

from course_utils.learner import load_learner
from course_utils.persist import BUILDERS


def _same(a, b):
    if isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    else:
        assert a == b


@pytest.mark.parametrize("kind", KINDS)
def test_export_loads_elsewhere_and_predicts_the_same(kind, tmp_path, monkeypatch):
    learn, sample = make_learner(kind, tmp_path / "run")
    expected = learn.predict(sample)
    f = learn.export()
    state = torch.load(f, map_location="cpu", weights_only=True)  # plain tensors and values only
    assert state["model_spec"]["builder"] in BUILDERS  # a key of the builder table, which is also the allowlist
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_learner(f.resolve(), device="cpu")
    assert type(loaded.data.train_ds.y) is type(learn.data.train_ds.y)
    for got, want in zip(loaded.predict(sample), expected):
        _same(got, want)


def test_text_export_keeps_the_vocabulary_and_the_tokenizer_settings(tmp_path):
    learn, sample = make_learner("text", tmp_path / "run")
    learn.data.train_ds.x.tokenizer.post_rules = learn.data.train_ds.x.tokenizer.post_rules[:1]  # no xxmaj
    f = learn.export()
    loaded = load_learner(f)
    assert loaded.data.vocab.itos == learn.data.vocab.itos
    tok = loaded.data.train_ds.x.tokenizer
    assert [r.__name__ for r in tok.post_rules] == ["replace_all_caps"]
    torch.testing.assert_close(loaded.data.one_item(sample), learn.data.one_item(sample))


def test_a_text_export_with_a_rule_of_your_own_says_it_cannot_be_stored(tmp_path):
    learn, _ = make_learner("text", tmp_path / "run")
    learn.data.train_ds.x.tokenizer.pre_rules.append(lambda t: t.lower())
    with pytest.raises(ValueError, match="your own rule"):
        learn.export()
    assert not (tmp_path / "run" / "export.pkl").exists()
