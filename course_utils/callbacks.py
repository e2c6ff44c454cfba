"""The callback protocol of the training loop, and the callbacks every Learner has:
the Recorder (history and plots), the one-cycle schedule, the LR finder and the progress table.

A callback is an object with any of these methods, called by `Learner.fit` in this order:
before_fit, before_epoch, (per training batch: before_batch, after_loss, before_backward, before_step,
after_step, after_batch), before_validate, (per validation batch: before_batch, after_loss, after_batch),
after_validate, after_epoch, after_fit. `learn.training` tells a training batch from a validation one.
`validate()` and `get_preds()` outside a fit run the same validation-batch events (get_preds without
after_loss: it computes no loss) on the learner's own callbacks. `before_step` may return True to say it
took (or deliberately skipped) the optimizer step itself; `before_validate` may return True to skip
validation (and after_epoch) for this epoch. Raising `CancelFit` stops training cleanly.
"""
from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np

from .progress import progress_output

__all__ = ["unfreeze_slice"]


# When each callback runs within an event: lowest first. One table, so the order between callbacks of different
# modules reads in one place; each class takes its number from here (`order = CALLBACK_ORDER["Recorder"]`).
CALLBACK_ORDER = {
    "DistributedTraining": -20,  # before_fit shards the loaders before the scheduler counts their batches
    "Recorder": -10,             # records the loss before anyone else reads the history
    "NaNGuard": -5,              # before_step copies the weights before anyone (MixedPrecision) takes the step
    "Callback": 0,               # the default for a callback of your own
    "OneCycleScheduler": 1,      # sets the batch's learning rate in before_batch
    "LRFinder": 1,               # the same, for the finder's exponential ramp
    "FrozenBatchNorm": 1,        # finetune: BatchNorm layers back to eval mode at each batch
    "RNNRegularizer": 3,         # adds AR/TAR to the loss before mixed precision scales it
    "ProgressTable": 10,         # shows the epoch's results after the Recorder has them
    "MixedPrecision": 50,        # scales the loss after every callback that adds to it; takes the step
    "EpochStates": 99,           # finetune: copies the weights after everything else has run
    "BatchTimer": 100,           # the benchmark: times the batch once everything else is done
}


class CancelFit(Exception):
    """Raised by a callback to end `fit` early (the LR finder does when the loss diverges)."""


class Callback:
    """Base class: override the events you need; `self.learn` is set when the callback is attached. `order` places
    it among the others (see CALLBACK_ORDER)."""
    order = CALLBACK_ORDER["Callback"]
    _learn_ref: Callable[[], object] | None = None

    @property
    def learn(self):
        """The learner this callback is attached to (None before). A `Learner` is held weakly: it holds its
        callbacks, and a strong link back made a cycle that kept a dropped learner's model, gradients and optimizer
        state (a U-Net's: 500 MB) in memory until Python's next full garbage collection. Anything else set here
        (a stand-in in a test) is held as it is, since nothing else may hold it."""
        return None if self._learn_ref is None else self._learn_ref()

    @learn.setter
    def learn(self, learn) -> None:
        from .learner import Learner  # here, not at the top: learner.py imports this module
        self._learn_ref = weakref.ref(learn) if isinstance(learn, Learner) else (lambda: learn)


def annealing_cos(start: float, end: float, pct: float) -> float:
    """Cosine interpolation from `start` (pct=0) to `end` (pct=1)."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


class Recorder(Callback):
    """Records learning rates, momentums, losses and metrics; draws them.

    `train_loss` is the debiased exponential moving average (beta 0.98) the lesson reports."""
    order = CALLBACK_ORDER["Recorder"]
    beta = 0.98

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget all history (and the last LR-finder suggestion, `suggested_lr`)."""
        self.suggested_lr: float | None = None
        self.lrs, self.moms, self.losses, self.smooth_losses = [], [], [], []
        self.val_losses, self.metrics, self.nb_batches, self.epoch_rows = [], [], [], []
        self.metric_names = []
        self._avg, self._n = 0.0, 0

    def before_fit(self):
        """Each fit starts a new history, as in the lesson (plots show the latest fit)."""
        self.reset()
        self.metric_names = [m.name for m in self.learn.metric_fns]

    def after_batch(self):
        if not self.learn.training:
            return
        loss = self.learn.loss.detach().float().item()
        self._n += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        self.losses.append(loss)
        self.smooth_losses.append(self._avg / (1 - self.beta ** self._n))
        self.lrs.append(self.learn.opt.param_groups[-1]["lr"])
        self.moms.append(self.learn.opt.param_groups[-1]["betas"][0])

    def after_epoch(self):
        row = self.learn.epoch_result
        self.nb_batches.append(len(self.losses))
        self.val_losses.append(row["valid_loss"])
        self.metrics.append([row[n] for n in self.metric_names])
        self.epoch_rows.append(row)

    @property
    def final_results(self) -> dict:
        """The last epoch's train loss, validation loss and metrics."""
        return dict(self.epoch_rows[-1]) if self.epoch_rows else {}

    def reset_smoothing(self):
        """Start the moving average of the loss afresh (the LR finder does)."""
        self._avg, self._n = 0.0, 0

    def plot_losses(self, skip_start: int = 0) -> None:
        """Training loss per batch and validation loss per epoch. Like every plot here it returns nothing:
        a returned figure would be drawn a second time by Jupyter (`plt.gcf()` gets it if you need it)."""
        _, ax = plt.subplots(figsize=(6, 4))
        ax.plot(range(skip_start, len(self.losses)), self.losses[skip_start:], label="train", alpha=0.6)
        if self.val_losses:
            ax.plot(self.nb_batches, self.val_losses, "o-", label="valid")
        ax.set(xlabel="batches processed", ylabel="loss")
        ax.legend()

    def plot_lr(self, show_moms: bool = False) -> None:
        """The learning rate (and momentum) over the batches of the last fits."""
        fig, axes = plt.subplots(1, 2 if show_moms else 1, figsize=(10 if show_moms else 5, 3.5), squeeze=False)
        axes[0, 0].plot(self.lrs)
        axes[0, 0].set(xlabel="iteration", ylabel="learning rate")
        if show_moms:
            axes[0, 1].plot(self.moms)
            axes[0, 1].set(xlabel="iteration", ylabel="momentum (beta1)")
        fig.tight_layout()

    def plot_metrics(self) -> None:
        """Each metric per epoch."""
        n = max(1, len(self.metric_names))
        _, axes = plt.subplots(1, n, figsize=(4 * n, 3), squeeze=False)
        for i, name in enumerate(self.metric_names):
            axes[0, i].plot([m[i] for m in self.metrics], "o-")
            axes[0, i].set(xlabel="epoch", title=name)

    def plot(self, skip_start: int = 10, skip_end: int = 5, suggestion: bool = False) -> None:
        """Loss against learning rate after `lr_find` (log scale). With `suggestion`, mark a good rate, print it
        and keep it in `self.suggested_lr`. Returns nothing, as in the lesson's library: a returned number would
        be echoed under the plot. The loss axis is clipped a little above the starting loss, so the blow-up at
        the end does not flatten the part of the curve you read."""
        lrs = self.lrs[skip_start: len(self.lrs) - skip_end or None]
        losses = self.smooth_losses[skip_start: len(self.smooth_losses) - skip_end or None]
        if len(lrs) < 2:
            lrs, losses = self.lrs, self.smooth_losses
        _, ax = plt.subplots(figsize=(6, 4))
        ax.plot(lrs, losses)
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)")
        ax.set_ylim(*loss_axis_limits(losses))
        if not suggestion:
            return
        stop, reason = stop_improving(losses)
        lr = suggest_lr(lrs, losses)
        ax.axvline(lrs[stop], color="grey", linestyle=":", label=f"stops improving {lrs[stop]:.1e}")
        # the dot at the suggestion itself, on the curve (the suggestion is rarely one of the recorded rates)
        ax.plot(lr, np.interp(np.log(lr), np.log(lrs), losses), "ro", markersize=8, label=f"suggested {lr:.2e}")
        ax.legend()
        self.suggested_lr = lr
        print(f"Suggested learning rate: {lr:.2e} ({SUGGESTION_RULE}: {lrs[stop]:.2e}, {reason})")


def loss_axis_limits(losses) -> tuple[float, float]:
    """(bottom, top) for an LR-finder plot: from just below the lowest loss to a third of the way above the
    higher of the starting loss and the lowest, so a divergence to 1e10 stays off the axis."""
    finite = np.asarray(losses, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return 0.0, 1.0
    low, start = float(finite.min()), float(finite[0])
    span = max(start - low, 0.05 * abs(low), 1e-3)
    return low - 0.1 * span, max(start, low) + span / 3 + 0.1 * span


def unfreeze_slice(lr: float, suggested: float | None = None, fixed_low: float | None = None) -> slice:
    """The one rule here for the discriminative rates after unfreezing (lesson 3, 48:50), printed with the
    numbers it used. The right end is the stage-1 rate `lr` divided by 5. The left end is `fixed_low` when
    given (the lesson's fixed choice, e.g. 1e-5), else the LR finder's suggestion after unfreezing, capped at
    a tenth of the right end, so the first layers always move at least ten times slower than the head."""
    high = lr / 5
    if not (math.isfinite(high) and high > 0):
        raise ValueError(f"unfreeze_slice: the stage-1 rate must be a positive number, got lr={lr!r}.")
    cap = high / 10
    if fixed_low is not None:
        low, why = fixed_low, f"left end the lesson's fixed {fixed_low:.1e}"
    elif suggested is None:
        low, why = cap, f"left end a tenth of it, {cap:.1e} (no suggestion given: run lr_find and plot first)"
    elif suggested > cap:
        low, why = cap, f"left end capped at a tenth of it, {cap:.1e} (the suggestion, {suggested:.1e}, is above it)"
    else:
        low, why = suggested, f"left end the LR finder's suggestion, {suggested:.1e} (below the cap {cap:.1e})"
    print(f"after unfreezing: slice({low:.1e}, {high:.1e}): right end lr/5 = {high:.1e}; {why}")
    return slice(low, high)


SUGGESTION_RULE = "a tenth of the rate where the loss stops improving"


def suggest_lr(lrs: list[float], losses: list[float], rise: float = 0.1) -> float:
    """The LR finder's suggestion: a tenth of the rate where the smoothed loss stops improving."""
    at, _ = stop_improving(losses, rise)
    return float(lrs[at] / 10)


def stop_improving(losses: list[float], rise: float = 0.1) -> tuple[int, str]:
    """Where an LR-finder curve stops improving, and why there: (index, reason).

    * If the smoothed loss fell clearly (by more than `rise`, 10% of its lowest value) on the way to its lowest
      point, that lowest point (a fresh model: a long descent, then the blow-up). A tenth of it lies on the
      descent, never at the minimum, which the lesson warns is already too late.
    * Otherwise the curve is flat (a trained model after unfreezing or resizing) and its lowest point is noise:
      the *edge*, the last rate before the loss climbs for good more than `rise` above its lowest. A tenth of
      it is the lesson's rule after unfreezing ("just before it shoots up, go back 10x").
    If the loss never rises, the largest rate tried is the edge."""
    losses = np.asarray(losses, dtype=float)
    if len(losses) == 0:
        raise ValueError("The LR finder recorded no losses; run learn.lr_find() first.")
    finite = np.where(np.isfinite(losses), losses, np.inf)
    best = int(np.argmin(finite))
    margin = rise * abs(finite[best])
    if finite[0] - finite[best] > margin:
        return best, "where it is lowest, after falling clearly"
    edge = int(np.flatnonzero(finite <= finite[best] + margin)[-1])  # early noise is ignored
    return edge, "the edge of a flat curve, before it climbs for good"


class OneCycleScheduler(Callback):
    """Lesson 3's one-cycle policy, per batch: the learning rate warms up from lr/div_factor to lr over
    `pct_start` of the steps, then anneals (cosine) to lr/final_div; momentum does the opposite."""
    order = CALLBACK_ORDER["OneCycleScheduler"]

    def __init__(self, lr_max: list[float], moms=(0.95, 0.85), div_factor: float = 25.0, pct_start: float = 0.3,
                 final_div: float | None = None):
        self.lr_max, self.moms, self.div = lr_max, moms, div_factor
        self.pct_start, self.final_div = pct_start, final_div or div_factor * 1e4

    def before_fit(self):
        self.total = self.learn.n_epochs * len(self.learn.data.train_dl)
        self.warm = int(self.total * self.pct_start)
        self.step = 0
        self._set(0)

    def schedule(self, step: int) -> tuple[list[float], float]:
        """(per-group learning rates, momentum) at a given batch index."""
        if step < self.warm:
            pct = step / max(1, self.warm)
            lrs = [annealing_cos(lr / self.div, lr, pct) for lr in self.lr_max]
            mom = annealing_cos(self.moms[0], self.moms[1], pct)
        else:
            pct = (step - self.warm) / max(1, self.total - self.warm)
            lrs = [annealing_cos(lr, lr / self.final_div, pct) for lr in self.lr_max]
            mom = annealing_cos(self.moms[1], self.moms[0], pct)
        return lrs, mom

    def _set(self, step: int):
        lrs, mom = self.schedule(step)
        self.learn.set_hyper(lrs, mom)

    def before_batch(self):
        if self.learn.training:
            self._set(self.step)

    def after_step(self):
        self.step += 1


class LRFinder(Callback):
    """Raises the learning rate exponentially from start_lr to end_lr over num_it batches, stopping when
    the smoothed loss passes 4x its best (or is NaN): the curve behind `recorder.plot`."""
    order = CALLBACK_ORDER["LRFinder"]

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True):
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div

    def before_fit(self):
        self.it, self.best = 0, math.inf
        self.learn.recorder.reset_smoothing()

    def before_validate(self):
        return True  # the finder never validates

    def before_batch(self):
        if not self.learn.training:
            return
        lr = self.start_lr * (self.end_lr / self.start_lr) ** (self.it / self.num_it)
        self.learn.set_hyper([lr] * len(self.learn.layer_groups), None)

    def after_batch(self):
        if not self.learn.training:
            return
        self.it += 1
        smooth = self.learn.recorder.smooth_losses[-1]
        self.best = min(self.best, smooth)
        if self.it >= self.num_it or (self.stop_div and (not math.isfinite(smooth) or smooth > 4 * self.best)):
            raise CancelFit


class ProgressTable(Callback):
    """A progress bar over the batches, and one table row per epoch: losses, metrics, time.
    In a notebook both are one output redrawn in place (see `progress.py`)."""
    order = CALLBACK_ORDER["ProgressTable"]

    def __init__(self, show_bar: bool = True):
        self.show_bar = show_bar
        self.out = None

    def before_fit(self):
        self.names = ["epoch", "train_loss", "valid_loss"] + [m.name for m in self.learn.metric_fns] + ["time"]
        self.widths = [max(len(n), 10) for n in self.names]
        self.out = progress_output()
        self.out.line("  ".join(n.ljust(w) for n, w in zip(self.names, self.widths)))

    def before_epoch(self):
        self.start = time.time()
        if self.show_bar:
            self.out.start_bar(len(self.learn.data.train_dl), f"epoch {self.learn.epoch + 1}/{self.learn.n_epochs}")

    def after_batch(self):
        if self.learn.training:
            self.out.update_bar()

    def after_epoch(self):
        self.out.close_bar()
        row = self.learn.epoch_result
        secs = time.time() - self.start
        vals = ([str(self.learn.epoch + 1)] + [_fmt(row[n]) for n in self.names[1:-1]]
                + [f"{int(secs // 60):02d}:{int(secs % 60):02d}"])
        self.out.line("  ".join(v.ljust(w) for v, w in zip(vals, self.widths)))

    def after_fit(self):
        if self.out is not None:
            self.out.close_bar()


def _fmt(v) -> str:
    return "#na#" if v is None else f"{v:.6f}"
