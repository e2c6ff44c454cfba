"""Interpretation (top losses, confusion matrix, per-class table), threshold tuning and the submission writer."""
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from course_utils.interpret import Interpretation, best_threshold, choose_thresholds, tune_thresholds, write_submission
from course_utils.learner import load_learner


def _separable_case():
    """Two classes whose scores separate perfectly, but only with a different threshold per class:
    class 0 positives score 0.6 and negatives 0.5; class 1 positives 0.4 and negatives 0.1."""
    targs = torch.tensor([[1, 0], [0, 1], [1, 1]] * 3, dtype=torch.float)  # (a sample with no tags scores 0 whatever)
    probs = torch.where(targs.bool(), torch.tensor([0.6, 0.4]), torch.tensor([0.5, 0.1]))
    return probs, targs


def test_best_single_threshold_is_the_one_with_the_highest_f2():
    targs = torch.tensor([[1, 0], [0, 1], [1, 1]], dtype=torch.float)
    probs = torch.where(targs.bool(), torch.tensor(0.45), torch.tensor(0.30))
    thresh, score = best_threshold(probs, targs)
    assert score == pytest.approx(1.0, abs=1e-6)
    assert 0.30 <= thresh < 0.45, "any threshold between the negatives' 0.30 and the positives' 0.45 is perfect"


def test_per_class_thresholds_beat_any_single_threshold_on_a_crafted_case():
    probs, targs = _separable_case()
    result = choose_thresholds(probs, targs, beta=2, baseline=0.2)
    assert result.global_score < 0.99, "no single threshold separates both classes"
    assert result.per_class_score == pytest.approx(1.0, abs=1e-6)
    assert 0.5 <= result.per_class[0] < 0.6 and 0.1 <= result.per_class[1] < 0.4
    assert result.baseline_score <= result.global_score <= result.per_class_score
    assert "+0." in str(result), "the report states the gain over the lesson's 0.2"


def test_tuned_thresholds_are_used_by_predict_and_survive_export(planet_learner, planet_path):
    result = tune_thresholds(planet_learner, apply=True)
    assert "per-class" in result.in_use
    y = planet_learner.data.train_ds.y
    assert y.thresh == result.per_class
    img = planet_path / "train-jpg" / "train_0.jpg"
    tags, hot, probs = planet_learner.predict(img)
    assert hot.tolist() == (probs > torch.tensor(result.per_class)).float().tolist()
    planet_learner.export()
    loaded = load_learner(planet_learner.path)
    assert loaded.data.train_ds.y.thresh == pytest.approx(result.per_class)
    assert loaded.predict(img)[0] == tags


def _fake_learner(probs, targs):
    """Just what tune_thresholds touches: validation predictions and the label list's threshold."""
    y = SimpleNamespace(thresh=0.2)
    return SimpleNamespace(get_preds=lambda ds_type: (probs, targs),
                           data=SimpleNamespace(train_ds=SimpleNamespace(y=y)))


def test_by_default_per_class_thresholds_that_only_fit_the_validation_set_are_not_installed():
    """Scores that mean the same for every class: one threshold is right for all. Per-class thresholds still
    'gain' on the 96 images they were chosen on, but not on held-out ones, so the single threshold is used."""
    g = torch.Generator().manual_seed(0)
    targs = (torch.rand(96, 17, generator=g) < 0.3).float()
    probs = 0.35 * targs + 0.39 * torch.rand(96, 17, generator=g)
    learn = _fake_learner(probs, targs)
    result = tune_thresholds(learn)
    assert result.per_class_score > result.global_score, "in-sample, the per-class fit looks like a gain"
    assert result.held_out_per_class_gain < result.held_out_global_gain
    assert learn.data.train_ds.y.thresh == result.global_thresh
    assert f"in use: the single threshold {result.global_thresh:.2f}" in str(result)


def test_by_default_no_tuned_threshold_is_installed_without_a_held_out_gain():
    """Pure noise, and a baseline that already predicts every tag (the best F2 noise allows)."""
    g = torch.Generator().manual_seed(0)
    probs, targs = torch.rand(96, 17, generator=g), (torch.rand(96, 17, generator=g) < 0.3).float()
    learn = _fake_learner(probs, targs)
    result = tune_thresholds(learn, baseline=0.02)
    assert learn.data.train_ds.y.thresh == 0.02
    assert "in use: the lesson's 0.02 for every class: no tuned choice gains" in str(result)


def test_by_default_thresholds_whose_gain_holds_on_held_out_images_are_installed():
    probs, targs = _separable_case()
    probs, targs = probs.repeat(8, 1), targs.repeat(8, 1)
    learn = _fake_learner(probs, targs)
    result = tune_thresholds(learn)
    assert result.held_out_per_class_gain > 0.05
    assert learn.data.train_ds.y.thresh == result.per_class
    assert "in use: the per-class thresholds" in str(result)


def test_apply_false_only_reports():
    probs, targs = _separable_case()
    learn = _fake_learner(probs.repeat(8, 1), targs.repeat(8, 1))
    assert "unchanged" in tune_thresholds(learn, apply=False).in_use
    assert learn.data.train_ds.y.thresh == 0.2


def test_top_losses_are_sorted_and_match_the_per_item_loss(planet_learner):
    interp = Interpretation.from_learner(planet_learner)
    losses, idxs = interp.top_losses()
    assert torch.all(losses[:-1] >= losses[1:]), "largest loss first"
    raw, targs = planet_learner.get_preds(activ=False)
    i = int(idxs[0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(raw[i], targs[i])
    assert losses[0] == pytest.approx(float(expected), rel=1e-5)
    assert len(interp.top_losses(3)[0]) == 3
    assert interp.plot_top_losses(4) is None, "a returned figure is drawn twice in Jupyter"
    shown = [ax for ax in plt.gcf().axes if ax.images]
    assert len(shown) == 4 and shown[0].get_title().endswith(f"loss {float(losses[0]):.2f}")  # worst first


def test_per_class_table_counts_support_and_refuses_single_label_data(planet_learner, tiny_learner):
    table = Interpretation(planet_learner).per_class_table(thresh=0.2)
    assert list(table.columns) == ["precision", "recall", "f2", "support"]
    _, targs = planet_learner.get_preds()
    assert table["support"].tolist() == targs.sum(0).int().tolist()
    with pytest.raises(TypeError, match="multi-label"):
        Interpretation(tiny_learner).per_class_table()


def test_confusion_matrix_counts_every_validation_item(tiny_learner):
    interp = Interpretation(tiny_learner)
    cm = interp.confusion_matrix()
    preds, targs = tiny_learner.get_preds()
    assert cm.sum() == len(targs)
    assert cm.trace() == int((preds.argmax(1) == targs).sum())
    assert all(a != p for a, p, _ in interp.most_confused())
    assert interp.plot_confusion_matrix() is None
    ax = plt.gcf().axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), cm.numpy())
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(cm.flatten().tolist())


def test_submission_has_kaggle_columns_and_one_row_per_test_image(planet_learner, planet_path, tmp_path):
    out = tmp_path / "submission.csv"
    df = write_submission(planet_learner, planet_path / "test-jpg", out, thresh=0.2)
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == ["image_name", "tags"]
    assert written["image_name"].tolist() == ["test_0"] == df["image_name"].tolist()
    classes = set(planet_learner.data.classes)
    assert all(t in classes for t in written["tags"][0].split())

