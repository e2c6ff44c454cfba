"""Interpretation (top losses, confusion matrix, per-class table), threshold tuning and the submission writer."""
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
    result = tune_thresholds(planet_learner)
    y = planet_learner.data.train_ds.y
    assert y.thresh == result.per_class
    img = planet_path / "train-jpg" / "train_0.jpg"
    tags, hot, probs = planet_learner.predict(img)
    assert hot.tolist() == (probs > torch.tensor(result.per_class)).float().tolist()
    planet_learner.export()
    loaded = load_learner(planet_learner.path)
    assert loaded.data.train_ds.y.thresh == pytest.approx(result.per_class)
    assert loaded.predict(img)[0] == tags


def test_top_losses_are_sorted_and_match_the_per_item_loss(planet_learner):
    interp = Interpretation.from_learner(planet_learner)
    losses, idxs = interp.top_losses()
    assert torch.all(losses[:-1] >= losses[1:]), "largest loss first"
    raw, targs = planet_learner.get_preds(activ=False)
    i = int(idxs[0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(raw[i], targs[i])
    assert losses[0] == pytest.approx(float(expected), rel=1e-5)
    assert len(interp.top_losses(3)[0]) == 3
    shown = [ax for ax in interp.plot_top_losses(4).axes if ax.images]
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
    ax = interp.plot_confusion_matrix().axes[0]
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

