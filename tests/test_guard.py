"""guard.NaNGuard: a NaN/inf loss stops training with the model at its last good weights (BatchNorm statistics
included), a step that blows up the weights is undone, and fp16 overflow steps are skipped without stopping."""
from __future__ import annotations

import pytest
import torch
from helpers import bn_model, colour_databunch

from course_utils.amp import MixedPrecision
from course_utils.callbacks import Callback
from course_utils.guard import NonFiniteLossError
from course_utils.learner import Learner
from course_utils.vision import cnn_learner, models


class _Spike(Callback):
    """Makes one chosen training batch's loss `value` (as a diverging run would)."""

    def __init__(self, at_batch: int, value: float = float("nan")):
        self.at_batch, self.value, self.n = at_batch, value, 0

    def after_loss(self):
        if self.learn.training:
            if self.n == self.at_batch:
                self.learn.loss = self.learn.loss * self.value
            self.n += 1


def _weights(learn) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learn.model.parameters()]


class _BreakWeights(Callback):
    """After the optimizer step of one batch, sets a weight to inf: the next loss is inf (a step that blew up)."""
    order = 5

    def __init__(self, at_batch: int):
        self.at_batch, self.n, self.before = at_batch, 0, None

    def after_step(self):
        if self.n == self.at_batch:
            self.before = _weights_before_step
            with torch.no_grad():
                next(self.learn.model.parameters()).fill_(float("inf"))
        self.n += 1


_weights_before_step = None


class _RecordBeforeStep(Callback):
    order = 4

    def before_step(self):
        global _weights_before_step
        _weights_before_step = _weights(self.learn)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_training_naming_epoch_batch_and_lr(tiny_learner, value, capsys):
    n = len(tiny_learner.data.train_dl)
    seen = []

    class _Keep(Callback):
        def before_batch(self):
            seen.append(_weights(self.learn))

    with pytest.raises(NonFiniteLossError) as e:
        tiny_learner.fit(2, 1e-2, callbacks=[_Keep(), _Spike(at_batch=n + 1, value=value)])
    msg = str(e.value)
    assert "epoch 2/2" in msg and f"batch 2/{n}" in msg
    assert "learning rate 1.00e-02" in msg and "lower learning rate" in msg
    # back at the last weights known to give a finite loss: those of the batch before the bad one
    for a, b in zip(_weights(tiny_learner), seen[-2]):
        torch.testing.assert_close(a, b)
    assert len(tiny_learner.recorder.epoch_rows) == 1  # the finished epoch is kept


def test_a_step_that_blows_up_the_weights_is_undone(tiny_learner):
    with pytest.raises(NonFiniteLossError, match="epoch 1/1, batch 3/"):
        tiny_learner.fit(1, 1e-2, callbacks=[_RecordBeforeStep(), _BreakWeights(at_batch=1)])
    restored = _weights(tiny_learner)
    assert all(torch.isfinite(p).all() for p in restored)
    for a, b in zip(restored, _weights_before_step):  # back to before the step that broke the model
        torch.testing.assert_close(a, b)
    assert len(tiny_learner.opt.state) == 0  # Adam's moments (possibly inf) were reset
    tiny_learner.fit(1, 1e-3)  # and training can go on
    assert all(torch.isfinite(p).all() for p in tiny_learner.model.parameters())


def test_a_nan_from_the_first_batch_restores_the_starting_weights(tiny_learner):
    start = _weights(tiny_learner)
    with pytest.raises(NonFiniteLossError, match="batch 1/.*look for NaN or infinite values in the data"):
        tiny_learner.fit(1, 1e-2, callbacks=[_Spike(at_batch=0)])
    for a, b in zip(_weights(tiny_learner), start):
        torch.testing.assert_close(a, b)


def test_fp16_overflow_steps_are_skipped_without_stopping(tiny_learner):
    """A too-large loss scale makes the first scaled fp16 gradients overflow: the scaler skips those steps and
    halves the scale (the loss itself stays finite), the guard does not fire, and training finishes."""
    cb = MixedPrecision(torch.float16)
    cb.learn = tiny_learner
    cb.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 20)
    tiny_learner.callbacks.append(cb)
    start = _weights(tiny_learner)
    tiny_learner.fit(2, 1e-2)
    assert 1 <= tiny_learner.skipped_steps < 2 * len(tiny_learner.data.train_dl)
    assert len(tiny_learner.recorder.epoch_rows) == 2
    assert all(torch.isfinite(p).all() for p in tiny_learner.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(_weights(tiny_learner), start))  # later steps were taken






# --- files --------------------------------------------------------------------------------------------------














# --- the NaN guard and BatchNorm statistics -----------------------------------------------------------------
class _InfStats(Callback):
    """After one step, the BatchNorm running statistics overflow (as at lr=1e4) while the loss stays finite."""
    def __init__(self, at_batch):
        self.at_batch, self.n = at_batch, 0

    def after_step(self):
        if self.n == self.at_batch:
            bn = self.learn.model[1]
            bn.running_mean.fill_(float("inf"))
            bn.running_var.fill_(float("inf"))
        self.n += 1


class _NaNLoss(Callback):
    def __init__(self, at_batch):
        self.at_batch, self.n = at_batch, 0

    def after_loss(self):
        if self.learn.training:
            if self.n == self.at_batch:
                self.learn.loss = self.learn.loss * float("nan")
            self.n += 1


def test_the_nan_guard_restores_finite_batchnorm_statistics(tmp_path):
    data = colour_databunch(tmp_path)
    learn = Learner(data, bn_model(data.c))
    with pytest.raises(NonFiniteLossError, match="back at its last weights"):
        learn.fit(1, 1e-2, callbacks=[_InfStats(at_batch=0), _NaNLoss(at_batch=2)])
    assert all(torch.isfinite(b).all() for b in learn.model.buffers())
    _, _, probs = learn.predict(tmp_path / "a_0.png")
    assert torch.isfinite(probs).all()


def test_a_huge_learning_rate_leaves_a_usable_model(planet_data, tmp_path):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path)
    with pytest.raises(NonFiniteLossError):
        learn.fit_one_cycle(3, 1e4)
    assert all(torch.isfinite(t).all() for t in learn.model.state_dict().values())
    _, _, probs = learn.predict(next(planet_data.train_ds.x.path.glob("train-jpg/*.jpg")))
    assert torch.isfinite(probs).all()
