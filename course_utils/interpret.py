"""After training: which items the model gets most wrong, per-class scores, the confusion matrix,
decision thresholds tuned for F-beta, and a Kaggle-style submission (lesson 3's homework)."""
from __future__ import annotations

import copy
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .learner import Learner
from .metrics import fbeta
from .vision.image import image_grid, show_image

__all__ = ["Interpretation", "tune_thresholds", "write_submission"]

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

    def plot_top_losses(self, k: int = 9, figsize: tuple | None = None) -> None:
        """The k worst items: image, prediction, truth and loss (drawn, not returned: Jupyter would draw twice)."""
        losses, idxs = self.top_losses(k)
        ds = self.learn.data.dl(self.ds_type).dataset
        fig, axes = image_grid(len(idxs), (3.4, 3.6), figsize, cols=min(3, len(idxs)), fit_rows=True)
        for ax, loss, i in zip(axes, losses, idxs.tolist()):
            x, y = ds[i]
            title = (f"pred: {self.y_list.label_str(self.preds[i])}\ntrue: {self.y_list.label_str(y)}\n"
                     f"loss {loss:.2f}")
            show_image(x, ax=ax, title=title)
        fig.tight_layout()

    def confusion_matrix(self) -> torch.Tensor:
        """Counts [actual, predicted] for single-label data."""
        self._need("single-label")
        c = len(self.y_list.classes)
        flat = self.targs * c + self.preds.argmax(dim=1)
        return torch.bincount(flat, minlength=c * c).reshape(c, c)

    def plot_confusion_matrix(self, figsize=(5, 5)) -> None:
        """The confusion matrix as a picture, with counts (drawn, not returned)."""
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

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """(actual, predicted, count) for off-diagonal cells with at least `min_val` items, most first."""
        cm, classes = self.confusion_matrix(), self.y_list.classes
        pairs = [(classes[a], classes[p], int(cm[a, p])) for a in range(len(classes)) for p in range(len(classes))
                 if a != p and cm[a, p] >= min_val]
        return sorted(pairs, key=lambda t: -t[2])

    def per_class_table(self, thresh=None, beta: float = 2.0) -> pd.DataFrame:
        """Multi-label: precision, recall, F-beta and support of each class at `thresh` (default: the learner's)."""
        self._need("multi-label")
        thresh = torch.as_tensor(self.y_list.thresh if thresh is None else thresh, dtype=self.preds.dtype)
        pred, targ = (self.preds > thresh).float(), self.targs.float()
        tp, npred, ntrue = (pred * targ).sum(0), pred.sum(0), targ.sum(0)
        precision = tp / npred.clamp(min=1)
        recall = tp / ntrue.clamp(min=1)
        b2 = beta ** 2
        f = (1 + b2) * precision * recall / (b2 * precision + recall).clamp(min=1e-9)
        return pd.DataFrame({"precision": precision.numpy(), "recall": recall.numpy(), f"f{beta:g}": f.numpy(),
                             "support": ntrue.int().numpy()}, index=self.y_list.classes).round(3)

    def _need(self, kind: str) -> None:
        """A TypeError unless the labels are of `kind` (their label list's `kind`: see kinds.py)."""
        if self.y_list.kind != kind:
            raise TypeError(f"This needs {kind} data; this learner's labels are a {type(self.y_list).__name__}.")


def best_threshold(probs: torch.Tensor, targs: torch.Tensor, beta: float = 2.0,
                   grid: np.ndarray = THRESHOLD_GRID) -> tuple[float, float]:
    """The single threshold on `grid` with the highest per-sample F-beta, and that score."""
    scores = [float(fbeta(probs, targs, thresh=float(t), beta=beta, sigmoid=False)) for t in grid]
    i = int(np.argmax(scores))
    return float(grid[i]), scores[i]


@dataclass
class ThresholdResult:
    """Thresholds chosen on the validation set, F-beta with each choice, how much of each gain holds on
    validation images the thresholds were not chosen on, and the thresholds `predict` uses now."""
    baseline_thresh: float
    baseline_score: float
    global_thresh: float
    global_score: float
    per_class: list[float]
    per_class_score: float
    held_out_global_gain: float | None = None
    held_out_per_class_gain: float | None = None
    in_use: str = ""

    def __str__(self) -> str:
        lines = [f"F-beta at the lesson's {self.baseline_thresh}: {self.baseline_score:.4f}",
                 f"best single threshold {self.global_thresh:.2f}: {self.global_score:.4f} "
                 f"({self.global_score - self.baseline_score:+.4f}{_held_out(self.held_out_global_gain)})",
                 f"best per-class thresholds: {self.per_class_score:.4f} "
                 f"({self.per_class_score - self.baseline_score:+.4f}{_held_out(self.held_out_per_class_gain)})"]
        return "\n".join(lines + ([f"in use: {self.in_use}"] if self.in_use else []))


def _held_out(gain: float | None) -> str:
    return "" if gain is None else f"; {gain:+.4f} on held-out halves"


def tune_thresholds(learn: Learner, beta: float = 2.0, baseline: float = 0.2, per_class: bool = True,
                    apply: bool | None = None, min_gain: float = 0.01,
                    grid: np.ndarray = THRESHOLD_GRID) -> ThresholdResult:
    """Choose decision thresholds that maximise F-beta on the validation set: one for all classes, then
    one per class (coordinate ascent from the global one), and report them.

    Thresholds chosen on the validation set flatter themselves there (per-class ones most), so each gain is
    also measured on held-out halves: choose on one half of the validation set, score on the other, both
    ways. `apply=None` (default) installs a choice only when that held-out gain is clear (at least
    `min_gain` over the simpler choice); `apply=True` installs the best (`per_class` or global) anyway,
    `apply=False` only reports. The result's `in_use` says which thresholds `learn.predict` uses now."""
    probs, targs = learn.get_preds("valid")
    result = choose_thresholds(probs, targs, beta, baseline, per_class, grid)
    result.held_out_global_gain, result.held_out_per_class_gain = held_out_gains(probs, targs, beta, baseline,
                                                                                  per_class, grid)
    y = learn.data.train_ds.y
    chosen, result.in_use = _pick(result, per_class, apply, min_gain, current=y.thresh)
    y.thresh = chosen
    return result


def _pick(r: ThresholdResult, per_class: bool, apply: bool | None, min_gain: float, current):
    """(thresholds to use, a sentence saying which and why)."""
    if apply is False:
        return current, f"unchanged ({_describe(current)}): apply=False only reports"
    if apply:
        return (r.per_class, "the per-class thresholds (apply=True)") if per_class else \
            (r.global_thresh, f"the single threshold {r.global_thresh:.2f} (apply=True)")
    use_global = r.held_out_global_gain >= min_gain
    held_base = r.held_out_global_gain if use_global else 0.0
    if per_class and r.held_out_per_class_gain - held_base >= min_gain:
        return r.per_class, "the per-class thresholds: their gain holds on held-out images"
    if use_global:
        return r.global_thresh, f"the single threshold {r.global_thresh:.2f}: its gain holds on held-out images"
    return r.baseline_thresh, (f"the lesson's {r.baseline_thresh} for every class: no tuned choice gains "
                               f"{min_gain} on held-out images (pass apply=True to use them anyway)")


def _describe(thresh) -> str:
    return f"{thresh} for every class" if np.ndim(thresh) == 0 else "per-class thresholds"


def held_out_gains(probs: torch.Tensor, targs: torch.Tensor, beta: float = 2.0, baseline: float = 0.2,
                   per_class: bool = True, grid: np.ndarray = THRESHOLD_GRID) -> tuple[float, float | None]:
    """F-beta gain over `baseline` of the single and per-class thresholds on images they were not chosen on:
    the validation set is cut in two halves (fixed seed); thresholds chosen on each are scored on the other.
    NaN (never a clear gain) when there are too few validation images to halve."""
    if len(probs) < 4:
        return math.nan, (math.nan if per_class else None)
    order = torch.randperm(len(probs), generator=torch.Generator().manual_seed(0))
    halves = (order[: len(order) // 2], order[len(order) // 2:])
    gains = []
    for fit, test in (halves, halves[::-1]):
        r = choose_thresholds(probs[fit], targs[fit], beta, baseline, per_class, grid)
        base = float(fbeta(probs[test], targs[test], thresh=baseline, beta=beta, sigmoid=False))
        scores = [float(fbeta(probs[test], targs[test], thresh=torch.tensor(t), beta=beta, sigmoid=False))
                  for t in (r.global_thresh, r.per_class)]
        gains.append([sc - base for sc in scores])
    g, pc = np.mean(gains, axis=0).tolist()
    return g, (pc if per_class else None)


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
    probs, _ = learn.get_preds(dl=learn.data.items_dl(items))
    y_list = learn.data.train_ds.y
    rows = [(Path(p).stem, " ".join(y_list.decode(pr, thresh=thresh))) for p, pr in zip(items, probs)]
    df = pd.DataFrame(rows, columns=["image_name", "tags"])
    df.to_csv(out_csv, index=False, quoting=csv.QUOTE_MINIMAL)
    return df
