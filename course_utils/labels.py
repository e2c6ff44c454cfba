"""The targets of the data block chain: what the `label_from_...` steps turn labels into. A `TargetList` holds
one set's encoded targets and what the label type implies: the loss, the activation, how a prediction is decoded
and exported. `CategoryList` (one class per item), `MultiCategoryList` (tags), `FloatList` (regression) and
`EmptyLabelList` (an unlabelled test set); vision adds masks, points and boxes.
"""
from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .items import ItemList
from .metrics import accuracy, accuracy_thresh, fbeta

__all__ = ["CategoryList", "MultiCategoryList", "FloatList"]


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
    kind = None  # the task kind (see kinds.py) these targets make: None when the web app and finetune know none

    def default_metrics(self) -> list:
        """The lesson's metrics for this label type (none: the loss says enough)."""
        return []

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

    kind = "single-label"

    def default_metrics(self) -> list:
        """Accuracy."""
        return [accuracy]

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

    kind = "multi-label"

    def default_metrics(self) -> list:
        """Planet's: accuracy and F2 of the tags at threshold 0.2."""
        return [partial(accuracy_thresh, thresh=0.2), partial(fbeta, thresh=0.2)]

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
