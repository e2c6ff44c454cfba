"""One loop over a loader for `validate`, `get_preds` and `TTA`: its batches fire the callback events (with
`learn.training` False), inside a fit and outside one, and it gives the same numbers as a loop written by hand."""
from __future__ import annotations

import pytest
import torch

from course_utils.callbacks import Callback


class Events(Callback):
    """Writes down (event, training?) for every batch event it sees."""

    def __init__(self):
        self.seen = []

    def before_batch(self):
        self.seen.append(("before_batch", self.learn.training))

    def after_loss(self):
        self.seen.append(("after_loss", self.learn.training))

    def after_batch(self):
        self.seen.append(("after_batch", self.learn.training))

    def after_validate(self):
        self.seen.append(("after_validate", self.learn.training))

    def count(self, event: str, training: bool) -> int:
        return self.seen.count((event, training))


def test_validation_batches_fire_events_during_fit(tiny_learner):
    ev = Events()
    tiny_learner.fit(2, 1e-3, callbacks=[ev], progress=False)
    n_train, n_valid = len(tiny_learner.data.train_dl), len(tiny_learner.data.valid_dl)
    assert ev.count("after_batch", True) == 2 * n_train
    for event in ("before_batch", "after_loss", "after_batch"):
        assert ev.count(event, False) == 2 * n_valid
    assert ev.count("after_validate", False) == 2


def test_validate_and_get_preds_outside_fit_use_the_learners_own_callbacks(tiny_learner):
    ev = Events()
    tiny_learner.callbacks.append(ev)
    ev.learn = tiny_learner
    n_valid = len(tiny_learner.data.valid_dl)
    tiny_learner.validate()
    assert ev.count("after_batch", False) == n_valid and ev.count("after_validate", False) == 1
    ev.seen.clear()
    tiny_learner.get_preds()
    assert ev.count("before_batch", False) == ev.count("after_batch", False) == n_valid
    assert ev.count("after_loss", False) == 0  # predictions need no loss (a test set has no labels)


def test_predictions_after_lr_find_do_not_reach_the_finder(tiny_learner):
    tiny_learner.lr_find(num_it=3)
    preds, _ = tiny_learner.get_preds()  # the finder of the last fit would raise CancelFit on its budget
    assert len(preds) == len(tiny_learner.data.valid_ds)
    assert tiny_learner.validate()["valid_loss"] is not None


def test_validate_matches_a_loop_by_hand(colour_data):
    from helpers import tiny_model

    from course_utils.learner import Learner
    from course_utils.metrics import accuracy

    learn = Learner(colour_data, tiny_model(colour_data.c), metrics=[accuracy])
    model, n, loss_sum, correct = learn.model.eval(), 0, 0.0, 0.0
    with torch.no_grad():
        for xb, yb in colour_data.valid_dl:
            out = model(xb)
            loss_sum += learn.loss_func(out, yb).item() * len(xb)
            correct += (out.argmax(1) == yb).float().sum().item()
            n += len(xb)
    res = learn.validate()
    assert res["valid_loss"] == pytest.approx(loss_sum / n, rel=1e-6)
    assert res["accuracy"] == pytest.approx(correct / n, rel=1e-6)


def test_get_preds_of_a_loader_matches_the_set(tiny_learner):
    probs, targs = tiny_learner.get_preds()
    again, _ = tiny_learner.get_preds(dl=tiny_learner.data.ordered_dl("valid"))
    assert torch.equal(probs, again) and len(targs) == len(tiny_learner.data.valid_ds)


class NaNValidation(Callback):
    """Makes every validation loss NaN (as a NaN pixel in a validation image would), training untouched."""

    def after_loss(self):
        if not self.learn.training:
            self.learn.loss = self.learn.loss * float("nan")


def test_a_non_finite_validation_loss_is_warned_about_once_per_fit(tiny_learner):
    with pytest.warns(UserWarning, match=r"validation loss is nan at epoch 1\. .*validation items") as rec:
        tiny_learner.fit(2, 1e-3, callbacks=[NaNValidation()], progress=False)
    assert sum("validation loss" in str(w.message) for w in rec) == 1
    assert len(tiny_learner.recorder.epoch_rows) == 2  # training went on
