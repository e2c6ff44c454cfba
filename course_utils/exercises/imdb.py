"""The exercises of lesson3-imdb: tokenizing and numericalizing a review by hand (its third exercise, the
learning rate of each layer group, is `check_group_rates` in camvid.py).
"""
from __future__ import annotations

from .core import _answer, _blank, _call, _function, _Report

__all__ = ["EXERCISE_REVIEW", "check_tokens", "check_numericalize"]

EXERCISE_REVIEW = "I LOVED this movie!!!! Really."


def check_tokens(ns: dict, tokenizer) -> None:
    """IMDB, exercise 1: tokenizing by hand. `my_tokens` (a list of strings, written without running the tokenizer)
    must equal `tokenizer.process_text(EXERCISE_REVIEW)`, special tokens included."""
    from ..text.tokenize import SPECIAL_TOKENS

    r = _Report("tokenize a review", "my_tokens")
    value = _answer(ns, "my_tokens", "lesson3-imdb")
    if _blank(value):
        return r.blank("with the list of tokens you expect")
    if isinstance(value, str) or not all(isinstance(t, str) for t in value):
        return r.hint("my_tokens should be a list of strings, one per token, like ['xxbos', ...].")
    got, want = list(value), tokenizer.process_text(EXERCISE_REVIEW)
    if got == want:
        specials = [t for t in want if t in SPECIAL_TOKENS]
        return r.correct(f"{len(want)} tokens, with the special tokens {', '.join(specials)}.")
    if not got or got[0] != want[0]:
        return r.hint("every text starts with a special token marking the beginning of a text.")
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    near = " ".join(want[max(0, i - 1): i]) or "the start"
    tail = EXERCISE_REVIEW
    if any(t != t.lower() for t in got):
        return r.hint("every token is lower case: capitals are kept as special tokens placed before the word.")
    if any(t in ("!", "!!!!") for t in got[i: i + 4]) and "xxrep" not in got:
        return r.hint("a character repeated 4 or more times becomes three tokens: a special token, the count, "
                      "the character.")
    if "xxup" not in got:
        return r.hint("a word written in CAPITALS gets a special token before it (and it is lower-cased).")
    if "xxmaj" not in got:
        return r.hint("a word with a capital first letter gets a special token before it.")
    return r.hint(f"token {i} differs (after {near!r}); read `{tail}` again, word by word: one-letter words, "
                  "punctuation and the repeated `!` each follow a rule.")


def check_numericalize(ns: dict, vocab) -> None:
    """IMDB, exercise 2: numericalizing by hand. `my_numericalize(tokens, vocab)` must give, for each token, its
    index in `vocab.itos`, and 0 (`xxunk`) for a token outside the vocabulary, as `vocab.numericalize` does;
    checked on a real sentence's tokens with two made-up words in it."""
    r = _Report("numericalize", "my_numericalize")
    fn = _answer(ns, "my_numericalize", "lesson3-imdb")
    if _blank(fn):
        return r.blank("with `def my_numericalize(tokens, vocab): ...`")
    if not _function(r, fn, "(tokens, vocab)"):
        return
    known = [t for t in vocab.itos[9:40] if t.isalpha()][:6]
    tokens = ["xxbos", "xxmaj"] + known[:3] + ["qwzxv"] + known[3:] + ["zzgrpf", "."]
    value, err = _call(fn, tokens, vocab)
    if err and err.startswith("KeyError"):
        return r.hint(f"it raised {err}: a token outside the vocabulary is not in vocab.stoi; it gets the id of "
                      "xxunk, 0.")
    if err:
        return r.hint(f"calling my_numericalize(tokens, vocab) raised {err}")
    if _blank(value):
        return r.blank(message="my_numericalize returns nothing yet: write its body, with a `return`, run the "
                       "answer cell, then this one again.")
    try:
        got = [int(v) for v in value]
    except (TypeError, ValueError):
        return r.hint(f"my_numericalize should return a list of ints, got {type(value).__name__}.")
    want = vocab.numericalize(tokens)
    if got == want:
        return r.correct(f"{len(tokens)} tokens, the unknown 'qwzxv' and 'zzgrpf' both 0 (xxunk).")
    if len(got) < len(want):
        return r.hint(f"it returns {len(got)} ids for {len(tokens)} tokens: a token outside the vocabulary is not "
                      "dropped, it becomes xxunk (id 0).")
    if len(got) == len(want) and all(g == w + 1 for g, w in zip(got, want) if w):
        return r.hint("the ids are one too high: the id of a token is its position in vocab.itos, counting from 0.")
    return r.hint(f"for {tokens} it gives {got}: the id of a token is its position in vocab.itos (vocab.stoi "
                  "maps it back), and 0 (xxunk) for a word the vocabulary does not have.")

