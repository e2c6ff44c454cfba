"""Robustness of training runs and saved files: a NaN/inf loss stops with the model at its last good
weights, fp16 overflow steps are skipped without stopping, Ctrl-C leaves the learner usable, and a
file that would need unrestricted unpickling is refused."""
from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.nn as nn

from course_utils.amp import MixedPrecision
from course_utils.callbacks import Callback
from course_utils.guard import NonFiniteLossError
from course_utils.learner import Learner, load_learner, safe_load
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


class _CtrlC(Callback):
    def __init__(self, at_batch: int):
        self.at_batch, self.n = at_batch, 0

    def before_step(self):  # between backward and step: gradients are pending
        if self.learn.training:
            if self.n == self.at_batch:
                raise KeyboardInterrupt
            self.n += 1
        return False


def test_ctrl_c_mid_epoch_leaves_the_learner_usable(tiny_learner, capsys):
    n = len(tiny_learner.data.train_dl)
    with pytest.raises(KeyboardInterrupt):
        tiny_learner.fit(3, 1e-2, callbacks=[_CtrlC(at_batch=n + 2)])
    assert "Interrupted in epoch 2" in capsys.readouterr().out
    assert len(tiny_learner.recorder.epoch_rows) == 1  # the finished epoch
    assert tiny_learner.recorder.final_results["valid_loss"] is not None
    assert all(p.grad is None for p in tiny_learner.model.parameters())  # no stale gradient left behind
    f = tiny_learner.save("interrupted")
    assert f.is_file()
    tiny_learner.fit(1, 1e-2)
    assert len(tiny_learner.recorder.epoch_rows) == 1
    tiny_learner.load("interrupted")


# --- files ------------------------------------------------------------------------------------
class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this would run",))


def test_a_checkpoint_holding_code_is_refused_with_an_explanation(tiny_learner, tmp_path):
    tiny_learner.path = tmp_path
    f = tmp_path / "models" / "evil.pth"
    f.parent.mkdir()
    torch.save({"model": _RunsCode()}, f)
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load .*evil.pth.*running code"):
        tiny_learner.load("evil")


def test_an_export_holding_code_is_refused(tmp_path):
    f = tmp_path / "export.pkl"
    with open(f, "wb") as fh:
        pickle.dump(_RunsCode(), fh, protocol=2)  # an old-style plain pickle
    with pytest.raises(pickle.UnpicklingError, match="not written by learn.save/export"):
        load_learner(tmp_path)


@pytest.mark.parametrize("content", [b"", b"not a model at all", "truncated"])
def test_a_damaged_checkpoint_gets_a_plain_message(tiny_learner, tmp_path, content):
    tiny_learner.path = tmp_path
    f = tiny_learner.save("good")
    if content == "truncated":
        content = f.read_bytes()[: f.stat().st_size // 2]
    f.write_bytes(content)
    with pytest.raises(ValueError, match="Cannot read .*good.pth: it is empty, truncated or not a PyTorch file"):
        tiny_learner.load("good")


def test_safe_load_returns_what_save_wrote(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}, "n": 3}, tmp_path / "ok.pth")
    state = safe_load(tmp_path / "ok.pth")
    assert state["n"] == 3 and torch.equal(state["model"]["w"], torch.ones(2))


def test_an_export_loads_on_a_cpu_only_machine(planet_data, tmp_path, monkeypatch):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path)
    # Save as a GPU run would: every tensor tagged "cuda:0" (torch has no public way to unregister a location
    # tagger, hence the patched registry). Loading such a file without mapping it to the CPU fails here.
    registry = [(1, lambda storage: "cuda:0", lambda storage, location: None),
                *torch.serialization._package_registry]
    monkeypatch.setattr(torch.serialization, "_package_registry", registry)
    f = learn.export()
    monkeypatch.setattr(torch.serialization, "_package_registry", registry[1:])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(f, weights_only=True)  # the file really names a GPU
    loaded = load_learner(f)
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())


def test_loading_weights_of_another_architecture_says_so(tiny_learner, tmp_path):
    tiny_learner.path = tmp_path
    tiny_learner.save("small")
    other = Learner(tiny_learner.data, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 8),
                                                     nn.Linear(8, tiny_learner.data.c)), path=tmp_path)
    with pytest.raises(RuntimeError, match="another architecture or another number of classes"):
        other.load("small")
