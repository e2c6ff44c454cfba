"""Stopping a run whose loss becomes NaN or infinite, with the model put back to its last good weights.

Every Learner has a `NaNGuard`. Before each optimizer step it copies the weights that step will change
(and the BatchNorm statistics): the last weights known to give a finite loss. When a training loss is
not finite, the guard copies those back (undoing the step just before, which may be the one that broke
the model) and raises `NonFiniteLossError` saying where it happened.

A finite training loss does not prove a usable model: BatchNorm normalises with the batch's own statistics
while training, so its running statistics (used by `predict`) can overflow while the loss stays finite
(lr=1e4 does it in a few steps). So a copy is only taken while every tensor is finite, and after restoring,
the model must give finite outputs in evaluation mode on the current batch; if it does not, the guard goes
back to the weights the model had when `fit` started.
Steps skipped by fp16 loss scaling never trip it: their loss is finite, only the
scaled gradients overflow, and the scaler skips them itself. The LR finder, which drives the loss to
diverge on purpose, runs without the guard.

A non-finite *validation* loss with finite training losses stops nothing (the weights are fine for the data they
train on) but is warned about once per fit: it means NaN/inf in the validation data, or a model that overflows
in evaluation mode.
"""
from __future__ import annotations

import math
import warnings

import torch

from .callbacks import CALLBACK_ORDER, Callback, LRFinder

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message says where and what to do."""


class NaNGuard(Callback):
    """Stop training on a NaN/inf loss, with the weights as they were before the step that caused it."""
    order = CALLBACK_ORDER["NaNGuard"]

    def before_fit(self):
        model = self.learn.model
        self.active = not any(isinstance(c, LRFinder) for c in self.learn.fit_callbacks)
        # frozen weights cannot change, so only trainable ones (and the BatchNorm statistics) are copied
        self.tensors = [p for p in model.parameters() if p.requires_grad] + list(model.buffers())
        self.buffers = list(model.buffers())
        self.copies = [t.detach().clone() for t in self.tensors] if self.active else []
        self.start = [c.clone() for c in self.copies]  # the fallback if the last copy is unusable in eval mode
        self.warned, self.in_fit = False, True

    def after_fit(self):
        self.in_fit = False

    def before_epoch(self):
        self.batch = 0

    def before_backward(self):  # training only, and after every after_loss (which may add to the loss)
        if self.active and not bool(torch.isfinite(self.learn.loss.detach()).all()):
            self._restore(self.copies)
            back_to_start = not self._usable()
            if back_to_start:
                self._restore(self.start)
            raise NonFiniteLossError(self._message(back_to_start))

    def before_step(self):
        # never keep a copy of overflowed statistics. Only the buffers (BatchNorm statistics, small) are checked
        # here: a non-finite weight makes the next training loss non-finite, which `before_backward` catches
        # before this copy is overwritten; checking all 31M weights of a U-Net every step cost 5-8% of it.
        if self.active and _all_finite(self.buffers):
            with torch.no_grad():
                for c, t in zip(self.copies, self.tensors):
                    c.copy_(t)
        return False  # the step itself is taken by the loop (or by MixedPrecision)

    def after_batch(self):
        if self.learn.training:
            self.batch += 1

    def after_validate(self):
        loss_sum = self.learn.valid_sums.loss
        if math.isfinite(loss_sum) or getattr(self, "warned", False):
            return
        in_fit = getattr(self, "in_fit", False)
        self.warned = in_fit  # once per fit; every time for a plain validate()
        when = f" at epoch {self.learn.epoch + 1}" if in_fit else ""
        warnings.warn(f"The validation loss is {loss_sum}{when}. If the training losses are finite, look for NaN or "
                      "infinite values in the validation items (a float TIFF with NaN pixels, say) or their labels; "
                      "if the model overflows in evaluation mode, train with a lower learning rate.", stacklevel=2)

    def _restore(self, copies: list[torch.Tensor]):
        with torch.no_grad():
            for c, t in zip(copies, self.tensors):
                t.copy_(c)
        self.learn.opt.state.clear()  # Adam's moments may hold the inf/NaN too: they restart from zero

    def _usable(self) -> bool:
        """Finite weights and statistics, and finite outputs in evaluation mode (as `predict` runs it)."""
        model = self.learn.model
        if not _all_finite(self.tensors):
            return False
        if isinstance(self.learn.xb, torch.Tensor) and not _all_finite([self.learn.xb]):
            return True  # NaN in the data itself: the message says to look there
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return bool(torch.isfinite(self.learn.forward(self.learn.xb)).all())
        finally:
            model.train(was_training)

    def _message(self, back_to_start: bool) -> str:
        learn = self.learn
        where = ("at the weights it had when this fit started (the later ones gave non-finite outputs in "
                 "evaluation mode: BatchNorm statistics had overflowed)" if back_to_start else
                 "at its last weights that gave a finite loss, from before the last optimizer step")
        return (f"Training stopped: the loss became {learn.loss.item()} at epoch {learn.epoch + 1}/{learn.n_epochs}, "
                f"batch {self.batch + 1}/{len(learn.data.train_dl)}, learning rate "
                f"{learn.opt.param_groups[-1]['lr']:.2e}. The model is back {where} (the optimizer's momentum "
                "was reset), so "
                "`learn.save(...)` keeps a good model. "
                "Train again with a lower learning rate (`learn.lr_find()` shows which); if it happens at the "
                "first batch, look for NaN or infinite values in the data.")


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
