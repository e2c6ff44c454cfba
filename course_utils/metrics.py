"""Metrics from the lesson. Each takes (logits, targets) for one batch and returns a scalar;
the Learner averages them over the validation set weighted by batch size. For the per-sample means
(accuracy, error_rate, accuracy_thresh, fbeta, mse) that is the exact dataset value; `masked_accuracy`,
`dice` and `rmse` are per-batch values (the lesson's way), so over several batches their average is close
to, not exactly, the value pooled over all pixels or samples (a batch with more void pixels counts as
much as one with fewer)."""
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["accuracy", "error_rate", "accuracy_thresh", "fbeta", "masked_accuracy", "dice", "mse", "rmse",
           "MSELossFlat"]


def accuracy(input: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
    """Share of samples whose arg-max class equals the target (single-label)."""
    return (input.argmax(dim=-1) == targs).float().mean()


def error_rate(input: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
    """1 - accuracy."""
    return 1 - accuracy(input, targs)


def accuracy_thresh(input: torch.Tensor, targs: torch.Tensor, thresh: float = 0.5,
                    sigmoid: bool = True) -> torch.Tensor:
    """Multi-label accuracy: share of all (sample, class) pairs where [p > thresh] equals the target.

    Planet uses thresh=0.2 (lesson 3)."""
    probs = input.sigmoid() if sigmoid else input
    return ((probs > thresh) == targs.bool()).float().mean()


def fbeta(input: torch.Tensor, targs: torch.Tensor, thresh: float = 0.2, beta: float = 2.0,
          eps: float = 1e-9, sigmoid: bool = True) -> torch.Tensor:
    """F-beta per sample, averaged over samples (Kaggle's Planet F2 with beta=2); multi-hot targets only."""
    if targs.dim() != 2 or targs.shape != input.shape:
        raise ValueError("fbeta needs multi-label data: targets must be multi-hot with the same shape as "
                         f"the predictions, got predictions {tuple(input.shape)} and targets {tuple(targs.shape)}. "
                         "For single-label data use `accuracy`.")
    probs = input.sigmoid() if sigmoid else input
    pred = (probs > thresh).float()
    targs = targs.float()
    tp = (pred * targs).sum(dim=1)
    precision = tp / (pred.sum(dim=1) + eps)
    recall = tp / (targs.sum(dim=1) + eps)
    b2 = beta ** 2
    return ((1 + b2) * precision * recall / (b2 * precision + recall + eps)).mean()


def masked_accuracy(input: torch.Tensor, targs: torch.Tensor, void_code: int) -> torch.Tensor:
    """Pixel accuracy over the pixels whose target is not `void_code` (CamVid's `acc_camvid`)."""
    targs = targs.squeeze(1) if targs.dim() == input.dim() else targs
    keep = targs != void_code
    return (input.argmax(dim=1)[keep] == targs[keep]).float().mean()


def dice(input: torch.Tensor, targs: torch.Tensor, iou: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """Binary Dice (or IoU) of the arg-max prediction, pooled over the whole batch."""
    targs = targs.squeeze(1) if targs.dim() == input.dim() else targs
    pred = input.argmax(dim=1).flatten().float()
    targs = targs.flatten().float()
    inter = (pred * targs).sum()
    union = (pred + targs).sum()
    if union == 0:
        return union.new_tensor(1.0)
    return inter / (union - inter + eps) if iou else 2 * inter / union


def mse(input: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements."""
    return F.mse_loss(input.flatten().float(), targs.flatten().float())


def rmse(input: torch.Tensor, targs: torch.Tensor) -> torch.Tensor:
    """Root mean squared error over all elements."""
    return mse(input, targs).sqrt()


class MSELossFlat(nn.MSELoss):
    """The lesson's `learn.loss_func = MSELossFlat()` (head pose): mean squared error over the flattened
    predictions and targets, so (bs, 2) outputs meet (bs, 1, 2) points. Points learners already use it
    (`mse`), so the line changes nothing there."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(input.reshape(-1).float(), target.reshape(-1).float())


class Metric:
    """A metric function with the name the progress table shows (`partial` keeps the function's name)."""

    def __init__(self, func: Callable):
        self.func = func
        inner = func.func if isinstance(func, functools.partial) else func
        self.name = getattr(inner, "__name__", type(inner).__name__)

    def __call__(self, pred, targ):
        return self.func(pred, targ)


@dataclass
class ValidSums:
    """What one validation pass adds up: the items seen, and the loss and each metric times the items of each
    batch (so the averages are weighted by batch size). Distributed training adds the processes' sums together."""
    items: float = 0.0
    loss: float = 0.0
    metrics: list[float] = field(default_factory=list)

    def as_list(self) -> list[float]:
        """[items, loss, *metrics]: the form a collective sum (`all_sum`) takes."""
        return [self.items, self.loss, *self.metrics]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> "ValidSums":
        """The inverse of `as_list`."""
        items, loss, *metrics = values
        return cls(float(items), float(loss), [float(m) for m in metrics])
