"""The last step of the data block chain: the datasets and their loaders. `LabelList` (a Dataset of (x, y), with
its transforms), `DataBunch` (training, validation and test DataLoaders whose batches arrive on the device,
transformed and normalised), and `data.save()` / `load_data`, which keep the processed data to skip the slow
steps next time.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, default_collate

from .config import default_device, default_num_workers
from .items import ItemList, TransformConfig
from .labels import CategoryList, EmptyLabelList, MultiCategoryList, TargetList
from .persist import atomic_save, safe_load

__all__ = ["DatasetType", "LabelList", "DataBunch", "load_data"]

class DatasetType(str, enum.Enum):
    """The lesson's names for the three sets (`learn.get_preds(ds_type=DatasetType.Test)`). Each one is equal to
    the plain string used here ('train', 'valid', 'test'), so either spelling works wherever a `ds_type` goes."""
    Train = "train"
    Valid = "valid"
    Test = "test"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


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
            return self.x.apply_tfms(self.x.raw(i, self.cfg), self.y.get(i), self.y, self.tfms, self.cfg)

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
            return ds.x.prepare_tfms(ds.x.raw(i, ds.cfg), ds.y.get(i), ds.y, ds.tfms, ds.cfg)


class Normalize:
    """Per-channel normalisation of a batch (channels on dim 1), with its inverse for display."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std per channel, as a new tensor."""
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def encode_(self, x: torch.Tensor) -> torch.Tensor:
        """`encode` in place: one pass over x and no new batch (a batch from the workers arrives in shared
        memory, and a new one would cost a page fault every 4 KB). Returns x."""
        return x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))

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
        # the uint8 pixels never leave this worker, so they are stacked in its own memory: the collate function
        # would put them in shared memory, which costs a page fault per 4 KB (3 ms of a batch of 64 at 128 px)
        pixels = torch.stack([x["pixels"] for x, _ in items])
        x, y = self.collate_fn([({k: v for k, v in x.items() if k != "pixels"}, y) for x, y in items])
        return self.ds.x.batch_tfms({**x, "pixels": pixels}, y, self.ds.y)


class DeviceDataLoader:
    """A DataLoader whose batches arrive on the device, transformed and normalised: iterate it for (x, y)."""

    def __init__(self, dl: DataLoader, data: "DataBunch", dataset: LabelList | None = None):
        self.dl, self.data = dl, data
        self._dataset = dataset if dataset is not None else dl.dataset

    def __len__(self) -> int:
        return len(self.dl)

    def __iter__(self):
        for x, y in self.dl:
            yield self.data.process_batch(x, y, self._dataset, fresh=True)

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

    def process_batch(self, x, y: torch.Tensor, ds: LabelList | None = None, fresh: bool = False):
        """Move a collated batch to the device, finish its transforms there (items prepared by
        `prepare_tfms` arrive as a dict) and normalise x. `fresh`: x is a batch no one else holds (straight from
        a loader), so it is normalised in place."""
        y = _to_device(y, self.device)
        if isinstance(x, dict):
            ds = ds or self.train_ds
            x = {k: v.to(self.device, non_blocking=True) for k, v in x.items()}
            x, y = ds.x.batch_tfms(x, y, ds.y)
        else:
            x = x.to(self.device, non_blocking=True)
        if self.norm is None:
            return x, y
        if not (fresh and x.is_floating_point()):
            return self.norm.encode(x), y
        if self.augments_in_workers():  # the workers have the cores: two threads here would wait on each other
            with _one_thread():
                return self.norm.encode_(x), y
        return self.norm.encode_(x), y

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
