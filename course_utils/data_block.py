"""The data block chain of lesson 3, domain-free:

    ItemList (paths or texts, nothing decoded) -> split -> label -> transform -> DataBunch

Each step returns a new object, so a student can stop after any step and look at it.
Vision and text subclass `ItemList`; this module knows nothing about images or words.

This module holds the chain's middle steps: `ItemLists` (a split, waiting for labels, and the `label_from_...`
steps) and `LabelLists` (labelled sets: `transform`, `add_test`, `databunch`). The other steps have their own
modules, and every name is importable from here too: `items` (`ItemList`: making and splitting the list,
`TransformConfig`), `labels` (the targets: `CategoryList`, `MultiCategoryList`, `FloatList`, ...), `databunch`
(`LabelList`, `DataBunch`, `load_data`) and `problems` (the report listing every problem found before training).
"""
from __future__ import annotations

import copy
import dataclasses
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .databunch import (
    DataBunch,
    DatasetType,
    DeviceDataLoader,
    LabelList,
    Normalize,
    PreparedItems,  # noqa: F401  (kept importable)
    decide_auto_cache,
    load_data,
)
from .items import RENAMED, ItemList, TransformConfig
from .labels import CategoryList, EmptyLabelList, FloatList, MultiCategoryList, TargetList
from .problems import problem_kind, problem_list
from .tables import column_name

__all__ = ["DatasetType", "tensor", "TransformConfig", "ItemList", "ItemLists", "LabelList", "LabelLists", "DataBunch",
           "CategoryList", "MultiCategoryList", "FloatList", "EmptyLabelList", "Normalize", "load_data", "problem_list",
           "problem_kind", "TargetList", "DeviceDataLoader", "decide_auto_cache", "RENAMED"]


def tensor(x, *rest, **kwargs) -> torch.Tensor:
    """The lesson's `tensor(...)`: `tensor([c2, c1])` or `tensor(c2, c1)` -> a torch tensor (numpy arrays and
    tensors included; `kwargs` such as `dtype=` go to torch.as_tensor)."""
    if rest:
        x = (x, *rest)
    if isinstance(x, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in x):
        return torch.stack([torch.as_tensor(v, **kwargs) for v in x])
    return torch.as_tensor(np.asarray(x) if isinstance(x, (list, tuple)) else x, **kwargs)


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
