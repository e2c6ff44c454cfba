"""The data block chain of lesson 3, domain-free:

    ItemList (paths or texts, nothing decoded) -> split -> label -> transform -> DataBunch

Each step returns a new object, so a student can stop after any step and look at it.
Vision and text subclass `ItemList`; this module knows nothing about images or words.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import os
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, default_collate

from .config import default_device, default_num_workers
from .persist import atomic_save, safe_load
from .tables import column_name, read_csv

__all__ = ["DatasetType", "tensor", "TransformConfig", "ItemList", "ItemLists", "LabelList", "LabelLists", "DataBunch",
           "CategoryList", "MultiCategoryList", "FloatList", "EmptyLabelList", "Normalize", "load_data",
           "problem_list", "problem_kind"]

# Names from the lesson video that were renamed; looking one up says what to call instead.
RENAMED = {
    "random_split_by_pct": "split_by_rand_pct",
    "no_split": "split_none",
    "label_from_csv": "label_from_df (after ImageList.from_csv)",
    "datasets": "transform(...).databunch(...)",
    "label_const": "label_for_lm() (a language model) or label_from_lists(...)",
    "split_by_valid_pct": "split_by_rand_pct",
}


class DatasetType(str, enum.Enum):
    """The lesson's names for the three sets (`learn.get_preds(ds_type=DatasetType.Test)`). Each one is equal to
    the plain string used here ('train', 'valid', 'test'), so either spelling works wherever a `ds_type` goes."""
    Train = "train"
    Valid = "valid"
    Test = "test"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


def tensor(x, *rest, **kwargs) -> torch.Tensor:
    """The lesson's `tensor(...)`: `tensor([c2, c1])` or `tensor(c2, c1)` -> a torch tensor (numpy arrays and
    tensors included; `kwargs` such as `dtype=` go to torch.as_tensor)."""
    if rest:
        x = (x, *rest)
    if isinstance(x, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in x):
        return torch.stack([torch.as_tensor(v, **kwargs) for v in x])
    return torch.as_tensor(np.asarray(x) if isinstance(x, (list, tuple)) else x, **kwargs)


def _plain_size(options: dict) -> dict:
    """`size=` given as a numpy array, a torch tensor or numpy integers (CamVid's `src_size//2`) -> plain ints.
    A 2-element array crops to (height, width), as the lesson's array did (a tuple or list squishes)."""
    size = options.get("size")
    if isinstance(size, torch.Tensor):
        size = size.detach().cpu().numpy()
    if isinstance(size, (np.ndarray, np.generic)):
        vals = [int(v) for v in np.asarray(size).reshape(-1)]
        options = {**options, "size": vals[0] if len(vals) == 1 else tuple(vals)}
        if len(vals) == 2 and options.get("resize_method") is None:
            options["resize_method"] = "crop"
    elif isinstance(size, (tuple, list)):
        options = {**options, "size": tuple(int(v) if isinstance(v, (np.integer, torch.Tensor)) else v for v in size)}
    return options


@dataclass(frozen=True)
class TransformConfig:
    """The options `LabelLists.transform(tfms, size=..., ...)` was given for one set, besides the random
    transforms themselves (`LabelList.tfms`), plus which side of the split the set is on. Frozen: a changed copy
    is made with `dataclasses.replace(cfg, train=True)`.

    - size: the output size in pixels, an int (square) or (height, width); None keeps each image's own size.
    - resize_method: how an image is fitted to `size` (a `ResizeMethod`: crop, squish, pad or no); None: crop.
    - tfm_y: whether the target moves with the image; None: the item list's own default (`tfm_y_default`).
    - cache: keep each decoded, resized image for later epochs and stages (vision/cache.py); None: each DataBunch
      decides, caching when the images fit a share of the available memory (`decide_auto_cache`).
    - train: draw the random augmentations (the training set) or not (validation, test, `predict`); set per set
      by `transform`, not one of its options.
    Text items take none of these (a text set keeps the defaults)."""

    size: int | tuple[int, int] | None = None
    resize_method: str | None = None
    tfm_y: bool | None = None
    cache: bool | None = None
    train: bool = True

    @classmethod
    def from_options(cls, options: dict, train: bool) -> "TransformConfig":
        """The config for `transform`'s keyword options; an unknown one is refused with the known ones named."""
        known = cls.option_names()
        unknown = [k for k in options if k not in known]
        if unknown:
            raise TypeError(f"transform() got unknown option(s) {', '.join(map(repr, unknown))}; its options are "
                            f"{', '.join(known)} (e.g. `.transform(tfms, size=128, tfm_y=True)`). Options for the "
                            "random transforms themselves go to get_transforms().")
        return cls(**_plain_size(options), train=train)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The fields `transform` takes as keywords (all but `train`, which each set gets from the split)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "train")

    def options(self) -> dict:
        """The keyword options of `transform` that give this config (plain values, as exports store them)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "train"}


class ItemList:
    """A list of items (file paths, texts, ...) and the folder they are relative to."""

    extensions: tuple[str, ...] = ()

    def __init__(self, items: Iterable, path: str | Path = ".", inner_df: pd.DataFrame | None = None):
        self.items = list(items)
        self.path = Path(path)
        self.inner_df = inner_df

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.get(i)

    def __repr__(self) -> str:
        shown = ", ".join(str(self.item_name(o)) for o in self.items[:3])
        return (f"{type(self).__name__} ({len(self)} items)\n[{shown}{', ...' if len(self) > 3 else ''}]\n"
                f"Path: {self.path}")

    def __getattr__(self, name: str):
        if name in RENAMED:
            raise AttributeError(f"`{name}` is the lesson video's name; it is now `{RENAMED[name]}`.")
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def item_name(self, item):
        """How messages name `item`: its path relative to the list's folder (or the item itself)."""
        try:
            return Path(item).relative_to(self.path)
        except (TypeError, ValueError):
            return item

    def add(self, items: "ItemList | Iterable") -> "ItemList":
        """This list with the items of another list (or any iterable of items) appended, e.g. two test folders:
        `ImageList.from_folder(path/'test-jpg').add(ImageList.from_folder(path/'test-jpg-additional'))`."""
        more = items.items if isinstance(items, ItemList) else list(items)
        return self.new(list(self.items) + list(more))

    def get(self, i: int):
        """The item at index i, opened (subclasses decode files here)."""
        return self.items[i]

    def raw(self, i: int):
        """The item at index i as the transforms take it (images: opened lazily, decoded by `apply_tfms`)."""
        return self.get(i)

    def saved_state(self) -> dict:
        """What `DataBunch.save` keeps of this list besides its items (plain values and tensors); texts keep their
        vocabulary and ids. Nothing, for file lists."""
        return {}

    @classmethod
    def from_saved(cls, items: list, path: Path, state: dict) -> "ItemList":
        """The list `saved_state` describes, holding `items` (`load_data`); raise ValueError if `state` is wrong."""
        return cls(items, path)

    def new(self, items: Iterable, inner_df: pd.DataFrame | None = None) -> "ItemList":
        """A copy of this list (same type and settings) holding other items."""
        res = copy.copy(self)
        res.items, res.inner_df = list(items), inner_df
        return res

    def _subset(self, idx: Sequence[int]) -> "ItemList":
        idx = np.asarray(idx, dtype=int)
        df = None if self.inner_df is None else self.inner_df.iloc[idx].reset_index(drop=True)
        return self.new([self.items[i] for i in idx], df)

    # --- making an ItemList -------------------------------------------------------------
    @classmethod
    def from_folder(cls, path: str | Path, extensions: Iterable[str] | None = None, recurse: bool = True,
                    include: Iterable[str] | None = None, exclude: Iterable[str] | None = None) -> "ItemList":
        """Every file under `path` with one of `extensions` (hidden files skipped), sorted.

        `include`/`exclude` keep or drop top-level sub-folders by name."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder. Check the path (and that the dataset was extracted).")
        exts = {e.lower() for e in (extensions or cls.extensions)}
        files = path.rglob("*") if recurse else path.glob("*")
        items, broken = [], []
        for f in sorted(files):
            rel = f.relative_to(path).parts
            if exts and f.suffix.lower() not in exts:
                continue
            if f.is_symlink() and not f.exists() and not any(p.startswith(".") for p in rel):
                broken.append(f)
            if any(p.startswith(".") for p in rel) or not f.is_file():
                continue
            if len(rel) > 1 and ((include is not None and rel[0] not in include) or (exclude and rel[0] in exclude)):
                continue
            items.append(f)
        if broken:
            _warn_broken_links(broken, path)
        if not items:
            raise FileNotFoundError(f"No files with extensions {sorted(exts)} found under {path}.")
        return cls(items, path)

    @classmethod
    def from_df(cls, df: pd.DataFrame, path: str | Path = ".", cols: int | str = 0, folder: str | None = None,
                suffix: str = "") -> "ItemList":
        """Items from column `cols` of `df`, as `path/folder/<value><suffix>`."""
        col = column_name(df, cols, "item")
        if df[col].isna().any():
            row = int(np.flatnonzero(df[col].isna().to_numpy())[0])
            raise ValueError(f"Column {col!r} has an empty value in row {row + 2} of the CSV (row {row} of the table).")
        path = Path(path)
        base = path / folder if folder else path
        items = [base / f"{v}{suffix}" for v in df[col].astype(str)]
        res = cls(items, path, inner_df=df.reset_index(drop=True))
        res._check_items()
        return res

    @classmethod
    def from_csv(cls, path: str | Path, csv_name: str, cols: int | str = 0, folder: str | None = None,
                 suffix: str = "", **read_csv_kwargs) -> "ItemList":
        """Items from a CSV file in `path` (see `from_df`)."""
        csv = Path(path) / csv_name
        if not csv.is_file():
            raise FileNotFoundError(f"CSV file {csv} not found.")
        return cls.from_df(read_csv(csv, **read_csv_kwargs), path, cols=cols, folder=folder, suffix=suffix)

    def _check_items(self) -> None:
        """Hook for subclasses to check items as soon as they are listed."""

    def check_for_training(self, y_list: "TargetList | None" = None, cfg: TransformConfig = TransformConfig()
                           ) -> list[str]:
        """Hook: one message (naming the item) per item that would stop training; images decode every file."""
        return []

    def check_batchable(self, cfg: TransformConfig = TransformConfig()) -> None:
        """Hook: fail before training if these items, transformed as `cfg` says, cannot be stacked into
        batches (images override it: different sizes without `size=`)."""

    def _label_cls(self, labels: Sequence, kwargs: dict) -> type:
        """The target type for these labels; segmentation and points lists override it."""
        return _pick_label_cls(labels)

    def apply_tfms(self, x, y, y_list: "TargetList", tfms, cfg: TransformConfig):
        """Turn an opened item and its target into tensors (subclasses transform images here)."""
        return x, y

    def open_item(self, item):
        """A raw item given by the user (to `predict`) in the form `get` returns."""
        return item

    def item_context(self, item, tfms=None, cfg: TransformConfig = TransformConfig()) -> dict:
        """What decoding a prediction for the raw `item` needs to know about it, as keyword arguments for
        `predict_result` (nothing, except for points, which map back onto the item's own image)."""
        return {}

    @staticmethod
    def tfms_from_state(state: dict):
        """Transforms rebuilt from their exported plain values."""
        return None

    def show_results(self, xs, ys, preds, y_list: "TargetList", rows: int = 3, **kwargs) -> None:
        """Draw inputs, targets and predictions (subclasses know how)."""
        raise NotImplementedError(f"{type(self).__name__} cannot show results.")

    def show_xys(self, xs, ys, y_list: "TargetList", rows: int = 3, **kwargs) -> None:
        """Draw a batch (subclasses know how)."""
        raise NotImplementedError(f"{type(self).__name__} cannot show batches.")

    # --- splitting -----------------------------------------------------------------------
    def split_by_idxs(self, train_idx: Sequence[int], valid_idx: Sequence[int]) -> "ItemLists":
        """Split by explicit train and validation indices."""
        return ItemLists(self.path, self._subset(train_idx), self._subset(valid_idx))

    def split_by_idx(self, valid_idx: Sequence[int]) -> "ItemLists":
        """Validation set = the items at `valid_idx`; the rest is training."""
        valid = np.unique(np.asarray(valid_idx, dtype=int))
        if len(valid) and (valid.min() < 0 or valid.max() >= len(self)):
            raise IndexError(f"split_by_idx: indices must lie in [0, {len(self)}).")
        if not len(valid):
            _warn_empty_valid("no item was chosen for validation")
        return self.split_by_idxs(np.setdiff1d(np.arange(len(self)), valid), valid)

    def _copies_together(self, perm: np.ndarray, n_valid: int) -> np.ndarray:
        """About `n_valid` validation indices drawn in the order of `perm`, each repeated item (the same file or text
        listed twice) taken with all its copies, so a random split never puts one item on both sides and the
        validation share stays near the one asked for. Without repeats: the first `n_valid` of `perm`."""
        keys = [str(o) for o in self.items]
        if len(set(keys)) == len(keys):
            return perm[:n_valid]
        copies: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            copies.setdefault(k, []).append(i)
        valid, taken = [], set()
        for i in perm:
            if len(valid) >= n_valid:
                break
            group = copies[keys[i]]
            if keys[i] in taken or len(valid) + len(group) / 2 > n_valid:
                continue  # a group that would overshoot the share by more than half of itself is left in training
            taken.add(keys[i])
            valid.extend(group)
        valid = np.array(sorted(valid), dtype=int)
        if n_valid and (len(valid) == 0 or len(valid) == len(keys)):
            dups = sorted(((len(g), k) for k, g in copies.items() if len(g) > 1), reverse=True)
            shown = ", ".join(f"{self.item_name(self.items[copies[k][0]])} ({n} times)" for n, k in dups[:3])
            side = "validation" if len(valid) == 0 else "training"
            raise ValueError(f"split_by_rand_pct leaves the {side} set empty because the "
                             f"items repeat: {len(dups)} of them are listed several times (e.g. {shown}), and all "
                             "copies of an item stay on one side. Remove the repeated rows, or choose another "
                             "valid_pct.")
        return valid

    def split_none(self) -> "ItemLists":
        """Everything in training, an empty validation set."""
        return self.split_by_idxs(np.arange(len(self)), [])

    def split_by_rand_pct(self, valid_pct: float = 0.2, seed: int | None = None) -> "ItemLists":
        """A random `valid_pct` of the items go to validation; the same `seed` gives the same split."""
        if not 0 <= valid_pct < 1:
            raise ValueError(f"valid_pct must be in [0, 1), got {valid_pct}.")
        perm = (np.random.default_rng(seed).permutation(len(self)) if seed is not None
                else np.random.permutation(len(self)))
        return self.split_by_idx(self._copies_together(perm, int(valid_pct * len(self))))

    def split_by_valid_func(self, func: Callable) -> "ItemLists":
        """Items for which `func(item)` is true go to validation."""
        return self.split_by_idx([i for i, o in enumerate(self.items) if func(o)])

    def split_by_files(self, valid_names: Iterable[str]) -> "ItemLists":
        """Items whose file name is in `valid_names` go to validation."""
        names = {Path(n).name for n in valid_names}
        return self.split_by_valid_func(lambda o: Path(o).name in names)

    def split_by_fname_file(self, fname: str | Path, path: str | Path | None = None) -> "ItemLists":
        """Validation = the file names listed, one per line, in `path/fname` (CamVid's valid.txt)."""
        f = Path(path or self.path) / fname
        if not f.is_file():
            raise FileNotFoundError(f"split_by_fname_file: {f} not found.")
        return self.split_by_files(line.strip() for line in f.read_text().splitlines() if line.strip())

    def split_by_folder(self, train: str = "train", valid: str = "valid") -> "ItemLists":
        """Split on the first folder under `path`; items in any other folder are dropped."""
        top = [Path(o).relative_to(self.path).parts[0] for o in self.items]
        tr = [i for i, t in enumerate(top) if t == train]
        va = [i for i, t in enumerate(top) if t == valid]
        if not tr:
            raise ValueError(f"split_by_folder: no items in a top-level folder named {train!r} under {self.path}.")
        if not va:
            _warn_empty_valid(f"no items in a top-level folder named {valid!r} under {self.path}")
        return self.split_by_idxs(tr, va)

    def split_from_df(self, col: int | str = 2) -> "ItemLists":
        """Rows whose column `col` is true go to validation."""
        if self.inner_df is None:
            raise ValueError("split_from_df needs an ItemList made by from_df or from_csv.")
        c = column_name(self.inner_df, col, "split")
        return self.split_by_idx(np.flatnonzero(self.inner_df[c].astype(bool).to_numpy()))

    def _label_by_split_first(self, *args, **kwargs):
        raise TypeError("Split the items before labelling them, e.g. `.split_by_rand_pct(0.2)`, "
                        "or `.split_none()` to keep everything for training.")

    label_from_df = label_from_func = label_from_folder = label_from_lists = label_for_lm = _label_by_split_first


# Kinds of problem found before training, each recognised by words its messages use, in the order listed.
_PROBLEM_KINDS = (("files that do not exist", ("does not exist", "do not exist", "no such file")),
                  ("files that cannot be read", ("cannot read", "cannot decode", "cannot identify")),
                  ("masks", ("mask",)), ("points", ("point",)), ("boxes", ("box",)),
                  ("labels", ("label", "class")))


def problem_kind(message: str) -> str:
    """The kind of a problem message (see `_PROBLEM_KINDS`): what a grouped report files it under."""
    low = message.lower()
    return next((kind for kind, words in _PROBLEM_KINDS if any(w in low for w in words)), "other problems")


def problem_list(problems: Sequence[str], shown: int = 5) -> str:
    """Problem messages as indented lines: all of one kind as a plain list (the first 20), several kinds grouped,
    each with its count and its first `shown` messages, so a long list of one kind cannot hide the others."""
    groups: dict[str, list[str]] = {}
    for p in problems:
        groups.setdefault(problem_kind(p), []).append(p)
    if len(groups) == 1:
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        return "\n".join(f"  - {p}" for p in problems[:20]) + more
    order = [k for k, _ in _PROBLEM_KINDS] + ["other problems"]
    lines = []
    for kind in sorted(groups, key=order.index):
        found = groups[kind]
        lines.append(f"  {kind} ({len(found)}):")
        lines.extend(f"    - {p}" for p in found[:shown])
        if len(found) > shown:
            lines.append(f"    ... and {len(found) - shown} more")
    return "\n".join(lines)


def _warn_broken_links(broken: list[Path], path: Path) -> None:
    shown = ", ".join(f"{f.relative_to(path)} -> {os.readlink(f)}" for f in broken[:5])
    warnings.warn(f"{len(broken)} link(s) under {path} point to files that do not exist and were left out: {shown}"
                  f"{' ...' if len(broken) > 5 else ''}. Fix the links (or copy the files in), or delete them.",
                  stacklevel=3)


def _warn_empty_valid(why: str) -> None:
    warnings.warn(f"The validation set is empty ({why}). Training works, but valid_loss and the metrics will "
                  "show #na#, so you cannot tell whether the model generalises: check the split, or use "
                  "`.split_none()` if you mean to train on everything.", stacklevel=3)


class ItemLists:
    """A training and a validation ItemList: the result of a split, waiting for labels."""

    def __init__(self, path: Path, train: ItemList, valid: ItemList):
        self.path, self.train, self.valid = path, train, valid
        if len(train) == 0:
            raise ValueError("The split left the training set empty; use a smaller validation share.")

    def __repr__(self) -> str:
        return f"ItemLists;\n\nTrain: {self.train!r};\n\nValid: {self.valid!r}"

    def __getattr__(self, name: str):
        if name in RENAMED:
            raise AttributeError(f"`{name}` is the lesson video's name; it is now `{RENAMED[name]}`.")
        raise AttributeError(f"ItemLists has no attribute {name!r}")

    @contextmanager
    def _with_file_problems(self):
        """A labelling error also lists every file that cannot be used (missing, unreadable; checked only then), so
        one run names all the problems of the data, not one kind per run."""
        try:
            yield
        except ValueError as e:
            if getattr(e, "files_checked", False):
                raise
            found = [p for x in (self.train, self.valid) for p in x.check_for_training()]
            if not found:
                e.files_checked = True
                raise
            err = ValueError(f"{e}\nThe files have problems too ({len(found)} of "
                             f"{len(self.train) + len(self.valid)}), all listed now so you can fix everything at "
                             f"once:\n{problem_list(found)}")
            err.files_checked = True
            raise err from e

    def label_from_lists(self, train_labels: Sequence, valid_labels: Sequence, label_cls: type | None = None,
                         **kwargs) -> "LabelLists":
        """Label with explicit label lists; the label type picks the loss (see `_pick_label_cls`). A label that
        cannot be used raises one error that also lists the files that cannot (see `_with_file_problems`)."""
        with self._with_file_problems():
            return self._label_from_lists(train_labels, valid_labels, label_cls, **kwargs)

    def _label_from_lists(self, train_labels: Sequence, valid_labels: Sequence, label_cls: type | None = None,
                          **kwargs) -> "LabelLists":
        if isinstance(label_cls, type) and issubclass(label_cls, ItemList) and not issubclass(label_cls, TargetList):
            raise TypeError(f"`label_cls={label_cls.__name__}` is the lesson video's spelling: here the kind of items "
                            f"comes first: start the chain with `{label_cls.__name__}.from_folder(...)` (or from_csv) "
                            "and label without label_cls, e.g. `.label_from_func(get_ctr)`.")
        label_cls = label_cls or self.train._label_cls(train_labels, kwargs)
        y_train = label_cls.from_labels(train_labels, self.train, **kwargs)
        y_valid, keep = y_train.labels_for_valid(valid_labels, self.valid)
        valid_x = self.valid if keep is None else self.valid._subset(keep)
        return LabelLists(self.path, LabelList(self.train, y_train), LabelList(valid_x, y_valid))

    def label_from_df(self, cols: int | str | Sequence = 1, label_delim: str | None = None, **kwargs) -> "LabelLists":
        """Labels from column(s) `cols` of the CSV; `label_delim=' '` splits multi-label tags (the video's
        `sep=' '` is taken as `label_delim`, with a one-line note)."""
        if "sep" in kwargs:
            label_delim = kwargs.pop("sep")
            warnings.warn(f"`sep={label_delim!r}` is the lesson video's name; it is now `label_delim={label_delim!r}`.",
                          stacklevel=2)
        if self.train.inner_df is None:
            raise ValueError("label_from_df needs an ItemList made by from_df or from_csv.")
        def labels(il):
            df = il.inner_df
            if isinstance(cols, (list, tuple)):  # several 0/1 columns -> multi-label
                names = [column_name(df, c, "label") for c in cols]
                return [[n for n in names if row[n]] for _, row in df[names].iterrows()]
            col = column_name(df, cols, "label")
            vals = df[col].tolist()
            if label_delim is None:
                return _single_labels(vals, col, il)
            # stray spaces around tags ("a; b", "a  b") are not part of the tag; an empty cell is no tags
            tags = [[] if _missing(v) else [t.strip() for t in str(v).split(label_delim) if t.strip()]
                    for v in vals]
            if il is self.train:
                _warn_other_separators(tags, col, label_delim, il)
            return tags
        if label_delim is not None or isinstance(cols, (list, tuple)):
            kwargs.setdefault("label_cls", MultiCategoryList)
        with self._with_file_problems():
            train, valid = labels(self.train), labels(self.valid)
        if label_delim is not None and not isinstance(cols, (list, tuple)):
            _warn_untagged(column_name(self.train.inner_df, cols, "label"), [(self.train, train), (self.valid, valid)])
        return self.label_from_lists(train, valid, **kwargs)

    def label_from_func(self, func: Callable, **kwargs) -> "LabelLists":
        """Label each item with `func(item)`."""
        return self.label_from_lists([func(o) for o in self.train.items], [func(o) for o in self.valid.items], **kwargs)

    def label_from_folder(self, **kwargs) -> "LabelLists":
        """Label each file with the name of the folder it is in."""
        return self.label_from_func(lambda o: Path(o).parent.name, **kwargs)

    def label_from_re(self, pat: str, **kwargs) -> "LabelLists":
        """Label each file with group 1 of the regular expression `pat` matched on its path."""
        def f(o):
            m = re.search(pat, str(o))
            if m is None:
                raise ValueError(f"label_from_re: {pat!r} does not match {o}.")
            return m.group(1)
        return self.label_from_func(f, **kwargs)


@contextmanager
def _one_thread():
    """Run on one intra-op thread. One item's tensors are tiny: splitting each op over threads costs more than
    it saves, and on a busy CPU it costs milliseconds per op (measured: 20 ms instead of 0.01 ms for one
    128-px image's `float()` on 2 loaded cores). Training batches keep all the threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class LabelList(Dataset):
    """A Dataset of (x, y): items and their targets, with the transforms that turn them into tensors."""

    def __init__(self, x: ItemList, y: "TargetList"):
        self.x, self.y = x, y
        self.tfms = None
        self.tfm_cfg: TransformConfig | None = None  # None: `transform` was never called; `cfg` gives the defaults

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        with _one_thread():
            return self.x.apply_tfms(self.x.raw(i), self.y.get(i), self.y, self.tfms, self.cfg)

    def __repr__(self) -> str:
        return f"LabelList ({len(self)} items)\nx: {type(self.x).__name__}\ny: {self.y!r}\nPath: {self.x.path}"

    @property
    def cfg(self) -> TransformConfig:
        """The transform options in force: those `transform` set (`tfm_cfg`), else the defaults."""
        return self.tfm_cfg if self.tfm_cfg is not None else TransformConfig()

    @property
    def classes(self):
        return getattr(self.y, "classes", None)

    @property
    def items(self) -> list:
        """The raw items (e.g. file paths) of this set, in order: `learn.data.test_ds.items` names the test files."""
        return self.x.items


class PreparedItems(Dataset):
    """A LabelList's items as `x.prepare_tfms` leaves them, for DataLoaders that finish the transforms
    per batch (`x.batch_tfms`, applied on the device by `DataBunch.process_batch`)."""

    def __init__(self, ds: LabelList):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        ds = self.ds
        with _one_thread():
            return ds.x.prepare_tfms(ds.x.raw(i), ds.y.get(i), ds.y, ds.tfms, ds.cfg)


class LabelLists:
    """Labelled training, validation (and optional test) sets, before they become a DataBunch."""

    def __init__(self, path: Path, train: LabelList, valid: LabelList):
        self.path, self.train, self.valid, self.test = path, train, valid, None

    def __repr__(self) -> str:
        return f"LabelLists;\n\nTrain: {self.train!r};\n\nValid: {self.valid!r};\n\nTest: {self.test!r}"

    def datasets(self) -> "LabelLists":
        """The lesson video's `.datasets()` step: nothing to do any more (the labelled lists are the datasets);
        kept working with a one-line note so the video's chain runs."""
        warnings.warn("`.datasets()` is the lesson video's step; it is no longer needed: go on with "
                      "`.transform(...)` and `.databunch(...)`.", stacklevel=2)
        return self

    def transform(self, tfms=(None, None), **kwargs) -> "LabelLists":
        """Attach (train, valid) transforms and options such as `size=`, `tfm_y=`; applied lazily per item.
        The options (`TransformConfig`'s fields but `train`) become each set's `tfm_cfg`; unknown ones are refused.

        Item 0 of each set is transformed at once so a bad setting fails here, not mid-training."""
        tfms = tfms if tfms is not None else (None, None)
        valid_cfg = TransformConfig.from_options(kwargs, train=False)
        res = copy.copy(self)
        res.train, res.valid = copy.copy(self.train), copy.copy(self.valid)
        res.train.tfms, res.valid.tfms = tfms[0], tfms[1]
        res.train.tfm_cfg, res.valid.tfm_cfg = dataclasses.replace(valid_cfg, train=True), valid_cfg
        if self.test is not None:
            res.test = copy.copy(self.test)
            res.test.tfms, res.test.tfm_cfg = tfms[1], valid_cfg
        for ds in (res.train, res.valid, res.test):
            if ds is not None:
                ds.x.check_batchable(ds.cfg)
        for ds in (res.train, res.valid):
            if len(ds):
                ds[0]
        return res

    def check_for_training(self) -> None:
        """Raise one error listing every item that would stop training (see `ItemList.check_for_training`),
        grouped by kind (missing files, unreadable files, masks, points, boxes, labels) when there are several."""
        sets = [ds for ds in (self.train, self.valid, self.test) if ds is not None]
        problems = [p for ds in sets for p in ds.x.check_for_training(ds.y, ds.cfg)]
        if problems:
            n = sum(len(ds) for ds in sets)
            raise ValueError(f"{len(problems)} of {n} items cannot be used for training:\n{problem_list(problems)}\n"
                             "Fix or remove them (or drop their rows from the CSV), then build the DataBunch again. "
                             "Found before training; `databunch(check=False)` skips this check.")

    def add_test(self, items: Iterable) -> "LabelLists":
        """Add unlabelled test items; they get the validation transforms."""
        x = self.train.x.new(items)
        res = copy.copy(self)
        res.test = LabelList(x, EmptyLabelList.like_targets(self.train.y, len(x)))
        res.test.tfms, res.test.tfm_cfg = self.valid.tfms, self.valid.tfm_cfg
        return res

    def add_test_folder(self, test_folder: str = "test") -> "LabelLists":
        """Add the files in `path/test_folder` (of the training items' kind) as the unlabelled test set."""
        return self.add_test(type(self.train.x).from_folder(self.path / test_folder).items)

    def databunch(self, bs: int = 64, val_bs: int | None = None, num_workers: int | None = None,
                  device: torch.device | None = None, check: bool = True, **kwargs) -> "DataBunch":
        """Wrap the sets in DataLoaders: training shuffled (last short batch dropped), validation in order.

        Images are augmented a batch at a time on `device` (`batch_tfms=False`: one item at a time in the loader).
        `check` first goes through every item as training will (for images: each file decoded once, which also
        fills the decode cache, masks and points checked) and lists every problem at once; `check=False` skips it."""
        for ds in (self.train, self.valid, self.test):
            if ds is not None and ds.tfm_cfg is None:  # never transformed: `transform` did not check it
                ds.x.check_batchable()
        decide_auto_cache((self.train, self.valid, self.test))  # before the check, which then fills the cache
        if check:
            self.check_for_training()
        return DataBunch(self.train, self.valid, self.test, bs=bs, val_bs=val_bs, num_workers=num_workers,
                         device=device, path=self.path, **kwargs)


# --- targets ---------------------------------------------------------------------------
class TargetList(ItemList):
    """Encoded targets for one set, plus what the label type implies: loss, activation, decoding."""

    def labels_for_valid(self, labels: Sequence, valid_x: ItemList):
        """Targets for the validation labels, with the training classes; returns (targets, kept indices or None)."""
        return self.from_labels(labels, valid_x), None

    def loss_func(self) -> nn.Module:
        """The loss the lesson uses for this label type."""
        raise NotImplementedError

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """Turn model outputs into predictions (probabilities, or values)."""
        return out

    def decode(self, pred: torch.Tensor, **kwargs):
        """A prediction (after the activation) as a readable label."""
        return pred

    def label_str(self, y: torch.Tensor) -> str:
        """A target as a short string for plot titles."""
        return str(self.decode(y))

    def state(self) -> dict:
        """What load_learner needs to decode predictions without the data (plain values only)."""
        return {}

    def predict_result(self, probs: torch.Tensor, **kwargs):
        """What `Learner.predict` returns: (decoded label, target-like tensor, probabilities)."""
        return self.decode(probs, **kwargs), probs, probs

    @classmethod
    def from_state(cls, state: dict, path: Path) -> "TargetList":
        """An empty target list that decodes like the exported one."""
        return cls([], path=path, **state)

    is_regression = False  # True for continuous targets (floats, points): the model's head starts at zero

    def transform_target(self, y, plan):
        """Move the target with an image transform (`tfm_y=True`): masks and points override this."""
        return y

    def prepare_target(self, y, plan):
        """The per-item part of `transform_target` when batches are transformed as a whole (all of it, unless a
        subclass leaves work for `batch_target`)."""
        return self.transform_target(y, plan)

    def batch_target(self, y, resample: Callable):
        """Finish moving a batch of targets; `resample(t, mode)` samples a (B, C, h, w) batch like the images."""
        return y

    def check_target(self, img, y, tfm_y: bool) -> None:
        """Refuse a target that cannot follow its image `img` (raise ValueError naming it); points, masks and
        boxes override this, class labels follow nothing."""

    def draw_plan(self, y, draw: Callable, name: str):
        """The random transform of the image `name` whose target `y` moves with it: `draw()` once, unless the
        target needs another draw (points that would leave the image)."""
        return draw()

    @property
    def c(self) -> int:
        """Number of model outputs."""
        return 1


class CategoryList(TargetList):
    """One class per item: targets are class indices, the loss is cross entropy."""

    def __init__(self, items, classes: Sequence, path="."):
        super().__init__(items, path)
        # plain Python values (np.loadtxt gives np.str_), so an export stays loadable with weights_only
        self.classes = [c.item() if isinstance(c, np.generic) else c for c in classes]

    @classmethod
    def from_labels(cls, labels: Sequence, x: ItemList, classes: Sequence | None = None, **kwargs) -> "CategoryList":
        labels = _one_form(labels, warn=True)
        classes = _one_form(classes) if classes is not None else sorted(set(labels))
        if len(classes) < 2:
            warnings.warn(f"The training labels hold only one class ({classes}): a classifier needs at least two "
                          "to learn anything, and it will score a meaningless accuracy of 1.0. Check the labelling "
                          "(from_folder + label_from_folder expects one sub-folder per class).", stacklevel=4)
        _check_known(labels, classes, x)
        idx = {c: i for i, c in enumerate(classes)}
        return cls([idx[o] for o in labels], classes, x.path)

    def labels_for_valid(self, labels, valid_x):
        idx = {c: i for i, c in enumerate(self.classes)}
        labels = _one_form(labels)
        keep = [i for i, o in enumerate(labels) if o in idx]
        if len(keep) == len(labels):
            return self.new([idx[o] for o in labels]), None
        unknown = sorted({str(o) for o in labels if o not in idx})
        warnings.warn(f"{len(labels) - len(keep)} validation items have labels the training set lacks "
                      f"({', '.join(unknown[:5])}); they were removed from the validation set.")
        return self.new([idx[labels[i]] for i in keep]), keep

    def get(self, i):
        return torch.tensor(self.items[i], dtype=torch.long)

    def loss_func(self):
        return nn.CrossEntropyLoss()

    def activation(self, out):
        return out.softmax(dim=-1)

    def decode(self, pred, **kwargs):
        """The class name: of the index if `pred` is a target, of the arg-max if it holds probabilities."""
        return self.classes[int(pred.argmax() if pred.dim() else pred)]

    def state(self):
        return {"classes": self.classes}

    def predict_result(self, probs, **kwargs):
        idx = probs.argmax()
        return self.decode(idx), idx, probs

    def __repr__(self):
        return f"CategoryList ({len(self)} items, {len(self.classes)} classes)"

    @property
    def c(self):
        return len(self.classes)


class MultiCategoryList(CategoryList):
    """Several classes per item (Planet's tags): targets are multi-hot, the loss is BCE with logits.

    `thresh` (one value, or one per class) decides which tags `predict` reports; it is exported."""

    def __init__(self, items, classes: Sequence, path=".", thresh: float | Sequence[float] = 0.5):
        super().__init__(items, classes, path)
        self.thresh = thresh

    @classmethod
    def from_labels(cls, labels, x, classes=None, **kwargs):
        raw = [_as_list(o) for o in labels]
        _one_form([t for o in raw for t in o], warn=True)
        labels = [_one_form(o) for o in raw]
        classes = _one_form(classes) if classes is not None else sorted({t for o in labels for t in o})
        flat = [t for o in labels for t in o]
        _check_known(flat, classes, x, rows=[i for i, o in enumerate(labels) for _ in o])
        idx = {c: i for i, c in enumerate(classes)}
        return cls([[idx[t] for t in o] for o in labels], classes, x.path)

    def labels_for_valid(self, labels, valid_x):
        idx = {c: i for i, c in enumerate(self.classes)}
        labels = [_one_form(_as_list(o)) for o in labels]
        unknown = sorted({t for o in labels for t in o if t not in idx})
        if unknown:
            warnings.warn(f"Validation labels the training set lacks were dropped: {', '.join(unknown[:5])}.")
        return self.new([[idx[t] for t in o if t in idx] for o in labels]), None

    def get(self, i):
        y = torch.zeros(len(self.classes))
        y[self.items[i]] = 1.0
        return y

    def loss_func(self):
        return nn.BCEWithLogitsLoss()

    def activation(self, out):
        return out.sigmoid()

    def decode(self, pred, thresh=None, **kwargs):
        """The tags whose probability (or target) is above `thresh` (default `self.thresh`)."""
        thresh = torch.as_tensor(self.thresh if thresh is None else thresh, dtype=pred.dtype)
        return [self.classes[i] for i in torch.nonzero(pred > thresh).flatten().tolist()]

    def label_str(self, y):
        return ";".join(self.decode(y))

    def predict_result(self, probs, thresh=None, **kwargs):
        thresh = torch.as_tensor(self.thresh if thresh is None else thresh, dtype=probs.dtype)
        return self.decode(probs, thresh=thresh), (probs > thresh).float(), probs

    def state(self):
        thresh = self.thresh.tolist() if isinstance(self.thresh, torch.Tensor) else self.thresh
        return {"classes": self.classes, "thresh": thresh}

    def __repr__(self):
        return f"MultiCategoryList ({len(self)} items, {len(self.classes)} classes)"


class FloatList(TargetList):
    """Regression targets (one or more floats per item); the loss is mean squared error."""

    is_regression = True

    @classmethod
    def from_labels(cls, labels, x, **kwargs):
        return cls([np.asarray(o, dtype=np.float32) for o in labels], x.path)

    def get(self, i):
        return torch.as_tensor(self.items[i], dtype=torch.float32)

    def loss_func(self):
        return nn.MSELoss()

    def label_str(self, y):
        return ", ".join(f"{v:.3g}" for v in y.flatten().tolist())

    @property
    def c(self):
        return int(np.asarray(self.items[0]).size) if self.items else 1


class EmptyLabelList(TargetList):
    """Targets of an unlabelled test set: dummy zeros, decoded like the training labels."""

    def __init__(self, items, path=".", like: TargetList | None = None):
        super().__init__(items, path)
        self.like = like

    @classmethod
    def like_targets(cls, y: TargetList, n: int) -> "EmptyLabelList":
        return cls([None] * n, y.path, like=y)

    def get(self, i):
        return torch.tensor(0)

    def decode(self, pred, **kwargs):
        return self.like.decode(pred, **kwargs)

    def activation(self, out):
        return self.like.activation(out)

    @property
    def classes(self):
        return getattr(self.like, "classes", None)


def _subclass(base: type, name: str) -> type:
    """The subclass of `base` called `name` (only our own classes can be named by an exported file)."""
    todo = [base]
    while todo:
        c = todo.pop()
        if c.__name__ == name:
            return c
        todo.extend(c.__subclasses__())
    raise ValueError(f"Unknown data type {name!r} in the exported file; import the module that defines it first.")


def _cfg_from_state(options: dict, train: bool) -> TransformConfig:
    """The exported `transform` options (`TransformConfig.options`) as one set's config. Older exports stored the
    same plain dict, holding only the options `transform` was given: absent ones take their defaults."""
    options = {k: v for k, v in options.items() if k != "train"}
    unknown = [k for k in options if k not in TransformConfig.option_names()]
    if unknown:
        raise ValueError(f"The exported file's transform options hold {', '.join(map(repr, unknown))}, which this "
                         "version of course_utils does not know: it was written by another version. Export the "
                         "model again with this version (learn.export()).")
    return TransformConfig.from_options(options, train=train)


def _one_form(labels: Iterable, warn: bool = False) -> list:
    """Text labels in one Unicode form (NFC): "café" typed on Linux is one character "é", a folder made on macOS
    spells it "e" + accent; the two look the same and must be one class. With `warn`, say so when two spellings
    of one name were merged."""
    labels = list(labels)
    res = [unicodedata.normalize("NFC", o) if isinstance(o, str) else o for o in labels]
    given = {o for o in labels if isinstance(o, str)}
    if warn and len(given) > len({unicodedata.normalize("NFC", o) for o in given}):
        by_form: dict[str, set] = {}
        for o in given:
            by_form.setdefault(unicodedata.normalize("NFC", o), set()).add(o)
        merged = sorted(k for k, v in by_form.items() if len(v) > 1)
        warnings.warn(f"The labels spell {len(merged)} class name(s) in two Unicode forms that look the same "
                      f"({', '.join(map(repr, merged[:5]))}: one written as a single accented letter, one as a "
                      "letter plus an accent, as macOS writes file names); each was read as one class.",
                      stacklevel=5)
    return res


def _as_list(o) -> list:
    if o is None or (isinstance(o, float) and np.isnan(o)):
        return []
    return list(o) if isinstance(o, (list, tuple, set)) else [o]


def _check_known(labels: Sequence, classes: Sequence, x: ItemList, rows: Sequence[int] | None = None) -> None:
    """Fail naming the first label that is not in the given classes, with how many such labels there are."""
    known = set(classes)
    bad = [k for k, o in enumerate(labels) if o not in known]
    if bad:
        k = bad[0]
        row = rows[k] if rows is not None else k
        others = f" ({len(bad)} labels in all are not, e.g. {sorted({str(labels[j]) for j in bad})[:5]})" \
            if len(bad) > 1 else ""
        raise ValueError(f"Label {labels[k]!r} of training item {x.item_name(x.items[row])} is not in the classes "
                         f"you gave ({len(known)} classes: {list(classes)[:8]}...){others}. "
                         "Add it to `classes` or fix the label.")


def _warn_other_separators(tags: list[list[str]], col: str, label_delim: str, x: ItemList) -> None:
    """Tags holding ',' or ';' when another delimiter splits them were most likely joined by that character."""
    for sep in (",", ";"):
        if sep == label_delim:
            continue
        hit = next(((i, t) for i, row in enumerate(tags) for t in row if sep in t), None)
        if hit is not None:
            i, tag = hit
            warnings.warn(f"Tags in column {col!r} contain {sep!r}, e.g. {tag!r} (the row of "
                          f"{x.item_name(x.items[i])}), "
                          f"but label_delim={label_delim!r}, so each such tag is read as one class. If your tags "
                          f"are separated by {sep!r}, pass label_delim={sep!r}.", stacklevel=4)


def _warn_untagged(col: str, sets: list[tuple[ItemList, list[list[str]]]]) -> None:
    """Rows without tags are legitimate in multi-label data (nothing applies), but more often a slip: say so."""
    untagged = [x.item_name(x.items[i]) for x, tags in sets for i, t in enumerate(tags) if not t]
    if untagged:
        shown = ", ".join(map(str, untagged[:5])) + (", ..." if len(untagged) > 5 else "")
        warnings.warn(f"{len(untagged)} row(s) of the table have no tags in column {col!r} (the rows of {shown}): "
                      "they are trained as 'no tag applies' (a target of all zeros). If those rows should not be "
                      "there, delete them from the CSV, or read it with pandas and pass "
                      f"df.dropna(subset=[{col!r}]) to {type(sets[0][0]).__name__}.from_df.", stacklevel=3)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _single_labels(vals: list, col: str, x: ItemList) -> list:
    """One label per row of column `col`, stray spaces stripped; a row without one is an error naming its item."""
    res = [v.strip() if isinstance(v, str) else v for v in vals]
    bad = [i for i, v in enumerate(res) if _missing(v) or v == ""]
    if bad:
        raise ValueError(f"{len(bad)} row(s) have no label in column {col!r}, e.g. the row of "
                         f"{x.item_name(x.items[bad[0]])}. Fill in their labels or drop those rows from the table.")
    return res


def _pick_label_cls(labels: Sequence) -> type:
    """The label type from the first label: float -> regression, collection -> multi-label, else one class."""
    first = next((o for o in labels if o is not None), None)
    if isinstance(first, (float, np.floating)) or (isinstance(first, np.ndarray) and first.dtype.kind == "f"):
        return FloatList
    if isinstance(first, torch.Tensor) and first.is_floating_point():
        return FloatList
    if isinstance(first, (list, tuple, set)):
        return MultiCategoryList
    return CategoryList


# --- DataBunch ---------------------------------------------------------------------------
class Normalize:
    """Per-channel normalisation of a batch (channels on dim 1), with its inverse for display."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.device) + self.mean.to(x.device)

    def state(self) -> dict:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}


def _to_device(y, device: torch.device):
    """A target batch on `device`: a tensor, or a tuple of them (bounding boxes: (boxes, class ids))."""
    if isinstance(y, (tuple, list)):
        return type(y)(_to_device(t, device) for t in y)
    return y.to(device, non_blocking=True)


def decide_auto_cache(sets) -> None:
    """For the sets of one DataBunch whose `transform` was not told `cache=`: let their item list decide whether
    to cache the decoded items (images: if they fit the memory budget, vision/cache.py), and print its one line.
    Sets already decided at this size (an earlier DataBunch from the same split) keep their choice, unannounced."""
    pending, seen = [], set()
    for ds in sets:
        if (ds is None or ds.tfm_cfg is None or ds.tfm_cfg.cache is not None or not len(ds)
                or not hasattr(ds.x, "auto_cache") or ds.x.auto_cache(ds.cfg) is not None or id(ds.x) in seen):
            continue
        seen.add(id(ds.x))
        pending.append(ds)
    if pending:
        print(type(pending[0].x).decide_auto_cache([(ds.x, ds.cfg) for ds in pending]), flush=True)


class _AugmentingCollate:
    """A DataLoader worker's collate that also finishes the batch's transforms (`x.batch_tfms`), so on a CPU the
    workers resample whole batches while the main process trains, instead of the main process doing it."""

    def __init__(self, ds: LabelList, collate_fn: Callable | None):
        self.ds, self.collate_fn = ds, collate_fn or default_collate

    def __call__(self, items):
        x, y = self.collate_fn(items)
        return self.ds.x.batch_tfms(x, y, self.ds.y)


class DeviceDataLoader:
    """A DataLoader whose batches arrive on the device, transformed and normalised: iterate it for (x, y)."""

    def __init__(self, dl: DataLoader, data: "DataBunch", dataset: LabelList | None = None):
        self.dl, self.data = dl, data
        self._dataset = dataset if dataset is not None else dl.dataset

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self):
        for x, y in self.dl:
            yield self.data.process_batch(x, y, self._dataset)

    @property
    def dataset(self) -> LabelList:
        return self._dataset


class DataBunch:
    """Training, validation (and test) DataLoaders plus what the model needs to know about the data."""

    def __init__(self, train_ds: LabelList, valid_ds: LabelList, test_ds: LabelList | None = None, bs: int = 64,
                 val_bs: int | None = None, num_workers: int | None = None, device: torch.device | None = None,
                 path: str | Path = ".", batch_tfms: bool = True, collate_fn: Callable | None = None):
        if 0 < len(train_ds) < bs:
            raise ValueError(f"The training set has {len(train_ds)} items, fewer than one batch (bs={bs}); "
                             "lower `bs` so that at least one full batch fits.")
        self.train_ds, self.valid_ds, self.test_ds = train_ds, valid_ds, test_ds
        decide_auto_cache((train_ds, valid_ds, test_ds))  # LabelLists.databunch did, unless made directly
        self.bs, self.val_bs = bs, val_bs or bs
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.device = device or default_device()
        self.path = Path(path)
        self.batch_tfms = batch_tfms
        self.collate_fn = collate_fn or getattr(train_ds.y, "collate_fn", None)  # boxes pad; others stack
        self.norm: Normalize | None = None
        self.train_dl = self._loader(train_ds, bs, shuffle=True)
        self.valid_dl = self._loader(valid_ds, self.val_bs, shuffle=False)
        self.test_dl = self._loader(test_ds, self.val_bs, shuffle=False) if test_ds is not None else None

    def augments_in_workers(self) -> bool:
        """Whether whole batches are augmented in the DataLoader workers (CPU training with workers) rather than
        by `process_batch` on the device (a GPU, or no workers)."""
        return self.batch_tfms and self.num_workers > 0 and self.device.type == "cpu"

    def _loader(self, ds: LabelList, bs: int, shuffle: bool) -> DeviceDataLoader:
        shuffle = shuffle and len(ds) > 0
        batched = self.batch_tfms and hasattr(ds.x, "prepare_tfms")
        collate = _AugmentingCollate(ds, self.collate_fn) if batched and self.augments_in_workers() else self.collate_fn
        dl = DataLoader(PreparedItems(ds) if batched else ds, batch_size=bs, shuffle=shuffle, drop_last=shuffle,
                        num_workers=self.num_workers, collate_fn=collate,
                        persistent_workers=self.num_workers > 0 and len(ds) > 0,
                        pin_memory=self.device.type == "cuda")
        return DeviceDataLoader(dl, self, ds)

    def __repr__(self) -> str:
        return (f"DataBunch;\n\nTrain: {self.train_ds!r};\n\nValid: {self.valid_ds!r};\n\n"
                f"Test: {self.test_ds!r}")

    def process_batch(self, x, y: torch.Tensor, ds: LabelList | None = None):
        """Move a collated batch to the device, finish its transforms there (items prepared by
        `prepare_tfms` arrive as a dict) and normalise x."""
        y = _to_device(y, self.device)
        if isinstance(x, dict):
            ds = ds or self.train_ds
            x = {k: v.to(self.device, non_blocking=True) for k, v in x.items()}
            x, y = ds.x.batch_tfms(x, y, ds.y)
        else:
            x = x.to(self.device, non_blocking=True)
        return (self.norm.encode(x) if self.norm is not None else x), y

    def normalize(self, stats: tuple | None = None) -> "DataBunch":
        """Normalise inputs per channel with `stats` = (mean, std), or with one training batch's statistics."""
        if self.norm is not None:
            raise RuntimeError("This DataBunch is already normalised; call normalize() once.")
        if stats is None:
            x, _ = next(iter(self.train_dl))
            dims = [0] + list(range(2, x.dim()))
            stats = (x.mean(dims).tolist(), x.std(dims).tolist())
        self.norm = Normalize(*stats)
        return self

    def dl(self, ds_type: str = "valid") -> DeviceDataLoader:
        """The loader for 'train', 'valid' or 'test' (or `DatasetType.Train`/`.Valid`/`.Test`)."""
        ds_type = str(ds_type)
        if ds_type not in ("train", "valid", "test"):
            raise ValueError(f"ds_type must be 'train', 'valid' or 'test', not {ds_type!r}.")
        dl = getattr(self, f"{ds_type}_dl")
        if dl is None:
            raise ValueError("This DataBunch has no test set; add one with `.add_test(items)` before `.databunch()`.")
        return dl

    def add_test(self, items: Iterable) -> "DataBunch":
        """Add (or replace) the unlabelled test set after the fact: `items` (paths, or an ItemList) get the
        validation transforms; `learn.get_preds(ds_type=DatasetType.Test)` then predicts them in order."""
        items = items.items if isinstance(items, ItemList) else list(items)
        x = self.train_ds.x.new(items)
        ds = LabelList(x, EmptyLabelList.like_targets(self.train_ds.y, len(x)))
        ds.tfms, ds.tfm_cfg = self.valid_ds.tfms, dataclasses.replace(self.valid_ds.cfg, tfm_y=False)
        self.test_ds, self.test_dl = ds, self._loader(ds, self.val_bs, shuffle=False)
        return self

    def one_batch(self, ds_type: str = "train", denorm: bool = False):
        """One (x, y) batch; `denorm=True` undoes the normalisation for display."""
        x, y = next(iter(self.dl(ds_type)))
        return (self.denorm(x) if denorm else x), y

    def denorm(self, x: torch.Tensor) -> torch.Tensor:
        """Undo `normalize` on a batch of inputs."""
        return self.norm.decode(x) if self.norm is not None else x

    def show_batch(self, rows: int = 3, ds_type: str = "train", **kwargs) -> None:
        """Show a grid of inputs with their labels (how depends on the item type)."""
        x, y = self.one_batch(ds_type, denorm=True)
        self.train_ds.x.show_xys(x.cpu(), _to_device(y, torch.device("cpu")), self.train_ds.y, rows=rows, **kwargs)

    def one_item(self, item) -> torch.Tensor:
        """One raw item (e.g. an image path) as a normalised batch of one, with the validation transforms."""
        ds = self.valid_ds
        x, _ = ds.x.apply_tfms(ds.x.open_item(item), None, ds.y, ds.tfms, dataclasses.replace(ds.cfg, tfm_y=False))
        return self.process_batch(x[None], torch.zeros(1))[0]

    def item_context(self, item) -> dict:
        """How the validation transforms treat one raw item, to decode its prediction (`ItemList.item_context`)."""
        ds = self.valid_ds
        return ds.x.item_context(item, ds.tfms, ds.cfg)

    def items_dl(self, items: Iterable) -> DeviceDataLoader:
        """A loader over new, unlabelled items (e.g. a test folder), in order, with the validation transforms."""
        x = self.train_ds.x.new(items)
        ds = LabelList(x, EmptyLabelList.like_targets(self.train_ds.y, len(x)))
        ds.tfms, ds.tfm_cfg = self.valid_ds.tfms, dataclasses.replace(self.valid_ds.cfg, tfm_y=False)
        return self._loader(ds, self.val_bs, shuffle=False)

    def ordered_dl(self, ds_type: str = "valid", augment: bool = False) -> DeviceDataLoader:
        """A loader over a whole set, in order (nothing dropped); `augment` uses the training augmentations (TTA)."""
        ds = self.dl(ds_type).dataset
        if augment:
            ds = copy.copy(ds)
            ds.tfms, ds.tfm_cfg = self.train_ds.tfms, dataclasses.replace(ds.cfg, train=True)
        return self._loader(ds, self.val_bs, shuffle=False)

    def export_state(self) -> dict:
        """Plain values describing how to turn a raw item into a model input and decode the output."""
        tfms = self.valid_ds.tfms, self.train_ds.tfms
        return {"bunch_cls": type(self).__name__,
                "x_cls": type(self.train_ds.x).__name__, "y_cls": type(self.train_ds.y).__name__,
                "y_state": self.train_ds.y.state(),
                "tfms": [None if t is None else t.state() for t in tfms],
                "tfm_kwargs": self.valid_ds.cfg.options(),  # the key's name from before it was a TransformConfig
                "norm": None if self.norm is None else self.norm.state()}

    @classmethod
    def from_state(cls, state: dict, path: Path, device: torch.device | None = None) -> "DataBunch":
        """An empty DataBunch (inference only) rebuilt from `export_state`, of the exported DataBunch's type."""
        own = _subclass(DataBunch, state.get("bunch_cls", cls.__name__))
        if own is not cls:  # e.g. a text classifier's: it rebuilds its vocabulary and tokenizer too
            return own.from_state(state, path, device)
        x_cls, y_cls = _subclass(ItemList, state["x_cls"]), _subclass(TargetList, state["y_cls"])
        y = y_cls.from_state(state["y_state"], path)
        sets = []
        for train, tfm in zip((False, True), state["tfms"]):
            ds = LabelList(x_cls([], path), y)
            ds.tfms = None if tfm is None else x_cls.tfms_from_state(tfm)
            ds.tfm_cfg = _cfg_from_state(state["tfm_kwargs"], train)
            sets.append(ds)
        data = cls(sets[1], sets[0], bs=1, num_workers=0, device=device, path=path)
        if state["norm"] is not None:
            data.norm = Normalize(state["norm"]["mean"], state["norm"]["std"])
        return data

    # --- save / load_data: the processed data, to skip the slow steps next time ------------------------
    def saved_settings(self) -> dict:
        """The loaders' settings `save` keeps (`load_data`'s `bs=` and `val_bs=` override them)."""
        return {"bs": self.bs, "val_bs": None if self.val_bs == self.bs else self.val_bs, "batch_tfms": self.batch_tfms}

    def save(self, fname: str | Path = "data_save.pkl") -> Path:
        """Save the processed data (items, labels, split, the texts' vocabulary and ids, transforms, normalisation,
        batch settings) to `path/fname`, written atomically; `load_data(path, fname)` reads it back. Tensors and
        plain values only, so loading it runs no code. Returns the file."""
        f = self.path / fname
        atomic_save(self.save_state(), f)
        return f

    def save_state(self) -> dict:
        """What `save` writes: plain values and tensors (see `load_data`)."""
        def one(ds: LabelList | None, name: str) -> dict | None:
            if ds is None:
                return None
            return {"items": _encode(ds.x.items, self.path, name), "x_state": ds.x.saved_state(),
                    "labels": None if name == "test" else _encode(ds.y.items, self.path, name),
                    "tfm_kwargs": None if ds.tfm_cfg is None else ds.tfm_cfg.options()}
        tfms = self.train_ds.tfms, self.valid_ds.tfms
        return {"format": SAVE_FORMAT, "version": SAVE_VERSION, "bunch_cls": type(self).__name__,
                "x_cls": type(self.train_ds.x).__name__, "y_cls": type(self.train_ds.y).__name__,
                "y_state": self.train_ds.y.state(), "tfms": [None if t is None else t.state() for t in tfms],
                "norm": None if self.norm is None else self.norm.state(), "settings": self.saved_settings(),
                "sets": {"train": one(self.train_ds, "train"), "valid": one(self.valid_ds, "valid"),
                         "test": one(self.test_ds, "test")}}

    @classmethod
    def from_saved(cls, state: dict, path: Path, num_workers: int | None = None, device: torch.device | None = None,
                   **settings) -> "DataBunch":
        """The DataBunch `save_state` describes, of the saved DataBunch's type, with its loaders built again
        (`settings`, e.g. `bs=`, override the saved ones). Raises ValueError/KeyError/TypeError if `state` is not
        what `save` writes; `load_data` turns those into one message naming the file."""
        if not isinstance(state, dict) or state.get("format") != SAVE_FORMAT:
            raise ValueError("it was not written by DataBunch.save (a model's weights are read with learn.load, "
                             "an export with load_learner)")
        if state.get("version") != SAVE_VERSION:
            raise ValueError(f"it was written by another version of course_utils (format {state.get('version')!r}, "
                             f"this one reads {SAVE_VERSION})")
        bunch_cls = _subclass(DataBunch, state["bunch_cls"])
        x_cls, y_cls = _subclass(ItemList, state["x_cls"]), _subclass(TargetList, state["y_cls"])
        sets: dict[str, LabelList | None] = {}
        for name in ("train", "valid", "test"):
            s = state["sets"][name]
            if s is None:
                if name != "test":
                    raise ValueError(f"it has no {name}ing set")
                sets[name] = None
                continue
            x = x_cls.from_saved(_decode(s["items"], path), path, s["x_state"])
            if name == "test":
                y = EmptyLabelList.like_targets(sets["train"].y, len(x))
            else:
                y = y_cls.from_state(state["y_state"], path)
                y.items = _decode(s["labels"], path)
                _check_saved_labels(y, len(x), name)
            ds = LabelList(x, y)
            tfm = state["tfms"][0 if name == "train" else 1]
            ds.tfms = None if tfm is None else x_cls.tfms_from_state(tfm)
            ds.tfm_cfg = None if s["tfm_kwargs"] is None else _cfg_from_state(s["tfm_kwargs"], name == "train")
            sets[name] = ds
        saved = dict(state["settings"])
        if settings.get("bs") is not None and settings.get("val_bs") is None:
            saved["val_bs"] = None  # a new bs: validation follows it, unless the saved val_bs was set apart
        if not isinstance(saved.get("bs"), int) or not isinstance(saved.get("val_bs"), (int, type(None))):
            raise ValueError("its batch settings are not plain numbers")
        merged = {**saved, **{k: v for k, v in settings.items() if v is not None}}
        data = bunch_cls(sets["train"], sets["valid"], sets["test"], num_workers=num_workers, device=device,
                         path=path, **merged)
        if state["norm"] is not None:
            data.norm = Normalize(state["norm"]["mean"], state["norm"]["std"])
        return data

    @property
    def classes(self):
        return self.train_ds.classes

    @property
    def c(self) -> int:
        return self.train_ds.y.c

    @property
    def loss_func(self) -> nn.Module:
        return self.train_ds.y.loss_func()


# --- load_data: a DataBunch saved with `data.save()` ---------------------------------------------------
SAVE_FORMAT, SAVE_VERSION = "course_utils.DataBunch", 1


def load_data(path: str | Path, fname: str | Path = "data_save.pkl", bs: int | None = None, val_bs: int | None = None,
              num_workers: int | None = None, device: torch.device | str | None = None, **kwargs) -> DataBunch:
    """The DataBunch that `data.save(fname)` wrote to `path/fname`, of the type saved (e.g. a TextLMDataBunch),
    equal to it: the same items, labels, split, vocabulary and ids, transforms and normalisation, with no
    tokenizing or labelling done again. `bs`, `val_bs` (default: the saved ones), `num_workers`, `device` and
    the DataBunch's other options (e.g. `bptt=`) set up the new loaders.

    The file is read with tensors and plain values only (never code); one that was not written by `save`,
    or was changed since, is refused with a ValueError naming it."""
    f = Path(path) / fname
    if not f.is_file():
        raise FileNotFoundError(f"No saved data at {f}. Build the DataBunch, then save it with "
                                f"`data.save({str(fname)!r})` (it writes to the DataBunch's own path).")
    state = safe_load(f)
    try:
        return DataBunch.from_saved(state, Path(path), num_workers=num_workers,
                                    device=torch.device(device) if isinstance(device, str) else device,
                                    bs=bs, val_bs=val_bs, **kwargs)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        if isinstance(e, TypeError) and "unexpected keyword" in str(e):
            raise
        why = f"{type(e).__name__}: {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"Cannot load {f} as a DataBunch: {why}. Nothing was run from it. Build the data again "
                         "and save it with data.save(), then load_data(path, fname).") from e


def _encode(items: list, path: Path, name: str):
    """A set's items (or labels) as plain values and tensors for `save`: paths relative to `path` where they can be,
    numpy arrays as tensors; anything else is refused, naming the set."""
    if items and all(isinstance(o, Path) for o in items):
        return {"paths": [_rel(o, path) for o in items]}
    return {"values": [_plain(o, path, name) for o in items]}


def _rel(p: Path, path: Path) -> str:
    try:
        return p.relative_to(path).as_posix()
    except ValueError:
        return str(p)


def _plain(o, path: Path, name: str):
    if o is None or isinstance(o, (bool, int, float, str, torch.Tensor)):
        return o
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return {"array": torch.from_numpy(np.ascontiguousarray(o))}
    if isinstance(o, Path):
        return {"path": _rel(o, path)}
    if isinstance(o, (list, tuple)):
        return {"list" if isinstance(o, list) else "tuple": [_plain(v, path, name) for v in o]}
    raise TypeError(f"DataBunch.save cannot store an item of type {type(o).__name__} (in the {name} set); "
                    "it stores paths, texts, numbers, lists and arrays.")


def _decode(enc: dict, path: Path) -> list:
    """The items `_encode` stored, paths made absolute again under `path`."""
    if set(enc) == {"paths"}:
        return [path / str(p) for p in enc["paths"]]
    if set(enc) != {"values"} or not isinstance(enc["values"], list):
        raise ValueError("its items are neither paths nor values")
    return [_unplain(v, path) for v in enc["values"]]


def _unplain(o, path: Path):
    if not isinstance(o, dict):
        if o is None or isinstance(o, (bool, int, float, str, torch.Tensor)):
            return o
        raise ValueError(f"it holds an item of type {type(o).__name__}")
    (kind, v), = o.items()
    if kind == "array":
        return v.numpy()
    if kind == "path":
        return path / str(v)
    if kind in ("list", "tuple"):
        vals = [_unplain(x, path) for x in v]
        return vals if kind == "list" else tuple(vals)
    raise ValueError(f"it holds an item of unknown kind {kind!r}")


def _check_saved_labels(y: "TargetList", n: int, name: str) -> None:
    """The labels must be one per item, and class indices must name one of the classes."""
    if len(y.items) != n:
        raise ValueError(f"its {name}ing set has {n} items but {len(y.items)} labels")
    if isinstance(y, CategoryList):
        c = len(y.classes)
        flat = [v for o in y.items for v in (o if isinstance(y, MultiCategoryList) else [o])]
        if any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < c for v in flat):
            raise ValueError(f"a label of its {name}ing set is not the index of one of its {c} classes")
