"""Stopping a run whose loss becomes NaN or infinite, with the model put back to its last good weights.

Every Learner has a `NaNGuard`. Before each optimizer step it copies the weights that step will change
(and the BatchNorm statistics): the last weights known to give a finite loss. When a training loss is
not finite, the guard copies those back (undoing the step just before, which may be the one that broke
the model) and raises `NonFiniteLossError` saying where it happened. Steps skipped by fp16 loss scaling never trip it: their loss is finite, only the
scaled gradients overflow, and the scaler skips them itself. The LR finder, which drives the loss to
diverge on purpose, runs without the guard.
"""
from __future__ import annotations

import torch

from .callbacks import Callback, LRFinder

__all__ = ["NaNGuard", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message says where and what to do."""


class NaNGuard(Callback):
    """Stop training on a NaN/inf loss, with the weights as they were before the step that caused it."""
    order = -5  # its before_step must copy the weights before anyone (MixedPrecision) takes the step

    def before_fit(self):
        model = self.learn.model
        self.active = not any(isinstance(c, LRFinder) for c in self.learn._cbs)
        # frozen weights cannot change, so only trainable ones (and the BatchNorm statistics) are copied
        self.tensors = [p for p in model.parameters() if p.requires_grad] + list(model.buffers())
        self.copies = [t.detach().clone() for t in self.tensors] if self.active else []

    def before_epoch(self):
        self.batch = 0

    def before_backward(self):  # training only, and after every after_loss (which may add to the loss)
        if self.active and not bool(torch.isfinite(self.learn.loss.detach()).all()):
            self._restore()
            raise NonFiniteLossError(self._message())

    def before_step(self):
        if self.active:
            with torch.no_grad():
                for c, t in zip(self.copies, self.tensors):
                    c.copy_(t)
        return False  # the step itself is taken by the loop (or by MixedPrecision)

    def after_batch(self):
        if self.learn.training:
            self.batch += 1

    def _restore(self):
        with torch.no_grad():
            for c, t in zip(self.copies, self.tensors):
                t.copy_(c)
        self.learn.opt.state.clear()  # Adam's moments may hold the inf/NaN too: they restart from zero

    def _message(self) -> str:
        learn = self.learn
        return (f"Training stopped: the loss became {learn.loss.item()} at epoch {learn.epoch + 1}/{learn.n_epochs}, "
                f"batch {self.batch + 1}/{len(learn.data.train_dl)}, learning rate "
                f"{learn.opt.param_groups[-1]['lr']:.2e}. The model is back at its last weights that gave a finite "
                "loss, from before the last optimizer step (the optimizer's momentum was reset), so "
                "`learn.save(...)` keeps a good model. "
                "Train again with a lower learning rate (`learn.lr_find()` shows which); if it happens at the "
                "first batch, look for NaN or infinite values in the data.")
