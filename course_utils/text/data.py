"""Lesson 3 (IMDB): texts in the data block chain, and the two kinds of text batches.

    TextList.from_folder / from_csv -> split -> label_for_lm() or label_from_folder() -> databunch(bs)

The video's one-line factories are thin aliases onto that chain: `TextDataBunch.from_csv(path, 'texts.csv')`
(a classifier's data, split at random), `TextClasDataBunch.from_csv`, `TextLMDataBunch.from_csv`; a processed
DataBunch is saved with `data.save()` and read back with `load_data(path)` (course_utils.data_block).

Texts are tokenized and numericalized once, when they are labelled (the vocabulary comes from the
training texts, or is the one you pass, e.g. the language model's). A language model's batches are
one long stream of tokens cut into `bptt`-long pieces; a classifier's batches group texts of similar
length (sortish sampling) and pad them at the front.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data_block import DataBunch, DeviceDataLoader, ItemList, ItemLists, LabelList, LabelLists, TargetList, load_data
from ..tables import column_name, read_csv
from .tokenize import Tokenizer, Vocab

__all__ = ["Text", "TextList", "TextDataBunch", "TextLMDataBunch", "TextClasDataBunch"]

PAD_IDX = 1


class Text:
    """One tokenized text, as `data.train_ds[i][0]` gives it: shown as its tokens (`Text xxbos xxmaj this ...`);
    `.data` holds its token ids (an int64 numpy array: `.data[:10]` are the first ten), `.text` its tokens joined
    by spaces. The batches never build these: they read the ids directly (`TextList.ids`)."""

    def __init__(self, data: np.ndarray, text: str):
        self.data, self.text = data, text

    def __repr__(self) -> str:
        return f"Text {self.text}"

    def __str__(self) -> str:
        return self.text

    def __len__(self) -> int:
        return len(self.data)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self.data, dtype=dtype)


class TextList(ItemList):
    """Texts (strings, or the paths of `.txt` files). After labelling, `ids` holds each text's token ids."""

    extensions = (".txt",)
    input = "text"  # what a model of these items takes (kinds.kind_of; other item lists: images)

    def __init__(self, items: Iterable, path: str | Path = ".", inner_df: pd.DataFrame | None = None,
                 vocab: Vocab | None = None, tokenizer: Tokenizer | None = None, max_vocab: int = 60000,
                 min_freq: int = 3):
        super().__init__(items, path, inner_df)
        self.vocab, self.tokenizer = vocab, tokenizer or Tokenizer()
        self.max_vocab, self.min_freq = max_vocab, min_freq
        self.ids: list[np.ndarray] | None = None

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", cols: int | str = "text", vocab: Vocab | None = None,
                **kwargs) -> "TextList":
        """The texts in column `cols` of `df` (the labels stay in `inner_df` for `label_from_df`)."""
        col = column_name(df, cols, "text")
        bad = np.flatnonzero(df[col].isna().to_numpy())
        if len(bad):
            raise ValueError(f"Column {col!r} has no text in row {int(bad[0]) + 2} of the CSV; "
                             "remove or fill that row.")
        return cls(df[col].astype(str).tolist(), path, inner_df=df.reset_index(drop=True), vocab=vocab, **kwargs)

    @classmethod
    def from_csv(cls, path: str | Path, csv_name: str, cols: int | str = "text", vocab: Vocab | None = None,
                 **kwargs) -> "TextList":
        """The texts of a CSV such as imdb_sample's `texts.csv` (columns label, text, is_valid)."""
        csv = Path(path) / csv_name
        if not csv.is_file():
            raise FileNotFoundError(f"CSV file {csv} not found.")
        return cls.from_df(read_csv(csv), path, cols=cols, vocab=vocab, **kwargs)

    @classmethod
    def from_folder(cls, path: str | Path, extensions: Iterable[str] | None = None, recurse: bool = True,
                    include: Iterable[str] | None = None, exclude: Iterable[str] | None = None,
                    vocab: Vocab | None = None, **kwargs) -> "TextList":
        """Every `.txt` file under `path` (IMDB: train/, test/, unsup/ with pos/ and neg/ inside)."""
        res = super().from_folder(path, extensions, recurse, include, exclude)
        return cls(res.items, res.path, vocab=vocab, **kwargs)

    def filter_by_folder(self, include: Iterable[str] | None = None,
                         exclude: Iterable[str] | None = None) -> "TextList":
        """Keep the files whose top-level folder under `path` is in `include` (and not in `exclude`)."""
        include, exclude = set(include or []), set(exclude or [])
        keep = []
        for i, o in enumerate(self.items):
            top = Path(o).relative_to(self.path).parts[0]
            if (not include or top in include) and top not in exclude:
                keep.append(i)
        if not keep:
            raise ValueError(f"filter_by_folder left no files: no top-level folder of {self.path} "
                             f"is in {sorted(include)}.")
        return self._subset(keep)

    def _subset(self, idx: Sequence[int]) -> "TextList":
        res = super()._subset(idx)
        if self.ids is not None:
            res.ids = [self.ids[i] for i in np.asarray(idx, dtype=int)]
        return res

    def split_by_idxs(self, train_idx: Sequence[int], valid_idx: Sequence[int]) -> "TextItemLists":
        """Split by explicit train and validation indices (all other splits come here)."""
        return TextItemLists(self.path, self._subset(train_idx), self._subset(valid_idx))

    def text(self, i: int) -> str:
        """The raw text of item i (read from its file if the items are paths)."""
        o = self.items[i]
        if isinstance(o, Path):
            try:
                return o.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"Cannot read the text file {o} ({e}); re-save it as UTF-8 (e.g. "
                                 f"`iconv -f latin1 -t utf-8`) or remove it.") from e
        return o

    def get(self, i: int):
        """Once labelled, item i as a `Text` (its tokens, and its ids in `.data`); before, the raw text."""
        if self.ids is None:
            return self.text(i)
        ids = self.ids[i]
        return Text(ids, self.vocab.textify(ids))

    def item_name(self, item):
        """How messages name a text: its first 60 characters (a file: its relative path)."""
        if isinstance(item, str):
            return item[:60] + ("..." if len(item) > 60 else "")
        return super().item_name(item)

    def saved_state(self) -> dict:
        """What `DataBunch.save` keeps besides the items: the vocabulary, the tokenizer's settings and, once
        labelled, every text's ids (one flat int64 tensor and each text's length)."""
        res = {"vocab": None if self.vocab is None else list(self.vocab.itos), "tokenizer": self.tokenizer.state(),
               "max_vocab": self.max_vocab, "min_freq": self.min_freq, "ids": None, "lengths": None}
        if self.ids is not None:
            res["lengths"] = torch.tensor([len(o) for o in self.ids], dtype=torch.int64)
            res["ids"] = (torch.from_numpy(np.concatenate(self.ids).astype(np.int64)) if self.ids
                          else torch.zeros(0, dtype=torch.int64))
        return res

    @classmethod
    def from_saved(cls, items: list, path: Path, state: dict) -> "TextList":
        """The list `saved_state` describes, its ids checked against the vocabulary (ValueError if they do not fit)."""
        vocab = None if state["vocab"] is None else Vocab([str(w) for w in state["vocab"]])
        res = cls(items, path, vocab=vocab, tokenizer=Tokenizer.from_state(state["tokenizer"]),
                  max_vocab=int(state["max_vocab"]), min_freq=int(state["min_freq"]))
        ids, lengths = state["ids"], state["lengths"]
        if ids is None:
            return res
        if not (isinstance(ids, torch.Tensor) and isinstance(lengths, torch.Tensor) and ids.dim() == 1
                and lengths.dim() == 1 and not ids.is_floating_point() and not lengths.is_floating_point()):
            raise ValueError("its token ids are not two 1-d integer tensors (the ids and the texts' lengths)")
        if len(lengths) != len(items) or (len(lengths) and int(lengths.min()) < 0) or int(lengths.sum()) != len(ids):
            raise ValueError(f"its texts' lengths do not fit its {len(items)} texts and {len(ids)} token ids")
        if vocab is None or (len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(vocab))):
            raise ValueError(f"its token ids do not fit its vocabulary of {0 if vocab is None else len(vocab)} "
                             "tokens")
        flat = ids.to(torch.int64).numpy()
        res.ids = np.split(flat, np.cumsum(lengths.numpy())[:-1]) if len(items) else []
        return res

    def numericalized(self, vocab: Vocab, tokens: list[list[str]]) -> "TextList":
        """A copy holding the token ids of `tokens` under `vocab`."""
        res = self.new(self.items, self.inner_df)
        res.vocab, res.ids = vocab, [np.asarray(vocab.numericalize(t), dtype=np.int64) for t in tokens]
        return res

    def reconstruct(self, ids) -> str:
        """The tokens of an id tensor as text, padding left out."""
        return self.vocab.textify([i for i in ids.tolist() if i != PAD_IDX])

    def show_xys(self, xs, ys, y_list, rows: int = 5, max_len: int = 40, **kwargs) -> None:
        """A table of the first `rows` texts of a batch (their first `max_len` tokens) and their targets."""
        texts = [" ".join(self.reconstruct(x).split(" ")[:max_len]) for x in xs[:rows]]
        targets = ([" ".join(self.reconstruct(y).split(" ")[:max_len]) for y in ys[:rows]]
                   if isinstance(y_list, LMLabelList) else [y_list.label_str(y) for y in ys[:rows]])
        _display(pd.DataFrame({"text": texts, "target": targets}))


def _display(df: pd.DataFrame) -> None:
    try:
        from IPython.display import display
    except ImportError:
        print(df.to_string())
    else:
        display(df)


def _warn_empty(texts: list[str], x: ItemList, which: str) -> None:
    """An empty text teaches nothing but its label: name it, so a student can tell a mistake from intent."""
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        o = x.items[empty[0]]
        name = x.item_name(o) if isinstance(o, Path) else f"text {empty[0]} of the {which} set"
        warnings.warn(f"{len(empty)} of the {which} texts are empty, e.g. {name}; they are kept, as a lone "
                      "start-of-text token. Remove them if they are mistakes.", stacklevel=3)


class TextItemLists(ItemLists):
    """Split texts; labelling tokenizes them and builds the vocabulary from the training texts."""

    def _processed(self) -> "TextItemLists":
        x = self.train
        texts = [x.text(i) for i in range(len(x))] + [self.valid.text(i) for i in range(len(self.valid))]
        _warn_empty(texts[:len(x)], x, "training")
        _warn_empty(texts[len(x):], self.valid, "validation")
        tokens = x.tokenizer.process_all(texts)
        tr_tok, va_tok = tokens[:len(x)], tokens[len(x):]
        vocab = x.vocab or Vocab.create(tr_tok, x.max_vocab, x.min_freq)
        return TextItemLists(self.path, x.numericalized(vocab, tr_tok), self.valid.numericalized(vocab, va_tok))

    def label_for_lm(self) -> "TextLabelLists":
        """Labels for a language model: none needed, the target is the text itself, one token ahead."""
        lists = self._processed()
        return TextLabelLists(self.path, LabelList(lists.train, LMLabelList.for_texts(lists.train)),
                              LabelList(lists.valid, LMLabelList.for_texts(lists.valid)))

    def label_from_lists(self, train_labels: Sequence, valid_labels: Sequence, label_cls: type | None = None,
                         **kwargs) -> "TextLabelLists":
        """Label with explicit label lists (label_from_df and label_from_folder end here), then tokenize."""
        res = ItemLists.label_from_lists(self._processed(), train_labels, valid_labels, label_cls, **kwargs)
        return TextLabelLists(res.path, res.train, res.valid)


class TextLabelLists(LabelLists):
    """Labelled texts; `databunch` makes language-model batches or classifier batches, by the label type."""

    def databunch(self, bs: int = 64, val_bs: int | None = None, bptt: int = 70, num_workers: int | None = None,
                  device: torch.device | None = None, **kwargs) -> DataBunch:
        """Language model: streams cut into `bptt` tokens; classifier: sortish, front-padded batches."""
        if isinstance(self.train.y, LMLabelList):
            return TextLMDataBunch(self.train, self.valid, self.test, bs=bs, val_bs=val_bs, bptt=bptt,
                                   num_workers=num_workers, device=device, path=self.path, **kwargs)
        return TextClasDataBunch(self.train, self.valid, self.test, bs=bs, val_bs=val_bs, num_workers=num_workers,
                                 device=device, path=self.path, **kwargs)


class CrossEntropyFlat(nn.Module):
    """Cross entropy over every position: predictions (..., vocab) and targets (...) are flattened."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(input.reshape(-1, input.shape[-1]), target.reshape(-1))


class LMLabelList(TargetList):
    """The 'labels' of a language model: none per text (the targets are the next tokens, made by the loader)."""

    @classmethod
    def for_texts(cls, x: TextList) -> "LMLabelList":
        return cls([0] * len(x), x.path)

    def get(self, i):
        return torch.tensor(0)

    def loss_func(self):
        return CrossEntropyFlat()

    def activation(self, out):
        return out.softmax(dim=-1)


# --- batches -------------------------------------------------------------------------------------
class LMStreamLoader:
    """Language-model batches: the texts (shuffled per epoch for training) joined into one stream, cut into
    `bs` rows that are read `bptt` tokens at a time. y is x shifted by one token, and row r of a batch
    continues row r of the previous batch, so the model's state can carry over."""

    def __init__(self, ds: LabelList, bs: int, bptt: int, shuffle: bool):
        self.dataset, self.bs, self.bptt, self.shuffle = ds, bs, bptt, shuffle
        self.n_tokens = int(sum(len(o) for o in ds.x.ids)) if len(ds) else 0
        self.row_len = (self.n_tokens - 1) // bs if self.n_tokens else 0
        if len(ds) and self.row_len < 2:
            raise ValueError(f"{self.n_tokens} tokens are too few for a language model batch of bs={bs} rows; "
                             "lower bs or add texts.")

    def __len__(self) -> int:
        return math.ceil(self.row_len / self.bptt)

    def stream(self) -> np.ndarray:
        """All token ids, texts in (shuffled) order, as one array."""
        ids = self.dataset.x.ids
        order = np.random.permutation(len(ids)) if self.shuffle else range(len(ids))
        return np.concatenate([ids[i] for i in order])

    def __iter__(self):
        if not self.row_len:
            return
        s = torch.from_numpy(self.stream()[: self.bs * self.row_len + 1])
        x = s[:-1].view(self.bs, self.row_len)
        y = s[1:].view(self.bs, self.row_len)
        for i in range(0, self.row_len, self.bptt):
            yield x[:, i:i + self.bptt].contiguous(), y[:, i:i + self.bptt].contiguous()


def pad_collate(seqs: Sequence[np.ndarray], pad_idx: int = PAD_IDX) -> torch.Tensor:
    """Texts of different lengths as one (n, longest) tensor, padded at the front with `pad_idx`, so the
    last position of every row is a real token (the classifier reads the final state)."""
    longest = max(len(s) for s in seqs)
    x = torch.full((len(seqs), longest), pad_idx, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            x[i, longest - len(s):] = torch.as_tensor(s)
    return x


class SortishLoader:
    """Classifier batches of texts of similar length, so little padding is needed.

    Training (`shuffle`): shuffle, sort chunks of 50 batches by length, cut them into batches, put the batch
    with the longest text first (memory problems show at once) and shuffle the rest; a last short batch is dropped.
    `sort` without `shuffle`: longest first (validation). Neither: the set's own order (predictions)."""

    def __init__(self, ds: LabelList, bs: int, shuffle: bool, sort: bool = True):
        self.dataset, self.bs, self.shuffle, self.sort = ds, bs, shuffle, sort
        self.lengths = np.array([len(o) for o in ds.x.ids]) if len(ds) else np.zeros(0, dtype=int)

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.bs if self.shuffle else math.ceil(n / self.bs)

    def batches(self) -> list[np.ndarray]:
        """Item indices of each batch, in the order they will be served."""
        n, bs = len(self.lengths), self.bs
        if self.shuffle:
            idx = np.random.permutation(n)
            chunk = bs * 50
            idx = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")]
                                  for c in np.split(idx, range(chunk, n, chunk))]) if n else idx
            batches = [idx[i:i + bs] for i in range(0, n - n % bs, bs)]
            if not batches:
                return []
            first = int(np.argmax([self.lengths[b].max() for b in batches]))
            rest = [b for i, b in enumerate(batches) if i != first]
            return [batches[first]] + [rest[i] for i in np.random.permutation(len(rest))]
        idx = np.argsort(-self.lengths, kind="stable") if self.sort else np.arange(n)
        return [idx[i:i + bs] for i in range(0, n, bs)]

    def __iter__(self):
        ids, y = self.dataset.x.ids, self.dataset.y
        for b in self.batches():
            yield pad_collate([ids[i] for i in b]), torch.stack([y.get(int(i)) for i in b])


class TextDataBunch(DataBunch):
    """What both text DataBunches share: the vocabulary, turning one raw text into a batch, and the video's
    one-line factories (`from_csv`, `load`), thin aliases onto the data block chain and `load_data`."""

    @classmethod
    def from_csv(cls, path: str | Path, csv_name: str, valid_pct: float = 0.2, seed: int | None = None,
                 text_cols: int | str = 1, label_cols: int | str = 0, valid_col: int | str | None = None,
                 vocab: Vocab | None = None, classes: Sequence | None = None, bs: int = 64, max_vocab: int = 60000,
                 min_freq: int = 3, **kwargs) -> "TextDataBunch":
        """The lesson's one line, `TextDataBunch.from_csv(path, 'texts.csv')`: the texts of column `text_cols`
        of `path/csv_name`, a random `valid_pct` of them for validation (or the rows where `valid_col` is true),
        tokenized and numericalized. `TextDataBunch` and `TextClasDataBunch` label them with column
        `label_cols` (a classifier's data, as in the video); `TextLMDataBunch` makes a language model's. The
        same as

            TextList.from_csv(path, csv_name, cols=text_cols).split_by_rand_pct(valid_pct)
                    .label_from_df(cols=label_cols).databunch(bs=bs)      # or .label_for_lm()
        """
        texts = TextList.from_csv(path, csv_name, cols=text_cols, vocab=vocab, max_vocab=max_vocab, min_freq=min_freq)
        split = (texts.split_from_df(col=valid_col) if valid_col is not None
                 else texts.split_by_rand_pct(valid_pct, seed=seed))
        labelled = (split.label_for_lm() if issubclass(cls, TextLMDataBunch)
                    else split.label_from_df(cols=label_cols, classes=classes))
        return labelled.databunch(bs=bs, **kwargs)

    @classmethod
    def from_df(cls, path: str | Path, train_df: pd.DataFrame, valid_df: pd.DataFrame, text_cols: int | str = 1,
                label_cols: int | str = 0, vocab: Vocab | None = None, classes: Sequence | None = None, bs: int = 64,
                max_vocab: int = 60000, min_freq: int = 3, **kwargs) -> "TextDataBunch":
        """Like `from_csv`, from two tables you split yourself: the training rows and the validation rows."""
        df = pd.concat([train_df, valid_df], ignore_index=True)
        texts = TextList.from_df(df, path, cols=text_cols, vocab=vocab, max_vocab=max_vocab, min_freq=min_freq)
        split = texts.split_by_idxs(np.arange(len(train_df)), np.arange(len(train_df), len(df)))
        labelled = (split.label_for_lm() if issubclass(cls, TextLMDataBunch)
                    else split.label_from_df(cols=label_cols, classes=classes))
        return labelled.databunch(bs=bs, **kwargs)

    @classmethod
    def load(cls, path: str | Path, fname: str = "data_save.pkl", **kwargs) -> "TextDataBunch":
        """The video's name (fastai v1.0.2x) for `load_data(path, fname, bs=...)`: the DataBunch that
        `data.save(fname)` wrote to `path/fname`, checked to be of this class."""
        data = load_data(path, fname, **kwargs)
        if not isinstance(data, cls):
            raise TypeError(f"{Path(path) / fname} holds a {type(data).__name__}, not a {cls.__name__}. Read it "
                            f"with `load_data(path, {str(fname)!r})`, which gives the DataBunch of the type saved.")
        return data

    @property
    def vocab(self) -> Vocab:
        """The training texts' vocabulary (`data.vocab.itos`, `data.vocab.stoi`)."""
        return self.train_ds.x.vocab

    def numericalize_text(self, text: str) -> torch.Tensor:
        """One raw text as a (1, n_tokens) tensor of ids on the device, tokenized like the training texts."""
        x = self.train_ds.x
        return torch.tensor([self.vocab.numericalize(x.tokenizer.process_text(text))], device=self.device)

    def one_item(self, item: str) -> torch.Tensor:
        """A raw text as a batch of one."""
        return self.numericalize_text(item)

    def export_state(self) -> dict:
        """The base state plus what turns a raw text into ids: the vocabulary and the tokenizer's settings."""
        x = self.train_ds.x
        return {**super().export_state(), "vocab": list(self.vocab.itos), "tokenizer": x.tokenizer.state()}

    @classmethod
    def from_state(cls, state: dict, path: Path, device: torch.device | None = None) -> "TextDataBunch":
        """An empty text DataBunch that tokenizes and numericalizes new texts exactly as at export time."""
        data = super().from_state(state, path, device)
        vocab, tokenizer = Vocab(state["vocab"]), Tokenizer.from_state(state["tokenizer"])
        for ds in (data.train_ds, data.valid_ds):
            ds.x.vocab, ds.x.tokenizer = vocab, tokenizer
        return data


class TextLMDataBunch(TextDataBunch):
    """Language-model data: batches of (bs, bptt) token ids, targets one token ahead."""

    def __init__(self, train_ds: LabelList, valid_ds: LabelList, test_ds: LabelList | None = None, bs: int = 64,
                 bptt: int = 70, **kwargs):
        self.bptt = bptt
        super().__init__(train_ds, valid_ds, test_ds, bs=bs, **kwargs)

    def _loader(self, ds: LabelList, bs: int, shuffle: bool) -> DeviceDataLoader:
        return DeviceDataLoader(LMStreamLoader(ds, bs, self.bptt, shuffle), self)

    def saved_settings(self) -> dict:
        """The loaders' settings `save` keeps: the batch sizes, and `bptt`."""
        return {**super().saved_settings(), "bptt": self.bptt}


class TextClasDataBunch(TextDataBunch):
    """Classifier data: front-padded batches of similar-length texts, with their labels."""

    def _loader(self, ds: LabelList, bs: int, shuffle: bool, sort: bool = True) -> DeviceDataLoader:
        return DeviceDataLoader(SortishLoader(ds, bs, shuffle, sort), self)

    def ordered_dl(self, ds_type: str = "valid", augment: bool = False) -> DeviceDataLoader:
        """A loader over a whole set in its own order, so predictions line up with the items."""
        return self._loader(self.dl(ds_type).dataset, self.val_bs, shuffle=False, sort=False)
