"""After training: which items the model gets most wrong, per-class scores, the confusion matrix,
decision thresholds tuned for F-beta, and a Kaggle-style submission (lesson 3's homework)."""
from __future__ import annotations

import copy
import csv
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .data_block import CategoryList, MultiCategoryList
from .learner import Learner
from .metrics import fbeta
from .vision.image import show_image

__all__ = ["Interpretation", "ThresholdResult", "tune_thresholds", "choose_thresholds", "best_threshold",
           "write_submission"]

THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)


def per_item_losses(learn: Learner, preds_raw: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
    """The loss of each item (averaged over its elements), with the learner's own loss function."""
    loss_func = copy.copy(learn.loss_func)
    if hasattr(loss_func, "reduction"):
        loss_func.reduction = "none"
        losses = loss_func(preds_raw, targs)
        return losses.reshape(len(preds_raw), -1).mean(dim=1)
    return torch.stack([learn.loss_func(p[None], t[None]) for p, t in zip(preds_raw, targs)])


class Interpretation:
    """Predictions, targets and per-item losses of a learner on one set, and ways to look at them."""

    def __init__(self, learn: Learner, ds_type: str = "valid"):
        self.learn, self.ds_type = learn, ds_type
        raw, self.targs = learn.get_preds(ds_type, activ=False)
        self.preds = learn.data.train_ds.y.activation(raw)
        self.losses = per_item_losses(learn, raw, self.targs)
        self.y_list = learn.data.train_ds.y

    @classmethod
    def from_learner(cls, learn: Learner, ds_type: str = "valid") -> "Interpretation":
        """Interpret `learn` on the validation set (or `ds_type`)."""
        return cls(learn, ds_type)

    def top_losses(self, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The k largest per-item losses and their indices in the set, largest first."""
        return self.losses.topk(len(self.losses) if k is None else min(k, len(self.losses)))

    def plot_top_losses(self, k: int = 9, figsize: tuple | None = None) -> plt.Figure:
        """The k worst items: image, prediction, truth and loss."""
        losses, idxs = self.top_losses(k)
        ds = self.learn.data.dl(self.ds_type).dataset
        cols = min(3, len(idxs))
        rows = int(np.ceil(len(idxs) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=figsize or (3.4 * cols, 3.6 * rows), squeeze=False)
        for ax, loss, i in zip(axes.flat, losses, idxs.tolist()):
            x, y = ds[i]
            title = (f"pred: {self.y_list.label_str(self.preds[i])}\ntrue: {self.y_list.label_str(y)}\n"
                     f"loss {loss:.2f}")
            show_image(x, ax=ax, title=title)
        for ax in list(axes.flat)[len(idxs):]:
            ax.axis("off")
        fig.tight_layout()
        return fig

    def confusion_matrix(self) -> torch.Tensor:
        """Counts [actual, predicted] for single-label data."""
        self._need(CategoryList, multi=False)
        c = len(self.y_list.classes)
        flat = self.targs * c + self.preds.argmax(dim=1)
        return torch.bincount(flat, minlength=c * c).reshape(c, c)

    def plot_confusion_matrix(self, figsize=(5, 5)) -> plt.Figure:
        """The confusion matrix as a picture, with counts."""
        cm = self.confusion_matrix().numpy()
        classes = self.y_list.classes
        fig, ax = plt.subplots(figsize=figsize)
        ax.imshow(cm, cmap="Blues")
        ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted", ylabel="actual",
               title="Confusion matrix")
        ax.set_xticklabels(classes, rotation=90)
        ax.set_yticklabels(classes)
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, int(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
        fig.tight_layout()
        return fig

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """(actual, predicted, count) for off-diagonal cells with at least `min_val` items, most first."""
        cm, classes = self.confusion_matrix(), self.y_list.classes
        pairs = [(classes[a], classes[p], int(cm[a, p])) for a in range(len(classes)) for p in range(len(classes))
                 if a != p and cm[a, p] >= min_val]
        return sorted(pairs, key=lambda t: -t[2])

    def per_class_table(self, thresh=None, beta: float = 2.0) -> pd.DataFrame:
        """Multi-label: precision, recall, F-beta and support of each class at `thresh` (default: the learner's)."""
        self._need(MultiCategoryList, multi=True)
        thresh = torch.as_tensor(self.y_list.thresh if thresh is None else thresh, dtype=self.preds.dtype)
        pred, targ = (self.preds > thresh).float(), self.targs.float()
        tp, npred, ntrue = (pred * targ).sum(0), pred.sum(0), targ.sum(0)
        precision = tp / npred.clamp(min=1)
        recall = tp / ntrue.clamp(min=1)
        b2 = beta ** 2
        f = (1 + b2) * precision * recall / (b2 * precision + recall).clamp(min=1e-9)
        return pd.DataFrame({"precision": precision.numpy(), "recall": recall.numpy(), f"f{beta:g}": f.numpy(),
                             "support": ntrue.int().numpy()}, index=self.y_list.classes).round(3)

    def _need(self, cls: type, multi: bool) -> None:
        if isinstance(self.y_list, MultiCategoryList) != multi or not isinstance(self.y_list, cls):
            kind = "multi-label" if multi else "single-label"
            raise TypeError(f"This needs {kind} data; this learner's labels are a {type(self.y_list).__name__}.")


def best_threshold(probs: torch.Tensor, targs: torch.Tensor, beta: float = 2.0,
                   grid: np.ndarray = THRESHOLD_GRID) -> tuple[float, float]:
    """The single threshold on `grid` with the highest per-sample F-beta, and that score."""
    scores = [float(fbeta(probs, targs, thresh=float(t), beta=beta, sigmoid=False)) for t in grid]
    i = int(np.argmax(scores))
    return float(grid[i]), scores[i]


@dataclass
class ThresholdResult:
    """Thresholds chosen on the validation set, and F-beta with each choice."""
    baseline_thresh: float
    baseline_score: float
    global_thresh: float
    global_score: float
    per_class: list[float]
    per_class_score: float

    def __str__(self) -> str:
        return (f"F-beta at the lesson's {self.baseline_thresh}: {self.baseline_score:.4f}\n"
                f"best single threshold {self.global_thresh:.2f}: {self.global_score:.4f} "
                f"({self.global_score - self.baseline_score:+.4f})\n"
                f"best per-class thresholds: {self.per_class_score:.4f} "
                f"({self.per_class_score - self.baseline_score:+.4f})")


def tune_thresholds(learn: Learner, beta: float = 2.0, baseline: float = 0.2, per_class: bool = True,
                    apply: bool = True, grid: np.ndarray = THRESHOLD_GRID) -> ThresholdResult:
    """Choose decision thresholds that maximise F-beta on the validation set: one for all classes, then
    one per class (coordinate ascent from the global one). With `apply`, `learn.predict` uses them.

    Per-class thresholds fit the validation set more closely, so they need a big enough validation set
    to generalise; compare both gains before trusting them."""
    probs, targs = learn.get_preds("valid")
    result = choose_thresholds(probs, targs, beta, baseline, per_class, grid)
    if apply:
        learn.data.train_ds.y.thresh = result.per_class if per_class else result.global_thresh
    return result


def choose_thresholds(probs: torch.Tensor, targs: torch.Tensor, beta: float = 2.0, baseline: float = 0.2,
                      per_class: bool = True, grid: np.ndarray = THRESHOLD_GRID) -> ThresholdResult:
    """The search behind `tune_thresholds`, on given probabilities and multi-hot targets."""
    base = float(fbeta(probs, targs, thresh=baseline, beta=beta, sigmoid=False))
    g_thresh, g_score = best_threshold(probs, targs, beta, grid)
    thresh = torch.full((probs.shape[1],), g_thresh)
    score = g_score
    for _ in range(2 if per_class else 0):  # two sweeps over the classes settle on this grid
        for c in range(probs.shape[1]):
            for t in grid:
                trial = thresh.clone()
                trial[c] = float(t)
                s = float(fbeta(probs, targs, thresh=trial, beta=beta, sigmoid=False))
                if s > score + 1e-12:
                    thresh, score = trial, s
    return ThresholdResult(baseline, base, g_thresh, g_score, thresh.tolist(), score)


def write_submission(learn: Learner, test_folder: str | Path, out_csv: str | Path, thresh=None) -> pd.DataFrame:
    """Predict every image in `test_folder` and write Kaggle's `image_name,tags` CSV (names without extension)."""
    test_folder = Path(test_folder)
    x_cls = type(learn.data.train_ds.x)
    items = x_cls.from_folder(test_folder, recurse=False).items
    probs, _ = learn._preds(learn.data.items_dl(items))
    y_list = learn.data.train_ds.y
    rows = [(Path(p).stem, " ".join(y_list.decode(pr, thresh=thresh))) for p, pr in zip(items, probs)]
    df = pd.DataFrame(rows, columns=["image_name", "tags"])
    df.to_csv(out_csv, index=False, quoting=csv.QUOTE_MINIMAL)
    return df
