"""The kinds of task the course's models do, one small class each, in one place: what the web app answers for
a prediction, how a user's correction is written into feedback.csv and read back by `finetune`, how `finetune`
scores a model, and what `train` and the web app need to know about the kind (its input, whether its targets
move with the image, whether corrections are collected).

`kind_of(learn_or_data)` is the one place that maps data to a kind: the label list's `kind` attribute (each
label list class says which it is) and the item list's `input` ("text" for `TextList`, else "image"). A new kind
is one subclass of `TaskKind` with a `name`, the label kinds it serves and its methods; defining it registers it.

    multi-label    tags of an image (Planet)              single-label   one class per image
    segmentation   a class for every pixel (CamVid)       points         (row, col) points of a photo (head pose)
    text           one class per text (IMDB)
"""
from __future__ import annotations

import base64
import io
import math

import numpy as np
import torch
from PIL import Image

from .metrics import fbeta

__all__ = ["Text", "kind_of"]

F2_THRESH = 0.2  # the lesson's threshold for Planet's F2 (`fbeta`)
POINT_ERROR = "mean point error (px)"
LOWER_IS_BETTER = {POINT_ERROR}  # scores where lower is better (finetune's choice of epoch)
_REGISTRY: dict[str, TaskKind] = {}


class BadInput(ValueError):
    """A request the app refuses: `status` is the HTTP status, the message says what was wrong."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class TaskKind:
    """One kind of task. Subclasses set the attributes and override what differs; defining a subclass with a
    `name` registers one instance of it (see `kind_of`)."""

    name = ""
    input = "image"        # what the model takes: "image" or "text" (the item list's `input`)
    labels: tuple = ()     # the label lists' `kind`s this kind serves
    uncollected = None     # what the web app collects no corrections of (None: it collects them)
    classifier = False     # answers classes: `finetune --data` can be a folder or CSV of labelled images
    label_delim = None     # how a CSV cell separates several labels (multi-label)
    keeps_pixels = False   # the app keeps the photo's own pixels (the answer is given in them)
    tfm_y = False          # the targets move with every augmentation of the image
    per_pixel = False      # one answer per pixel: `train` builds a U-Net

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls()

    def __repr__(self) -> str:
        return f"<task kind {self.name}>"

    def info(self, learn, max_chars: int) -> dict:
        """The fields of the app's /info that only this kind has (none by default)."""
        return {}

    # --- the web app's answer --------------------------------------------------------------------------
    def answer(self, learn, item, label, probs: torch.Tensor) -> dict:
        """The JSON fields of a prediction (besides `kind` and `predicted`): `label` and `probs` as
        `Learner.predict` returns them for `item` (a PIL image or a text)."""
        raise NotImplementedError

    def predicted_cell(self, answer: dict) -> str:
        """A prediction (the fields `answer` gave) as one feedback.csv cell: the class, or the tags separated
        by spaces."""
        pred = answer["prediction"]
        return " ".join(pred) if isinstance(pred, list) else str(pred)

    # --- corrections: written by the app, read back by finetune ------------------------------------------
    def correction_cell(self, labels: list[str], point, image_size, classes: list[str]) -> str:
        """The user's correction (`labels` given, or a clicked `point` in a photo of `image_size`) as the
        feedback.csv cell the app stores; BadInput when it is no valid answer."""
        raise BadInput(422, f"Corrections of {self.uncollected} are not collected; feedback works for classifiers "
                            "and points.")

    def read_cell(self, text: str, classes, where: str, size: tuple[int, int] | None = None):
        """The label a `corrected` cell gives (what `correction_cell` wrote), or a ValueError naming `where`
        (the CSV line); `size` is the stored photo's (height, width)."""
        raise ValueError(f"{where}: the web app collects no corrections for {self.uncollected}.")

    def same_answer(self, predicted: str, corrected: str) -> bool:
        """Whether two cells say the same answer (a correction equal to the prediction corrects nothing)."""
        return predicted.strip() == corrected.strip()

    def label_names(self, y) -> list:
        """A label list's targets as the labels `read_cell` gives (class names)."""
        return [y.classes[o] for o in y.items]

    # --- finetune's score ------------------------------------------------------------------------------
    def score(self, preds: torch.Tensor, targs: torch.Tensor, learn, data, exact: bool = True) -> tuple[str, float]:
        """(what, value) of predictions on `data`'s validation set (`learn`: the model's own learner):
        accuracy by default."""
        return "accuracy", float((preds.argmax(1) == targs).float().mean())


class _Classes(TaskKind):
    """What classifiers share: the answer is a class (or tags) with the probability of each class."""

    classifier = True
    many = False  # whether an answer can hold several classes

    def answer(self, learn, item, label, probs):
        """The class, and every class with its probability, most likely first."""
        classes = list(learn.data.classes or [])
        order = probs.argsort(descending=True).tolist()
        return {"prediction": label, "labels": [classes[i] for i in order],
                "probabilities": [round(float(probs[i]), 4) for i in order]}

    def correction_cell(self, labels, point, image_size, classes):
        """The class(es) given, each once, in the order given; refuses labels that are not classes."""
        labels = [s.strip() for s in labels if s.strip()]
        if not labels:
            raise BadInput(400, "Say what the right answer is: send the field 'label' with one of the classes.")
        unknown = [s for s in labels if s not in classes]
        if unknown:
            raise BadInput(422, f"{unknown[0]!r} is not one of the model's classes: {', '.join(classes)}.")
        if not self.many and len(labels) > 1:
            raise BadInput(422, f"This model gives one class per {self.input}; send one label, not {len(labels)}.")
        return " ".join(dict.fromkeys(labels))

    def read_cell(self, text, classes, where, size=None):
        """A class of the model (a list of them when `many`)."""
        tags = text.split() if self.many else [text]
        unknown = [t for t in tags if t not in classes]
        if unknown:
            raise ValueError(f"{where}: {unknown[0]!r} is not one of the model's classes "
                             f"({', '.join(sorted(classes))}); fix or remove the line.")
        return tags if self.many else text


class MultiLabel(_Classes):
    """Tags of an image (Planet): any number of classes each."""

    name = "multi-label"
    labels = ("multi-label",)
    label_delim = " "
    many = True

    def info(self, learn, max_chars):
        """The model's thresholds."""
        thresh = learn.data.train_ds.y.thresh
        return {"thresh": thresh.tolist() if isinstance(thresh, torch.Tensor) else thresh}

    def same_answer(self, predicted, corrected):
        """The same tags, in any order."""
        return set(predicted.split()) == set(corrected.split())

    def label_names(self, y):
        """The tags of each item."""
        return [[y.classes[j] for j in o] for o in y.items]

    def score(self, preds, targs, learn, data, exact=True):
        """The share of items whose tags are all right (the model's thresholds), or with `exact=False` the
        lesson's F2 at 0.2 (one wrong tag on one photo moves it a little, not a whole item)."""
        if not exact:
            return f"F2 at {F2_THRESH:g}", float(fbeta(preds, targs, thresh=F2_THRESH, sigmoid=False))
        thresh = torch.as_tensor(learn.data.train_ds.y.thresh, dtype=preds.dtype)
        return "all tags right", float(((preds > thresh) == (targs > 0.5)).all(1).float().mean())


class SingleLabel(_Classes):
    """One class per image."""

    name = "single-label"
    labels = ("single-label",)


class Segmentation(TaskKind):
    """A class for every pixel (CamVid). The app collects no corrections of masks."""

    name = "segmentation"
    labels = ("segmentation",)
    uncollected = "masks"
    tfm_y = True
    per_pixel = True

    def answer(self, learn, item, label, probs):
        """The photo as the model saw it (resized and cropped like the validation set) and the predicted mask
        in the same pixels, both as base64 PNGs, with the share of pixels of each class present."""
        from .vision.segmentation import MASK_COLOURS

        classes = list(learn.data.classes or [])
        seen = learn.data.denorm(learn.data.one_item(item))[0].clamp(0, 1)
        ids = label[0].numpy()
        colours = (MASK_COLOURS[ids % len(MASK_COLOURS)] * 255).astype(np.uint8)  # as in show_mask
        counts = np.bincount(ids.ravel(), minlength=len(classes))
        legend = [{"label": classes[i], "share": round(float(counts[i] / ids.size), 4),
                   "colour": "#%02x%02x%02x" % tuple(colours[ids == i][0])}
                  for i in np.argsort(-counts) if counts[i]]
        photo = (seen.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return {"prediction": [c["label"] for c in legend], "legend": legend,
                "image_png": _png_base64(photo), "mask_png": _png_base64(colours)}


class Points(TaskKind):
    """(row, col) points of a photo (head pose), in the photo's own pixels."""

    name = "points"
    labels = ("points",)
    keeps_pixels = True
    tfm_y = True

    def answer(self, learn, item, label, probs):
        """The point(s) in the photo's pixels, and the photo's size."""
        return {"points": [[round(v, 1) for v in p] for p in label.tolist()], "image_size": [item.height, item.width]}

    def predicted_cell(self, answer):
        """'row col' pixels, points separated by '; '."""
        return "; ".join(f"{r} {c}" for r, c in answer["points"])

    def correction_cell(self, labels, point, image_size, classes):
        """The clicked point as 'row col' (one decimal); refuses a missing point or one outside the photo."""
        if point is None:
            raise BadInput(400, "Click where the right point is: send the fields 'row' and 'col' (pixels of the "
                                "photo).")
        try:
            row, col = (float(v) for v in point)
        except (TypeError, ValueError):
            raise BadInput(422, f"'row' and 'col' must be numbers, not {point!r}.") from None
        h, w = image_size
        if not (math.isfinite(row) and math.isfinite(col) and 0 <= row <= h - 1 and 0 <= col <= w - 1):
            raise BadInput(422, f"The point ({row}, {col}) is outside the {h}x{w} photo; rows go 0..{h - 1}, "
                                f"columns 0..{w - 1}.")
        return f"{row:.1f} {col:.1f}"

    def read_cell(self, text, classes, where, size=None):
        """The (n, 2) array of (row, col) points, each inside the photo of (height, width) `size`."""
        try:
            pts = _points(text)
        except ValueError:
            raise ValueError(f"{where}: {text!r} is not a point 'row col'; fix or remove the line.") from None
        h, w = size
        if not (np.isfinite(pts).all() and (pts >= 0).all() and (pts <= [h - 1, w - 1]).all()):
            raise ValueError(f"{where}: the point {text!r} is not inside its {h}x{w} photo (rows 0 to {h - 1}, "
                             f"columns 0 to {w - 1}); fix or remove the line.")
        return pts

    def same_answer(self, predicted, corrected):
        """The same number of points, each within half a pixel."""
        try:
            a, b = (_points(t) for t in (predicted, corrected))
        except ValueError:
            return False
        return a.shape == b.shape and bool(np.allclose(a, b, atol=0.5))

    def score(self, preds, targs, learn, data, exact=True):
        """The mean distance in pixels of the model's input between predicted and true points."""
        h, w = data.valid_ds[0][0].shape[-2:]  # the model's input size
        half = torch.tensor([h / 2, w / 2])
        return POINT_ERROR, float(((preds.reshape(targs.shape) - targs) * half).norm(dim=-1).mean())


class Text(_Classes):
    """One class per text (IMDB); texts, not images, come in."""

    name = "text"
    input = "text"
    labels = ("single-label", "multi-label")

    def info(self, learn, max_chars):
        """The longest text the app takes."""
        return {"max_chars": max_chars}


KINDS = tuple(_REGISTRY)  # the names, in the order above: multi-label, single-label, segmentation, points, text


def kind_named(name: str) -> TaskKind:
    """The kind called `name` (one of `KINDS`)."""
    return _REGISTRY[name]


def kind_of(learn_or_data) -> TaskKind:
    """The kind of a learner, DataBunch, LabelLists or LabelList: from its training set's label list's `kind`
    and its item list's `input`. A ValueError names the label type when no kind serves it."""
    x, y = _lists(learn_or_data)
    label, given = getattr(y, "kind", None), getattr(x, "input", "image")
    for kind in _REGISTRY.values():
        if kind.input == given and label in kind.labels:
            return kind
    raise ValueError(f"The web app serves classifiers, segmentation and points models; this export predicts "
                     f"{type(y).__name__} targets, which it cannot show.")


def _lists(obj) -> tuple:
    """(item list, label list) of the training set of a learner, DataBunch, LabelLists or LabelList."""
    for step in ("data", "train_ds", "train"):  # learner -> DataBunch -> LabelList; LabelLists -> LabelList
        if hasattr(obj, "x") and hasattr(obj, "y"):
            break
        obj = getattr(obj, step, obj)
    return obj.x, obj.y


def _points(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.replace(";", " ").split()], dtype=np.float32).reshape(-1, 2)


def _png_base64(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
