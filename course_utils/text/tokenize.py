"""Lesson 3 (IMDB): turning raw text into tokens, and tokens into ids.

Words come from spaCy's rule-based English tokenizer (`spacy.blank("en")`, no model download);
the lesson's rules around it clean HTML and mark what lower-casing and shortening would lose
(capitals, repeats) with special tokens such as `xxmaj` and `xxrep`. `Vocab` then numbers the tokens.
"""
from __future__ import annotations

import hashlib
import html
import json
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..config import cache_dir
from ..persist import atomic_write

__all__ = ["SPECIAL_TOKENS", "Tokenizer", "Vocab"]

UNK, PAD, BOS, EOS, FLD = "xxunk", "xxpad", "xxbos", "xxeos", "xxfld"
TK_MAJ, TK_UP, TK_REP, TK_WREP = "xxmaj", "xxup", "xxrep", "xxwrep"
SPECIAL_TOKENS = [UNK, PAD, BOS, EOS, FLD, TK_MAJ, TK_UP, TK_REP, TK_WREP]  # the lesson's order: unk=0, pad=1

# Above this many texts, tokenizing is spread over worker processes (below, starting them costs more).
PARALLEL_MIN_TEXTS = 5000
CACHE_VERSION = 2  # bump when the rules change, so old cached tokens are not reused

_HTML_FIXES = [("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"), ("\\n", "\n"),
               ("quot;", "'"), ("<br />", "\n"), ("<br/>", "\n"), ("<br>", "\n"), ('\\"', '"'),
               ("<unk>", UNK), (" @.@ ", "."), (" @-@ ", "-"), (" @,@ ", ",")]
_RE_CHAR_REP = re.compile(r"(\S)(\1{3,})")
_RE_WORD_REP = re.compile(r"(?:^|(?<=\s))(\w+)((?:\s+\1){3,})(?=\s|$)")
_RE_SPACE_AROUND = re.compile(r"([/#\n])")
_RE_MANY_SPACES = re.compile(r" {2,}")


# --- rules on the raw string -----------------------------------------------------------------
def fix_html(t: str) -> str:
    """Undo IMDB's HTML leftovers (`<br />` becomes a newline, entities become characters).

    Proper entities (`&amp;`) are decoded first; the fixes then catch the ones whose `&` was lost (`#39;`)."""
    t = html.unescape(t)
    for old, new in _HTML_FIXES:
        t = t.replace(old, new)
    return t


def replace_rep(t: str) -> str:
    """A character repeated 4+ times, `!!!!`, becomes `xxrep 4 !`: one token for the emphasis, not many."""
    return _RE_CHAR_REP.sub(lambda m: f" {TK_REP} {len(m.group(0))} {m.group(1)} ", t)


def replace_wrep(t: str) -> str:
    """A word repeated 4+ times, `very very very very`, becomes `xxwrep 4 very`."""
    def _sub(m):
        n = len(m.group(2).split()) + 1
        return f" {TK_WREP} {n} {m.group(1)} "
    return _RE_WORD_REP.sub(_sub, t)


def spec_add_spaces(t: str) -> str:
    """Spaces around `/`, `#` and newlines, so they become tokens of their own."""
    return _RE_SPACE_AROUND.sub(r" \1 ", t)


def rm_useless_spaces(t: str) -> str:
    """Collapse runs of spaces."""
    return _RE_MANY_SPACES.sub(" ", t)


# --- rules on the token list -----------------------------------------------------------------
def replace_all_caps(tokens: list[str]) -> list[str]:
    """`GREAT` becomes `xxup great`: the vocabulary keeps one `great` and the shouting is not lost."""
    res = []
    for t in tokens:
        if t.isupper() and len(t) > 1:
            res += [TK_UP, t.lower()]
        else:
            res.append(t)
    return res


def deal_caps(tokens: list[str]) -> list[str]:
    """`Movie` becomes `xxmaj movie`; every other token is lower-cased."""
    res = []
    for t in tokens:
        if len(t) > 1 and t[0].isupper() and t[1:].islower():
            res.append(TK_MAJ)
        res.append(t.lower())
    return res


PRE_RULES: list[Callable[[str], str]] = [fix_html, replace_rep, replace_wrep, spec_add_spaces, rm_useless_spaces]
POST_RULES: list[Callable[[list[str]], list[str]]] = [replace_all_caps, deal_caps]

_NLP = {}  # one spaCy tokenizer per language and process


def _spacy(lang: str):
    if lang not in _NLP:
        try:
            import spacy
            from spacy.symbols import ORTH
        except ImportError as e:
            raise ImportError("Tokenizing needs spaCy: pip install -r requirements.txt (or pip install spacy).") from e
        nlp = spacy.blank(lang)
        for w in SPECIAL_TOKENS:
            nlp.tokenizer.add_special_case(w, [{ORTH: w}])
        _NLP[lang] = nlp
    return _NLP[lang]


def _word(tok) -> list[str]:
    """A spaCy token as our tokens: spaces vanish, each newline in a run of whitespace is a token."""
    return ["\n"] * tok.text.count("\n") if tok.text.isspace() else [tok.text]


def token_cache_dir() -> Path:
    """Where tokenized corpora are cached: `$COURSE_CACHE/tokens`, else ~/.course_utils/cache/tokens."""
    return cache_dir() / "tokens"


class Tokenizer:
    """spaCy words + the lesson's rules: `xxbos` starts each text; caps and repeats become special tokens.

    `process_all` runs in worker processes for a large corpus and caches its result on disk, keyed by a hash
    of the texts and the settings, so running a notebook again does not tokenize again."""

    def __init__(self, lang: str = "en", pre_rules: Sequence[Callable] | None = None,
                 post_rules: Sequence[Callable] | None = None, n_cpus: int | None = None, cache: bool = True):
        self.lang = lang
        self.pre_rules = list(PRE_RULES if pre_rules is None else pre_rules)
        self.post_rules = list(POST_RULES if post_rules is None else post_rules)
        self.n_cpus = n_cpus or max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                           else os.cpu_count() or 1))
        self.cache = cache

    def __repr__(self) -> str:
        rules = lambda rs: ", ".join(r.__name__ for r in rs)  # noqa: E731
        return (f"Tokenizer (spaCy '{self.lang}') with the rules:\n pre: {rules(self.pre_rules)}\n"
                f" post: {rules(self.post_rules)}")

    def process_text(self, t: str) -> list[str]:
        """The tokens of one text."""
        return self._tokenize_chunk([t])[0]

    def process_all(self, texts: Sequence[str]) -> list[list[str]]:
        """The tokens of every text (from the cache if these texts were tokenized before with these settings)."""
        texts = list(texts)
        f = token_cache_dir() / f"{self._key(texts)}.npz" if self.cache else None
        if f is not None and f.is_file():
            try:
                return _read_tokens(f)
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file: tokenize again and overwrite it
        tokens = self._tokenize_parallel(texts) if len(texts) >= PARALLEL_MIN_TEXTS else self._tokenize_chunk(texts)
        if f is not None:
            _write_tokens(tokens, f)
        return tokens

    def state(self) -> dict:
        """The settings as plain values, for `learn.export()`: the language and the rules by name. Only the
        lesson's own rules can be named (a function of yours cannot be stored safely in an export)."""
        known = {r.__name__: r for r in PRE_RULES + POST_RULES}
        custom = [r for r in self.pre_rules + self.post_rules if known.get(getattr(r, "__name__", None)) is not r]
        if custom:
            raise ValueError(f"This tokenizer uses your own rule {custom[0]!r}; an export can only name the "
                             f"lesson's rules ({', '.join(known)}). Export with the default rules, or rebuild the "
                             "tokenizer yourself after load_learner.")
        return {"lang": self.lang, "pre_rules": [r.__name__ for r in self.pre_rules],
                "post_rules": [r.__name__ for r in self.post_rules]}

    @classmethod
    def from_state(cls, state: dict) -> "Tokenizer":
        """The tokenizer `state()` describes (the tokens it makes are the same as at export time)."""
        known = {r.__name__: r for r in PRE_RULES + POST_RULES}
        return cls(state["lang"], [known[n] for n in state["pre_rules"]], [known[n] for n in state["post_rules"]])

    def _tokenize_chunk(self, texts: Sequence[str]) -> list[list[str]]:
        nlp = _spacy(self.lang)
        res = []
        for t in texts:
            for rule in self.pre_rules:
                t = rule(t)
            toks = [w for tok in nlp.tokenizer(t) for w in _word(tok)]
            for rule in self.post_rules:
                toks = rule(toks)
            res.append([BOS] + toks)
        return res

    def _tokenize_parallel(self, texts: list[str]) -> list[list[str]]:
        """Chunks of the corpus in `n_cpus` worker processes (spawned: forking a process that runs torch can hang)."""
        n = self.n_cpus
        if n < 2:
            return self._tokenize_chunk(texts)
        size = -(-len(texts) // (4 * n))
        chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as ex:
            parts = ex.map(self._tokenize_chunk, chunks)
            return [toks for part in parts for toks in part]

    def _key(self, texts: Sequence[str]) -> str:
        h = hashlib.sha256()
        settings = [CACHE_VERSION, self.lang, [r.__name__ for r in self.pre_rules],
                    [r.__name__ for r in self.post_rules]]
        h.update(json.dumps(settings).encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        return h.hexdigest()[:32]


def _write_tokens(tokens: list[list[str]], f: Path) -> None:
    """Tokens as plain arrays (no pickle, so loading the cache cannot run code), written atomically: the distinct
    words as UTF-8 bytes with their lengths (a fixed-width string array would be huge), each token as a word id."""
    index: dict[str, int] = {}
    ids = np.fromiter((index.setdefault(w, len(index)) for toks in tokens for w in toks), dtype=np.int32)
    encoded = [w.encode("utf-8", "surrogatepass") for w in index]
    atomic_write(f, lambda fh: np.savez_compressed(
        fh, words=np.frombuffer(b"".join(encoded), dtype=np.uint8),
        word_lens=np.array([len(b) for b in encoded], dtype=np.int64), ids=ids,
        lens=np.array([len(toks) for toks in tokens], dtype=np.int64)))


def _read_tokens(f: Path) -> list[list[str]]:
    with np.load(f, allow_pickle=False) as z:
        raw, word_ends, ids, lens = z["words"].tobytes(), np.cumsum(z["word_lens"]).tolist(), z["ids"], z["lens"]
    words = [raw[s:e].decode("utf-8", "surrogatepass") for s, e in zip([0] + word_ends[:-1], word_ends)]
    flat = [words[i] for i in ids.tolist()]
    ends = np.cumsum(lens).tolist()
    return [flat[s:e] for s, e in zip([0] + ends[:-1], ends)]


class Vocab:
    """Token <-> id: `itos` (id -> token) and `stoi` (token -> id, unknown tokens -> 0 = `xxunk`)."""

    def __init__(self, itos: Sequence[str]):
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def create(cls, tokens: Sequence[Sequence[str]], max_vocab: int = 60000, min_freq: int = 3) -> "Vocab":
        """The lesson's vocabulary: special tokens first, then the `max_vocab` most common tokens seen at
        least `min_freq` times; padded with `xxfake` to a multiple of 8 (faster matrix products on a GPU)."""
        freq = Counter(w for toks in tokens for w in toks)
        itos = list(SPECIAL_TOKENS)
        itos += [w for w, c in freq.most_common(max_vocab) if c >= min_freq and w not in SPECIAL_TOKENS]
        itos = itos[:max_vocab]
        while len(itos) % 8:
            itos.append("xxfake")
        return cls(itos)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab ({len(self)} tokens: {' '.join(self.itos[:12])} ...)"

    def numericalize(self, tokens: Sequence[str]) -> list[int]:
        """Token ids (0 for tokens outside the vocabulary)."""
        return [self.stoi.get(w, 0) for w in tokens]

    def textify(self, ids: Sequence[int], sep: str = " ") -> str:
        """Tokens of `ids` joined by `sep`."""
        return sep.join(self.itos[int(i)] for i in ids)

    def save(self, f: str | Path) -> None:
        """Write the vocabulary as JSON (a list of tokens)."""
        Path(f).write_text(json.dumps(self.itos), encoding="utf-8")

    @classmethod
    def load(cls, f: str | Path) -> "Vocab":
        """A vocabulary written by `save`."""
        return cls(json.loads(Path(f).read_text(encoding="utf-8")))
