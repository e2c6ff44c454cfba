"""Tokenizer rules, special tokens, the vocabulary and the token cache (lesson 3's imdb)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from course_utils.text import tokenize as tk
from course_utils.text.tokenize import BOS, PAD, SPECIAL_TOKENS, TK_MAJ, TK_REP, TK_UP, TK_WREP, UNK, Tokenizer, Vocab


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(cache=False)


def test_every_text_starts_with_xxbos_and_words_are_lowercased(tok):
    toks = tok.process_text("the movie was fine")
    assert toks == [BOS, "the", "movie", "was", "fine"]


def test_capitalised_and_all_caps_words_get_a_marker_then_lowercase(tok):
    toks = tok.process_text("Great acting, TERRIBLE plot. I liked it")
    assert toks[:3] == [BOS, TK_MAJ, "great"]
    assert toks[toks.index("terrible") - 1] == TK_UP
    assert "i" in toks and TK_UP not in toks[toks.index("i") - 1:toks.index("i")]  # single letters: no marker


def test_repeated_characters_and_words_are_shortened(tok):
    toks = tok.process_text("It was sooooo bad bad bad bad!!!!")
    assert toks[toks.index(TK_REP):toks.index(TK_REP) + 3] == [TK_REP, "5", "o"]
    assert toks[toks.index(TK_WREP):toks.index(TK_WREP) + 3] == [TK_WREP, "4", "bad"]
    assert toks[-3:] == [TK_REP, "4", "!"]


def test_html_line_breaks_and_entities_are_cleaned(tok):
    toks = tok.process_text("Fun.<br /><br />Tom &amp; Jerry")
    assert not any("<" in t or ">" in t for t in toks)
    assert toks == [BOS, TK_MAJ, "fun", ".", "\n", "\n", TK_MAJ, "tom", "&", TK_MAJ, "jerry"]


def test_contractions_are_split_by_spacy(tok):
    assert tok.process_text("didn't")[1:] == ["did", "n't"]


def test_vocab_puts_specials_first_with_unk_0_and_pad_1():
    v = Vocab.create([["b", "a", "a", "a", "b", "c"]], min_freq=1)
    assert v.itos[:len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert v.stoi[UNK] == 0 and v.stoi[PAD] == 1
    assert v.itos[len(SPECIAL_TOKENS):len(SPECIAL_TOKENS) + 3] == ["a", "b", "c"]  # most common first
    assert len(v) % 8 == 0


def test_vocab_min_freq_and_max_vocab_limit_it():
    tokens = [["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]]
    assert set(Vocab.create(tokens, min_freq=3).itos) - set(SPECIAL_TOKENS) - {"xxfake"} == {"a", "b"}
    small = Vocab.create(tokens, max_vocab=len(SPECIAL_TOKENS) + 1, min_freq=1)
    assert "a" in small.itos and "b" not in small.itos


def test_vocab_round_trip_and_unknown_words(tmp_path):
    v = Vocab.create([["the", "film", "the"]], min_freq=1)
    ids = v.numericalize(["the", "film", "zebra"])
    assert ids[-1] == 0
    assert v.textify(ids) == f"the film {UNK}"
    v.save(tmp_path / "itos.json")
    assert Vocab.load(tmp_path / "itos.json").itos == v.itos


def test_second_run_reads_the_cache_instead_of_tokenizing(monkeypatch):
    texts = ["A Good film.", "BAD!!!! film", "so so so so"]
    first = Tokenizer().process_all(texts)
    def no_tokenizing(self, texts):
        raise AssertionError("tokenized again instead of reading the cache")
    monkeypatch.setattr(Tokenizer, "_tokenize_chunk", no_tokenizing)
    assert Tokenizer().process_all(texts) == first
    with pytest.raises(AssertionError):
        Tokenizer().process_all(texts + ["a new text"])  # other texts: another cache entry


def test_a_large_corpus_is_tokenized_in_chunks_by_a_pool_and_reassembled_in_order(monkeypatch):
    """The chunking and reassembly; threads stand in for the worker processes, which take seconds to spawn."""
    pools = []
    class ThreadPool(ThreadPoolExecutor):
        def __init__(self, n, mp_context=None):
            pools.append(n)
            super().__init__(n)
    monkeypatch.setattr(tk, "ProcessPoolExecutor", ThreadPool)
    monkeypatch.setattr(tk, "PARALLEL_MIN_TEXTS", 4)
    texts = [f"Review {i}: it was GREAT, truly great!!!!" for i in range(13)]
    parallel = Tokenizer(n_cpus=2, cache=False).process_all(texts)
    assert pools == [2]
    assert parallel == Tokenizer(cache=False)._tokenize_chunk(texts)
