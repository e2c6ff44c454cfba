"""Metrics against values computed by hand."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from course_utils.learner import Metric
from course_utils.metrics import accuracy, accuracy_thresh, dice, error_rate, fbeta, masked_accuracy, mse, rmse


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


def test_accuracy_is_share_of_correct_arg_max():
    preds = torch.tensor([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.2, 0.1], [0.3, 0.2, 0.5]])
    targs = torch.tensor([1, 0, 2, 2])
    assert accuracy(preds, targs).item() == pytest.approx(3 / 4)
    assert error_rate(preds, targs).item() == pytest.approx(1 / 4)


def test_accuracy_thresh_is_the_mean_over_all_elements_after_sigmoid():
    # logit -1 has probability 0.269: above thresh 0.2 (predicted) though the raw logit is not
    logits = torch.tensor([[-1.0, -3.0, 2.0], [0.5, -2.0, -1.0]])
    targs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # predictions at 0.2: [[1,0,1],[1,0,1]] -> matches [[1,1,0],[1,0,1]] -> 4 of 6
    assert accuracy_thresh(logits, targs, thresh=0.2).item() == pytest.approx(4 / 6)
    # without the sigmoid the raw values are compared: [[0,0,1],[1,0,0]] -> matches [[0,1,0],[1,0,0]] -> 2 of 6
    assert accuracy_thresh(logits, targs, thresh=0.2, sigmoid=False).item() == pytest.approx(2 / 6)


def test_accuracy_thresh_default_threshold_is_one_half():
    logits = _logit(torch.tensor([[0.4, 0.6]]))
    assert accuracy_thresh(logits, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(1.0)


FBETA_PROBS = torch.tensor([
    [0.9, 0.1, 0.8, 0.3],    # predicted at 0.2: {0, 2, 3}
    [0.1, 0.15, 0.05, 0.0],  # predicted: nothing
    [0.5, 0.1, 0.1, 0.6],    # predicted: {0, 3}
])
FBETA_TARGS = torch.tensor([
    [1.0, 0.0, 0.0, 1.0],    # tp 2, P 2/3, R 1   -> F2 = 5*(2/3)/(4*(2/3)+1) = 10/11
    [0.0, 1.0, 0.0, 0.0],    # no prediction      -> 0
    [1.0, 1.0, 1.0, 0.0],    # tp 1, P 1/2, R 1/3 -> F2 = 5*(1/6)/(2+1/3) = 5/14
])
FBETA_EXPECTED = (10 / 11 + 0 + 5 / 14) / 3  # = 65/154


def test_fbeta_is_per_sample_f2_averaged_over_samples():
    got = fbeta(FBETA_PROBS, FBETA_TARGS, thresh=0.2, sigmoid=False).item()
    assert got == pytest.approx(FBETA_EXPECTED, rel=1e-6)
    each = [fbeta(FBETA_PROBS[i:i + 1], FBETA_TARGS[i:i + 1], thresh=0.2, sigmoid=False).item() for i in range(3)]
    assert each == pytest.approx([10 / 11, 0, 5 / 14], rel=1e-6)


def test_fbeta_applies_the_sigmoid_to_logits_by_default():
    got = fbeta(_logit(FBETA_PROBS.clamp(1e-4, 1 - 1e-4)), FBETA_TARGS).item()  # default thresh is 0.2
    assert got == pytest.approx(FBETA_EXPECTED, rel=1e-6)


def test_fbeta_is_not_the_pooled_f2():
    """Kaggle's Planet score averages per-sample F2; pooling all pairs (tp 3 of 5 predicted and 6 true: P 3/5,
    R 1/2) would give 15/29 = 0.517 here, which is what fbeta scores when all the pairs are one sample."""
    pooled = fbeta(FBETA_PROBS.reshape(1, -1), FBETA_TARGS.reshape(1, -1), sigmoid=False).item()
    assert pooled == pytest.approx(15 / 29, rel=1e-6)
    got = fbeta(FBETA_PROBS, FBETA_TARGS, sigmoid=False).item()
    assert got == pytest.approx(65 / 154, rel=1e-6) and got != pytest.approx(pooled, rel=1e-3)


def test_fbeta_with_beta_one_is_f1():
    # sample 0: P 2/3, R 1 -> F1 = 0.8; sample 2: P 1/2, R 1/3 -> F1 = 0.4
    got = fbeta(FBETA_PROBS, FBETA_TARGS, beta=1.0, sigmoid=False).item()
    assert got == pytest.approx((0.8 + 0 + 0.4) / 3, rel=1e-6)


def test_fbeta_perfect_predictions_score_one():
    targs = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert fbeta(targs, targs, sigmoid=False).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("targs", [torch.tensor([0, 2, 1]), torch.tensor([[0], [2], [1]])])
def test_fbeta_on_single_label_targets_raises_a_clear_value_error(targs):
    with pytest.raises(ValueError, match="multi-label.*accuracy"):
        fbeta(torch.randn(3, 4), targs)


def test_masked_accuracy_ignores_the_void_code():
    void = 9
    # 1 image, 3 classes, 2x3 pixels; arg-max prediction per pixel: [[0, 1, 2], [2, 1, 0]]
    pred_cls = torch.tensor([[0, 1, 2], [2, 1, 0]])
    logits = torch.nn.functional.one_hot(pred_cls, 3).permute(2, 0, 1)[None].float()
    targs = torch.tensor([[[0, 1, void], [1, void, 0]]])  # 4 non-void pixels, 3 correct
    assert masked_accuracy(logits, targs, void_code=void).item() == pytest.approx(3 / 4)
    # a target with a channel dimension (N, 1, H, W) gives the same
    assert masked_accuracy(logits, targs[:, None], void_code=void).item() == pytest.approx(3 / 4)


def test_dice_and_iou_of_binary_segmentation():
    pred_cls = torch.tensor([[[1, 1, 0, 0]], [[1, 0, 0, 1]]])  # (N=2, H=1, W=4)
    targs = torch.tensor([[[1, 0, 0, 0]], [[1, 1, 0, 1]]])
    logits = torch.nn.functional.one_hot(pred_cls, 2).permute(0, 3, 1, 2).float()
    # pooled: |pred| = 4, |targ| = 4, intersection = 3
    assert dice(logits, targs).item() == pytest.approx(2 * 3 / (4 + 4))
    assert dice(logits, targs, iou=True).item() == pytest.approx(3 / (4 + 4 - 3))


def test_dice_of_empty_prediction_and_target_is_one():
    logits = torch.zeros(1, 2, 2, 2)
    logits[:, 0] = 1.0  # predict class 0 everywhere
    assert dice(logits, torch.zeros(1, 2, 2, dtype=torch.long)).item() == 1.0


def test_mse_and_rmse():
    a, b = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    assert mse(a, b).item() == pytest.approx((4 + 9) / 4)
    assert rmse(a, b).item() == pytest.approx(math.sqrt(13 / 4))


def test_metric_wrapper_keeps_the_function_name_of_a_partial():
    m = Metric(partial(fbeta, thresh=0.2))
    assert m.name == "fbeta"
    assert m(FBETA_PROBS, FBETA_TARGS).item() == pytest.approx(
        fbeta(FBETA_PROBS, FBETA_TARGS, thresh=0.2).item())
