"""COURSE_SMOKE=1: every fit runs one epoch of a single batch, every validation or prediction pass one batch,
and it says so once."""
from __future__ import annotations

import pytest

from course_utils import config
from course_utils.callbacks import Callback


class CountBatches(Callback):
    """Counts the training batches and the epochs a fit runs."""

    def __init__(self):
        self.batches, self.epochs = 0, 0

    def after_batch(self):
        self.batches += self.learn.training

    def after_epoch(self):
        self.epochs += 1


@pytest.fixture
def small_batch_learner(colour_path):
    """The tiny model on the colour images in batches of 2: several batches in each set."""
    import torch
    from helpers import tiny_model

    from course_utils.learner import Learner
    from course_utils.vision import ImageList, imagenet_stats

    data = (ImageList.from_folder(colour_path, include=["train", "valid"]).split_by_folder().label_from_folder()
            .transform(size=16).databunch(bs=2, num_workers=0, device=torch.device("cpu")).normalize(imagenet_stats))
    return Learner(data, tiny_model(data.c))


@pytest.fixture
def smoke(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    monkeypatch.setattr(config, "_smoke_announced", False)


def test_without_the_switch_a_fit_runs_every_batch_of_every_epoch(small_batch_learner, monkeypatch):
    monkeypatch.delenv("COURSE_SMOKE", raising=False)
    counter = CountBatches()
    small_batch_learner.fit(2, 1e-3, callbacks=[counter], progress=False)
    assert counter.epochs == 2 and counter.batches == 2 * len(small_batch_learner.data.train_dl) > 4


def test_smoke_fit_runs_one_epoch_of_one_batch(small_batch_learner, smoke):
    counter = CountBatches()
    small_batch_learner.fit_one_cycle(5, 1e-3)
    small_batch_learner.fit(3, 1e-3, callbacks=[counter], progress=False)
    assert counter.epochs == 1 and counter.batches == config.SMOKE_BATCHES
    assert len(small_batch_learner.recorder.epoch_rows) == 1


def test_smoke_predictions_and_validation_stop_after_one_batch(small_batch_learner, smoke):
    first = [len(yb) for _, yb in small_batch_learner.data.ordered_dl("valid")]
    assert len(first) > config.SMOKE_BATCHES  # so that stopping early shows
    n = sum(first[:config.SMOKE_BATCHES])
    preds, targs = small_batch_learner.get_preds()
    assert len(preds) == len(targs) == n
    assert len(small_batch_learner.TTA()[0]) == n
    assert small_batch_learner.validate()["valid_loss"] is not None


def test_smoke_lr_find_stops_after_one_batch(small_batch_learner, smoke):
    small_batch_learner.lr_find()
    assert len(small_batch_learner.recorder.losses) == config.SMOKE_BATCHES


def test_the_switch_is_announced_once(small_batch_learner, smoke, capsys):
    small_batch_learner.fit(1, 1e-3, progress=False)
    small_batch_learner.get_preds()
    assert capsys.readouterr().out.count("COURSE_SMOKE=1") == 1


def test_a_bad_value_is_refused(monkeypatch):
    monkeypatch.setenv("COURSE_SMOKE", "maybe")
    with pytest.raises(ValueError, match="COURSE_SMOKE must be 1"):
        config.smoke_batches()


def test_smoke_training_batches_of_images_keep_their_first_images(small_batch_learner, smoke, monkeypatch):
    """The backward pass, most of a step's time, runs on SMOKE_TRAIN_ITEMS images; validation sees whole batches."""
    import course_utils.learner as learner_module

    monkeypatch.setattr(learner_module, "SMOKE_TRAIN_ITEMS", 1)  # the tiny learner's batches are of 2
    sizes = []

    class Sizes(Callback):
        def after_loss(self):
            sizes.append((self.learn.training, len(self.learn.xb), len(self.learn.yb)))

    assert small_batch_learner.data.bs > 1
    small_batch_learner.fit(1, 1e-3, callbacks=[Sizes()], progress=False)
    k = 1
    assert sizes[0] == (True, k, k)
    assert sizes[1][0] is False and sizes[1][1] > k
