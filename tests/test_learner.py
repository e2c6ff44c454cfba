"""The Learner: learning-rate groups, one-cycle, freezing, lr_find, persistence, predictions."""
from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn as nn
from helpers import COLOURS, PLANET_CLASSES, tiny_model
from PIL import Image

from course_utils.callbacks import (
    Callback,
    OneCycleScheduler,
    loss_axis_limits,
    stop_improving,
    suggest_lr,
    unfreeze_slice,
)
from course_utils.learner import Learner, load_learner, lr_range
from course_utils.metrics import accuracy, accuracy_thresh, fbeta
from course_utils.vision import ImageList, cnn_learner, imagenet_stats, models

BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} changed"


def _colour_data(colour_path, bs=4):
    return (ImageList.from_folder(colour_path, include=["train", "valid"]).split_by_folder().label_from_folder()
            .transform(size=16).databunch(bs=bs, num_workers=0, device=torch.device("cpu"))
            .normalize(imagenet_stats))


# --- learning rates per layer group ------------------------------------------------------------------
def test_lr_range_float_gives_the_same_rate_to_every_group():
    assert lr_range(3e-3, 3) == [3e-3, 3e-3, 3e-3]


def test_lr_range_slice_stop_gives_a_tenth_to_all_but_the_last_group():
    assert lr_range(slice(1e-2), 3) == pytest.approx([1e-3, 1e-3, 1e-2], rel=1e-12)
    assert lr_range(slice(1e-2), 1) == pytest.approx([1e-2], rel=1e-12)


def test_lr_range_slice_start_stop_is_geometric():
    assert lr_range(slice(1e-5, 1e-3), 3) == pytest.approx([1e-5, 1e-4, 1e-3], rel=1e-12)
    assert lr_range(slice(1e-6, 1e-3), 4) == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3], rel=1e-12)
    assert lr_range(slice(1e-5, 1e-3), 1) == pytest.approx([1e-3], rel=1e-12)


def test_cnn_learner_has_three_layer_groups_and_maps_slices_onto_them(planet_learner):
    assert len(planet_learner.layer_groups) == 3
    assert len(planet_learner.opt.param_groups) == 3
    assert planet_learner.lr_range(slice(1e-5, 1e-3)) == pytest.approx([1e-5, 1e-4, 1e-3], rel=1e-12)
    assert planet_learner.lr_range(slice(1e-3)) == pytest.approx([1e-4, 1e-4, 1e-3], rel=1e-12)


class _GroupLRs(Callback):
    """Records every parameter group's learning rate at each training batch."""
    order = 5

    def __init__(self):
        self.lrs = []

    def before_fit(self):
        self.lrs = []

    def after_batch(self):
        if self.learn.training:
            self.lrs.append([g["lr"] for g in self.learn.opt.param_groups])


def test_fit_one_cycle_with_a_slice_peaks_each_group_at_its_own_rate(planet_data, tmp_path):
    rec = _GroupLRs()
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path, callbacks=[rec])
    learn.fit_one_cycle(1, slice(1e-5, 1e-3), pct_start=0.25)  # 4 batches: the peak is batch 1
    assert len(rec.lrs) == 4
    assert rec.lrs[1] == pytest.approx([1e-5, 1e-4, 1e-3], rel=1e-9)
    assert rec.lrs[0] == pytest.approx([1e-5 / 25, 1e-4 / 25, 1e-3 / 25], rel=1e-9)


# --- one cycle -----------------------------------------------------------------------------------------
def _scheduler(n_batches: int, n_epochs: int, lr_max, **kwargs) -> OneCycleScheduler:
    """A OneCycleScheduler attached to a stand-in learner with `n_batches` per epoch."""
    sched = OneCycleScheduler(lr_max, **kwargs)
    sched.learn = SimpleNamespace(n_epochs=n_epochs, data=SimpleNamespace(train_dl=range(n_batches)),
                                  set_hyper=lambda lrs, mom: None)
    sched.before_fit()
    return sched


def test_one_cycle_schedule_warms_up_then_anneals():
    lr, n = 1e-2, 100
    sched = _scheduler(n_batches=25, n_epochs=4, lr_max=[lr])
    lrs = [sched.schedule(i)[0][0] for i in range(n + 1)]
    moms = [sched.schedule(i)[1] for i in range(n + 1)]
    peak = int(n * 0.3)
    assert lrs[0] == pytest.approx(lr / 25, rel=1e-12)
    assert int(np.argmax(lrs)) == peak and lrs[peak] == pytest.approx(lr, rel=1e-12)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))        # rising to the peak
    assert all(a > b for a, b in zip(lrs[peak:n], lrs[peak + 1:n + 1]))   # falling after it
    assert lrs[n] == pytest.approx(lr / (25 * 1e4), rel=1e-9)
    assert lrs[n - 1] < lr / 1000                                         # the last batch is near the end value
    assert moms[0] == pytest.approx(0.95) and moms[peak] == pytest.approx(0.85) and moms[n] == pytest.approx(0.95)
    assert int(np.argmin(moms)) == peak


def test_one_cycle_schedule_is_half_way_at_the_middle_of_each_phase():
    """Cosine annealing: half of the way at half of each phase."""
    lr = 1.0
    sched = _scheduler(n_batches=10, n_epochs=10, lr_max=[lr], pct_start=0.2)  # warm-up 20, anneal 80
    assert sched.schedule(10)[0][0] == pytest.approx((lr / 25 + lr) / 2, rel=1e-9)
    assert sched.schedule(60)[0][0] == pytest.approx((lr + lr / 25e4) / 2, rel=1e-9)
    assert sched.schedule(10)[1] == pytest.approx(0.9)
    # and (1 - cos(pi/4)) / 2 = 14.6% of the way at a quarter, where a straight line would be at 25%
    quarter = (1 - math.cos(math.pi / 4)) / 2
    assert sched.schedule(5)[0][0] == pytest.approx(lr / 25 + (lr - lr / 25) * quarter, rel=1e-9)
    assert sched.schedule(40)[0][0] == pytest.approx(lr - (lr - lr / 25e4) * quarter, rel=1e-9)


def test_one_cycle_schedule_honours_div_factor_and_final_div():
    sched = _scheduler(10, 1, [1.0], div_factor=10.0, final_div=100.0, pct_start=0.5)
    assert sched.schedule(0)[0][0] == pytest.approx(0.1)
    assert sched.schedule(10)[0][0] == pytest.approx(0.01)


def test_fit_one_cycle_recorder_lrs_follow_the_schedule(colour_path):
    data = _colour_data(colour_path, bs=2)  # 9 batches per epoch
    learn = Learner(data, tiny_model(data.c))
    lr, epochs = 5e-2, 3
    learn.fit_one_cycle(epochs, lr)
    n = epochs * len(data.train_dl)
    rec = learn.recorder
    assert len(rec.lrs) == len(rec.moms) == len(rec.losses) == n == 27
    expected = _scheduler(len(data.train_dl), epochs, [lr])
    for i in range(n):
        lrs, mom = expected.schedule(i)
        assert rec.lrs[i] == pytest.approx(lrs[0], rel=1e-12)
        assert rec.moms[i] == pytest.approx(mom, rel=1e-12)
    peak = int(n * 0.3)
    assert rec.lrs[0] == pytest.approx(lr / 25) and int(np.argmax(rec.lrs)) == peak
    assert rec.lrs[-1] < rec.lrs[0]
    assert rec.moms[0] == pytest.approx(0.95) and min(rec.moms) == pytest.approx(0.85)
    assert len(rec.val_losses) == epochs and rec.nb_batches == [9, 18, 27]


# --- freezing ------------------------------------------------------------------------------------------
def _trainable(group: nn.Module) -> tuple[list[bool], list[bool]]:
    """(requires_grad of BatchNorm params, requires_grad of the other params) in a layer group."""
    bn, other = [], []
    for m in group.modules():
        for p in m.parameters(recurse=False):
            (bn if isinstance(m, BN) else other).append(p.requires_grad)
    return bn, other


def test_cnn_learner_without_pretraining_starts_unfrozen(planet_learner):
    assert all(p.requires_grad for p in planet_learner.model.parameters())


def test_freeze_trains_only_the_head_and_the_batchnorm_layers(planet_learner):
    learn = planet_learner
    learn.freeze()
    for g in learn.layer_groups[:2]:
        bn, other = _trainable(g)
        assert bn and all(bn), "BatchNorm layers of the body keep training"
        assert other and not any(other), "the rest of the body is frozen"
    assert all(p.requires_grad for p in learn.layer_groups[2].parameters())


def test_freeze_to_minus_two_unfreezes_the_second_group(planet_learner):
    learn = planet_learner
    learn.freeze_to(-2)
    bn, other = _trainable(learn.layer_groups[0])
    assert all(bn) and not any(other)
    assert all(p.requires_grad for g in learn.layer_groups[1:] for p in g.parameters())


def test_unfreeze_makes_everything_trainable(planet_learner):
    learn = planet_learner
    learn.freeze()
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_training_a_frozen_learner_leaves_the_frozen_weights_unchanged(planet_learner):
    learn = planet_learner
    learn.freeze()
    before = _state(learn.model)
    learn.fit(1, 1e-2)
    after = learn.model.state_dict()
    body_conv = "0.0.weight"  # resnet's first convolution, in group 0
    layer3_conv = "0.6.0.conv1.weight"  # a convolution of group 1
    head_linear = [k for k in before if k.startswith("1.") and k.endswith("weight") and before[k].dim() == 2][-1]
    assert torch.equal(before[body_conv], after[body_conv])
    assert torch.equal(before[layer3_conv], after[layer3_conv])
    assert not torch.equal(before[head_linear], after[head_linear])


def test_freeze_without_train_bn_freezes_batchnorm_too(planet_data, tmp_path):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path, train_bn=False)
    learn.freeze()
    bn, other = _trainable(learn.layer_groups[0])
    assert not any(bn) and not any(other)


# --- lr_find ----------------------------------------------------------------------------------------------
def test_lr_find_restores_weights_and_optimizer_exactly(planet_learner, capsys):
    learn = planet_learner
    learn.freeze()
    before = _state(learn.model)
    opt_lrs = [g["lr"] for g in learn.opt.param_groups]
    learn.lr_find(num_it=20)
    _assert_same_state(before, learn.model.state_dict())
    assert [g["lr"] for g in learn.opt.param_groups] == opt_lrs
    assert "LR Finder is complete" in capsys.readouterr().out


def test_lr_find_sweeps_exponentially_and_plot_suggests_a_rate_from_the_sweep(planet_learner):
    learn = planet_learner
    learn.lr_find(start_lr=1e-6, end_lr=1.0, num_it=20, stop_div=False)
    lrs = learn.recorder.lrs
    assert len(lrs) == 20
    assert lrs[0] == pytest.approx(1e-6)
    ratios = np.array(lrs[1:]) / np.array(lrs[:-1])
    np.testing.assert_allclose(ratios, (1.0 / 1e-6) ** (1 / 20), rtol=1e-9)
    assert learn.recorder.plot(suggestion=True) is None  # nothing echoed under the plot in a notebook
    lr = learn.recorder.suggested_lr
    assert isinstance(lr, float)
    assert min(lrs) <= lr <= max(lrs)
    dot = [line for line in plt.gca().lines if line.get_label().startswith("suggested")][0]
    assert dot.get_xdata()[0] == pytest.approx(lr)  # the red dot sits at the value its legend names
    plt.close("all")


def test_lr_finder_plot_clips_a_divergence_off_the_loss_axis():
    losses = [2.3, 2.2, 1.9, 1.5, 1.4, 3.0, 2e10]
    bottom, top = loss_axis_limits(losses)
    assert bottom < 1.4 and 2.3 < top < 5


@pytest.mark.parametrize("lr, suggested, fixed, expected, words", [
    (1e-2, 1e-5, None, slice(1e-5, 2e-3), "the LR finder's suggestion"),
    (1e-2, 7e-3, None, slice(2e-4, 2e-3), "capped at a tenth"),
    (1e-2, 7e-3, 1e-5, slice(1e-5, 2e-3), "the lesson's fixed"),
    (1e-2, None, None, slice(2e-4, 2e-3), "no suggestion given"),
])
def test_unfreeze_slice_is_one_rule_and_prints_the_numbers_it_used(capsys, lr, suggested, fixed, expected, words):
    got = unfreeze_slice(lr, suggested=suggested, fixed_low=fixed)
    assert got.start == pytest.approx(expected.start) and got.stop == pytest.approx(expected.stop)
    out = capsys.readouterr().out
    assert words in out and f"slice({got.start:.1e}, {got.stop:.1e})" in out


def test_unfreeze_slice_refuses_a_rate_that_is_not_positive():
    with pytest.raises(ValueError, match="positive"):
        unfreeze_slice(float("nan"))


def test_lr_find_stops_when_the_loss_explodes(tiny_learner):
    tiny_learner.lr_find(start_lr=1e-3, end_lr=1e6, num_it=100)
    assert len(tiny_learner.recorder.lrs) < 100


class _CountingLoader:
    def __init__(self, dl):
        self.dl, self.iterations = dl, 0

    def __iter__(self):
        self.iterations += 1
        return iter(self.dl)

    def __len__(self):
        return len(self.dl)


def test_lr_find_never_runs_the_validation_set(tiny_learner):
    """With 4 batches per epoch, a 12-step sweep spans 3 epochs; none of them should validate."""
    counter = _CountingLoader(tiny_learner.data.valid_dl)
    tiny_learner.data.valid_dl = counter
    tiny_learner.lr_find(num_it=12, stop_div=False)
    assert len(tiny_learner.recorder.lrs) == 12
    assert counter.iterations == 0
    assert tiny_learner.recorder.val_losses == []


def _lr_curve(noise: float = 0.0, seed: int = 0, explode_to_inf: bool = False):
    """100 learning rates from 1e-7 to 10: loss flat (0-29), falling steadily (30-69), then exploding (70-99)."""
    lrs = list(np.logspace(-7, 1, 100))
    rng = np.random.default_rng(seed)
    losses = [2.0] * 30 + list(np.linspace(2.0, 0.5, 41)[1:]) + [0.5 * 1.3 ** k for k in range(1, 31)]
    losses = np.asarray(losses) + rng.normal(0, noise, 100) * (np.arange(100) < 30)
    if explode_to_inf:
        losses[90:] = [np.inf, np.nan] * 5
    return lrs, list(losses)


@pytest.mark.parametrize("noise, explode_to_inf", [(0.0, False), (0.01, False), (0.0, True)])
def test_suggest_lr_picks_a_rate_in_the_falling_part_of_the_curve(noise, explode_to_inf):
    lrs, losses = _lr_curve(noise, explode_to_inf=explode_to_inf)
    lr = suggest_lr(lrs, losses)
    assert isinstance(lr, float)
    assert lrs[30] < lr < lrs[69], f"suggested {lr:.3g} is outside the falling part [{lrs[30]:.3g}, {lrs[69]:.3g}]"


def test_suggest_lr_is_below_the_rate_with_the_lowest_loss():
    """The minimum sits right before the explosion: too late; the suggestion comes earlier in the descent."""
    lrs, losses = _lr_curve()
    assert suggest_lr(lrs, losses) < lrs[int(np.argmin(losses))]


def test_suggest_lr_on_a_short_descent_stays_a_decade_before_the_minimum():
    """A trained model after resizing: the loss dips 30% to a minimum, creeps up within 10% for a decade, then
    shoots up. 'A tenth of the edge' would land on the minimum itself, the mistake the lesson warns about."""
    lrs = np.logspace(-7, 1, 100)  # 12.4 points per decade
    losses = np.concatenate([np.linspace(0.30, 0.21, 60), 0.21 + np.linspace(0, 0.02, 13)[1:],
                             0.23 * 1.3 ** np.arange(1, 29)])
    i_min = int(np.argmin(losses))
    old_edge = np.flatnonzero(losses <= 1.1 * losses[i_min])[-1]
    assert lrs[i_min] / 2 < lrs[old_edge] / 10 < lrs[i_min] * 2, "a tenth of the edge is at the minimum"
    assert suggest_lr(lrs, losses) == pytest.approx(lrs[i_min] / 10)
    assert stop_improving(losses)[0] == i_min


def test_suggest_lr_on_a_flat_curve_is_a_tenth_of_where_it_starts_to_climb():
    """After unfreezing: flat (noise only) until it shoots up; the noisy minimum must not decide."""
    rng = np.random.default_rng(0)
    lrs = np.logspace(-7, 1, 100)
    losses = np.concatenate([0.2 + rng.normal(0, 0.004, 80), 0.2 * 1.25 ** np.arange(1, 21)])
    edge, reason = stop_improving(losses)
    assert edge == 79 and "flat" in reason
    assert suggest_lr(lrs, losses) == pytest.approx(lrs[79] / 10)


def test_recorder_plot_without_suggestion_returns_none(tiny_learner):
    tiny_learner.lr_find(num_it=30)
    rec = tiny_learner.recorder
    assert rec.plot() is None
    ax = plt.gcf().axes[0]
    (line,) = ax.lines  # the curve alone, no suggestion marked
    assert ax.get_xscale() == "log"
    np.testing.assert_allclose(line.get_xdata(), rec.lrs[10:-5])  # the first 10 and last 5 batches left out
    np.testing.assert_allclose(line.get_ydata(), rec.smooth_losses[10:-5])


# --- save / load -----------------------------------------------------------------------------------------
def test_save_then_load_gives_identical_predictions(planet_data, tmp_path):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path)
    learn.fit(1, 1e-3)
    f = learn.save("stage-1")
    assert f == tmp_path / "models" / "stage-1.pth" and f.is_file()
    preds, _ = learn.get_preds()
    torch.manual_seed(123)
    other = cnn_learner(planet_data, models.resnet18, pretrained=False, path=tmp_path)
    assert not torch.equal(other.get_preds()[0], preds)
    assert other.load("stage-1") is other
    assert torch.equal(other.get_preds()[0], preds)


def test_loading_weights_of_a_model_with_another_number_of_classes_raises_a_plain_runtime_error(
        planet_learner, colour_path, tmp_path):
    planet_learner.save("planet")
    colour = cnn_learner(_colour_data(colour_path), models.resnet18, pretrained=False, path=tmp_path)
    with pytest.raises(RuntimeError) as info:
        colour.load("planet")
    msg = str(info.value)
    assert "number of classes" in msg and "planet.pth" in msg
    assert len(msg.splitlines()) <= 3, "a short message, not torch's list of every mismatched tensor"
    assert msg.splitlines()[-1].startswith("(details: size mismatch"), "the one detail shown is the first mismatch"


def test_load_of_a_missing_file_lists_the_saved_models(planet_learner):
    planet_learner.save("stage-1")
    with pytest.raises(FileNotFoundError, match="stage-1"):
        planet_learner.load("stage-9")


def test_save_leaves_no_temporary_files(planet_learner, tmp_path):
    planet_learner.save("a")
    planet_learner.save("a")  # overwrite
    planet_learner.save("b", with_opt=False)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["a.pth", "b.pth"]


def test_a_failing_save_keeps_the_previous_file_intact(planet_learner, tmp_path, monkeypatch):
    f = planet_learner.save("stage-1")
    good = f.read_bytes()
    saved = _state(planet_learner.model)
    with torch.no_grad():
        for p in planet_learner.model.parameters():
            p.add_(1.0)

    def broken_save(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        planet_learner.save("stage-1")
    monkeypatch.undo()
    assert f.read_bytes() == good
    assert sorted(p.name for p in f.parent.iterdir()) == ["stage-1.pth"]
    planet_learner.load("stage-1")
    _assert_same_state(saved, planet_learner.model.state_dict())


def test_saved_files_get_the_usual_permissions(planet_learner):
    old = os.umask(0o022)
    try:
        f = planet_learner.save("stage-1")
        e = planet_learner.export()
    finally:
        os.umask(old)
    assert f.stat().st_mode & 0o777 == 0o644
    assert e.stat().st_mode & 0o777 == 0o644


# --- export / load_learner -------------------------------------------------------------------------------
def test_export_then_load_learner_predicts_the_same(planet_learner, planet_path):
    learn = planet_learner
    learn.fit(1, 1e-3)
    f = learn.export()
    assert f == learn.path / "export.pkl" and f.is_file()
    img = planet_path / "test-jpg" / "test_0.jpg"
    tags, hot, probs = learn.predict(img, thresh=0.5)
    loaded = load_learner(learn.path)
    assert loaded.data.classes == PLANET_CLASSES
    tags2, hot2, probs2 = loaded.predict(img, thresh=0.5)
    assert probs.shape == (len(PLANET_CLASSES),)
    torch.testing.assert_close(probs2, probs, atol=1e-6, rtol=1e-5)
    assert tags2 == tags == [c for c, p in zip(PLANET_CLASSES, probs.tolist()) if p > 0.5]
    assert torch.equal(hot2, hot)
    # the threshold is honoured: tags are exactly those whose probability exceeds it
    for thresh in (0.0, float(probs.median()), 1.0):
        tags_t, hot_t, _ = loaded.predict(img, thresh=thresh)
        assert tags_t == [c for c, p in zip(PLANET_CLASSES, probs.tolist()) if p > thresh]
        assert hot_t.tolist() == [float(p > thresh) for p in probs.tolist()]
    assert loaded.predict(img, thresh=0.0)[0] == PLANET_CLASSES and loaded.predict(img, thresh=1.0)[0] == []


def test_load_learner_works_from_another_working_directory(planet_path, tmp_path, monkeypatch):
    """Data given by a relative path; export; then load from elsewhere by an absolute path."""
    import shutil

    from course_utils.vision import get_transforms

    shutil.copytree(planet_path, tmp_path / "planet")
    monkeypatch.chdir(tmp_path)
    data = (ImageList.from_csv("planet", "train_v2.csv", folder="train-jpg", suffix=".jpg")
            .split_by_rand_pct(0.25, seed=42).label_from_df(label_delim=" ")
            .transform(get_transforms(), size=32).databunch(bs=4, num_workers=0).normalize(imagenet_stats))
    learn = cnn_learner(data, models.resnet18, pretrained=False)
    exported = learn.export().resolve()
    assert exported == (tmp_path / "planet" / "export.pkl").resolve()
    img = (tmp_path / "planet" / "test-jpg" / "test_0.jpg").resolve()
    expected = learn.predict(img)[2]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_learner(exported.parent)
    torch.testing.assert_close(loaded.predict(img)[2], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(load_learner(exported).predict(img)[2], expected, atol=1e-6, rtol=1e-5)


def test_load_learner_without_an_export_says_to_call_export(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"export\(\)"):
        load_learner(tmp_path)


def test_export_of_a_hand_built_model_raises_value_error(tiny_learner):
    with pytest.raises(ValueError, match="save"):
        tiny_learner.export()


def test_load_learner_keeps_the_validation_transforms_and_normalisation(planet_learner, planet_data):
    planet_learner.export()
    loaded = load_learner(planet_learner.path)
    item = planet_data.valid_ds.x.items[0]
    torch.testing.assert_close(loaded.data.one_item(item), planet_data.one_item(item))


# --- predictions ---------------------------------------------------------------------------------------------
def test_get_preds_returns_probabilities_and_targets_of_the_validation_set(planet_learner, planet_data):
    preds, targs = planet_learner.get_preds()
    n = len(planet_data.valid_ds)
    assert preds.shape == (n, len(PLANET_CLASSES)) and targs.shape == (n, len(PLANET_CLASSES))
    assert preds.min() >= 0 and preds.max() <= 1
    expected = torch.stack([planet_data.valid_ds.y.get(i) for i in range(n)])
    assert torch.equal(targs, expected)
    raw, _ = planet_learner.get_preds(activ=False)
    torch.testing.assert_close(raw.sigmoid(), preds)


def test_get_preds_single_label_rows_sum_to_one(tiny_learner, colour_data):
    preds, targs = tiny_learner.get_preds()
    assert preds.shape == (len(colour_data.valid_ds), 3)
    torch.testing.assert_close(preds.sum(1), torch.ones(len(preds)))
    assert targs.dtype == torch.long


def test_get_preds_of_the_training_set_covers_the_whole_set_in_order(tiny_learner, colour_data):
    _, targs = tiny_learner.get_preds("train")
    expected = torch.stack([colour_data.train_ds.y.get(i) for i in range(len(colour_data.train_ds))])
    assert targs.shape == expected.shape
    assert torch.equal(targs, expected)


def test_tta_returns_predictions_and_targets_of_the_validation_set(planet_learner, planet_data):
    preds, targs = planet_learner.TTA(n=2)
    n = len(planet_data.valid_ds)
    assert preds.shape == (n, len(PLANET_CLASSES)) and targs.shape == (n, len(PLANET_CLASSES))
    assert preds.min() >= 0 and preds.max() <= 1
    plain, plain_targs = planet_learner.get_preds()
    assert torch.equal(targs, plain_targs)
    torch.testing.assert_close(planet_learner.TTA(beta=1.0, n=1)[0], plain)
    assert not torch.allclose(preds, plain)  # the augmented passes change the predictions


def test_training_reduces_the_loss_on_an_easy_problem(colour_data, capsys):
    """Each image's class is its colour: a few epochs of the tiny model learn it."""
    learn = Learner(colour_data, tiny_model(colour_data.c), metrics=accuracy)
    before = learn.validate()
    learn.fit_one_cycle(6, 0.1)
    after = learn.validate()
    assert after["valid_loss"] < 0.5 * before["valid_loss"]
    assert after["accuracy"] == 1.0
    rec = learn.recorder
    assert np.mean(rec.losses[-4:]) < np.mean(rec.losses[:4])
    assert rec.metric_names == ["accuracy"] and len(rec.metrics) == 6
    final = rec.final_results
    assert set(final) == {"train_loss", "valid_loss", "accuracy"}
    assert final["valid_loss"] == pytest.approx(after["valid_loss"]) and final["accuracy"] == 1.0
    out = capsys.readouterr().out
    assert "valid_loss" in out and "accuracy" in out


def test_predict_single_label_returns_class_index_and_probabilities(colour_data, colour_path):
    learn = Learner(colour_data, tiny_model(colour_data.c))
    learn.fit_one_cycle(6, 0.1)
    label, idx, probs = learn.predict(colour_path / "valid" / "red" / "red_0.png")
    assert label == "red" and int(idx) == sorted(COLOURS).index("red")
    assert probs.shape == (3,) and probs.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_predict_on_a_pil_image_leaves_the_image_usable(tiny_learner):
    img = Image.new("RGB", (16, 16), COLOURS["green"])
    first = tiny_learner.predict(img)[2]
    assert img.getpixel((0, 0)) == COLOURS["green"]
    torch.testing.assert_close(tiny_learner.predict(img)[2], first)


def test_recorder_plots_draw_one_figure_each_of_what_it_recorded_and_return_nothing(tiny_learner):
    """A returned figure would be drawn twice in Jupyter: once as the open figure, once as the cell's value."""
    tiny_learner.fit_one_cycle(2, 1e-2)
    rec = tiny_learner.recorder
    plt.close("all")
    assert rec.plot_losses() is None
    assert len(plt.get_fignums()) == 1
    train, valid = plt.gcf().axes[0].lines
    np.testing.assert_allclose(train.get_ydata(), rec.losses)
    np.testing.assert_allclose(valid.get_xdata(), rec.nb_batches)  # one point per epoch, at its last batch
    np.testing.assert_allclose(valid.get_ydata(), rec.val_losses)
    assert rec.plot_lr(show_moms=True) is None
    assert len(plt.get_fignums()) == 2
    lr_ax, mom_ax = plt.gcf().axes
    np.testing.assert_allclose(lr_ax.lines[0].get_ydata(), rec.lrs)
    np.testing.assert_allclose(mom_ax.lines[0].get_ydata(), rec.moms)
    assert max(rec.lrs) == pytest.approx(1e-2) and rec.moms[0] == pytest.approx(0.95)  # the one-cycle shapes
    plt.close("all")


def test_recorder_plot_metrics_draws_each_metric_per_epoch(planet_data, tmp_path):
    learn = cnn_learner(planet_data, models.resnet18, pretrained=False, metrics=[accuracy_thresh, fbeta], path=tmp_path)
    learn.fit(2, 1e-3)
    rec = learn.recorder
    assert rec.plot_metrics() is None
    axes = plt.gcf().axes
    assert [ax.get_title() for ax in axes] == list(rec.metric_names) == ["accuracy_thresh", "fbeta"]
    for i, ax in enumerate(axes):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), [m[i] for m in rec.metrics])
        assert len(ax.lines[0].get_ydata()) == 2


def test_fit_with_weight_decay_sets_it_on_every_group(planet_learner):
    planet_learner.fit(1, 1e-4, wd=0.25, progress=False)
    assert all(g["weight_decay"] == 0.25 for g in planet_learner.opt.param_groups)
    assert all(math.isfinite(v) for v in planet_learner.recorder.losses)


def test_smoothed_loss_is_the_debiased_moving_average(tiny_learner):
    tiny_learner.fit(1, 1e-2, progress=False)
    rec = tiny_learner.recorder
    avg = 0.0
    for n, loss in enumerate(rec.losses, 1):
        avg = 0.98 * avg + 0.02 * loss
        assert rec.smooth_losses[n - 1] == pytest.approx(avg / (1 - 0.98 ** n), rel=1e-9)
    assert rec.smooth_losses[0] == pytest.approx(rec.losses[0])


def test_learner_path_defaults_to_the_data_path(colour_data, colour_path):
    learn = Learner(colour_data, tiny_model(3))
    assert Path(learn.path) == Path(colour_path)


# --- Ctrl-C during training ---------------------------------------------------------------------------------
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
