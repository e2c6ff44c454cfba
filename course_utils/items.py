"""The first step of the data block chain: `ItemList`, a list of items (paths or texts, nothing decoded) and the
folder they are relative to: how it is made (from a folder, a table), how it is split into an `ItemLists`, and
`TransformConfig`, the options `transform` gives each set. Vision and text subclass `ItemList`; this module knows
nothing about images or words.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from .tables import column_name, read_csv

if TYPE_CHECKING:
    from .data_block import ItemLists
    from .labels import TargetList

__all__ = ["ItemList"]

# Names from the lesson video that were renamed; looking one up says what to call instead.
RENAMED = {
    "random_split_by_pct": "split_by_rand_pct",
    "no_split": "split_none",
    "label_from_csv": "label_from_df (after ImageList.from_csv)",
    "datasets": "transform(...).databunch(...)",
    "label_const": "label_for_lm() (a language model) or label_from_lists(...)",
    "split_by_valid_pct": "split_by_rand_pct",
}


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

    def raw(self, i: int, cfg: TransformConfig | None = None):
        """The item at index i as the transforms take it (images: opened lazily, decoded by `apply_tfms`);
        `cfg` is the transform settings it is for (images the decode cache holds are then not opened at all)."""
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
        from .labels import _pick_label_cls  # the targets subclass ItemList, so they import this module

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
        from .data_block import ItemLists  # the chain's next step (it imports this module)

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


def _warn_broken_links(broken: list[Path], path: Path) -> None:
    shown = ", ".join(f"{f.relative_to(path)} -> {os.readlink(f)}" for f in broken[:5])
    warnings.warn(f"{len(broken)} link(s) under {path} point to files that do not exist and were left out: {shown}"
                  f"{' ...' if len(broken) > 5 else ''}. Fix the links (or copy the files in), or delete them.",
                  stacklevel=3)


def _warn_empty_valid(why: str) -> None:
    warnings.warn(f"The validation set is empty ({why}). Training works, but valid_loss and the metrics will "
                  "show #na#, so you cannot tell whether the model generalises: check the split, or use "
                  "`.split_none()` if you mean to train on everything.", stacklevel=3)
