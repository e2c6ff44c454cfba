"""The exercises of lesson3-planet: `acc_02` with `def`, F2 by hand for one image, reading `lr_find` after
unfreezing (on a curve recorded once, so every student reads the same one).
"""
from __future__ import annotations

import numpy as np
import torch

from ..metrics import accuracy_thresh, fbeta
from .core import _answer, _blank, _close, _function, _number, _Report, _result

__all__ = ["show_f2_image", "show_lr_curve", "check_acc_02", "check_f2_by_hand", "check_lr_slice"]


def _f2_variants(p: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    f = lambda **kw: float(fbeta(p[None], t[None], sigmoid=False, **kw))  # noqa: E731
    return {"F2": f(thresh=0.2, beta=2.0), "F1": f(thresh=0.2, beta=1.0), "F0.5": f(thresh=0.2, beta=0.5),
            "F2 at 0.5": f(thresh=0.5, beta=2.0)}


def pick_f2_image(probs: torch.Tensor, targs: torch.Tensor) -> int:
    """The first validation image whose F2 differs clearly from its F1, its F0.5 and its F2 at threshold 0.5, so
    that a slip in the formula shows in the answer; -1 if no image does (then `show_f2_image` uses a made-up one)."""
    for i in range(len(probs)):
        v = _f2_variants(probs[i].float(), targs[i].float())
        if min(abs(v["F2"] - v[k]) for k in ("F1", "F0.5", "F2 at 0.5")) > 0.02 and v["F2"] > 0:
            return i
    return -1


_F2_EXAMPLE = ([0.91, 0.05, 0.35, 0.12, 0.6, 0.25, 0.02], [1, 0, 0, 1, 1, 0, 0])


def show_f2_image(probs: torch.Tensor, targs: torch.Tensor, classes) -> tuple[torch.Tensor, torch.Tensor]:
    """Print one image's probability and true label for every tag (the image `pick_f2_image` chooses), and return
    (its probabilities, its multi-hot target) for the F2 exercise."""
    i = pick_f2_image(probs, targs)
    if i < 0:
        p, t = torch.tensor(_F2_EXAMPLE[0]), torch.tensor(_F2_EXAMPLE[1], dtype=torch.float32)
        classes = [f"tag{j}" for j in range(len(p))]
        print("(no validation image makes a good example, so here is a made-up one)")
    else:
        p, t = probs[i].float(), targs[i].float()
        print(f"validation image {i}:")
    for name, pj, tj in zip(classes, p.tolist(), t.tolist()):
        print(f"  {name:<20} p = {pj:.3f}   {'TRUE tag' if tj else ''}")
    return p, t


# The loss against the learning rate recorded by `lr_find(num_it=100)` right after `unfreeze()`, on tiny Planet
# (a ResNet-18 at 32 px trained 3 epochs from scratch at the stage-1 rate below, the LR finder's suggestion); the
# points `recorder.plot()` draws (the first 10 and last 5 left out), every 2nd one kept, rounded to 4 significant
# digits. The finder stopped after 91 batches, when the loss blew up. Recorded once, so every student reads
# the same curve.
_CURVE_STAGE1_LR = 0.02512
_CURVE_LRS = [
    6.31e-07, 9.12e-07, 1.318e-06, 1.905e-06, 2.754e-06, 3.981e-06, 5.754e-06, 8.318e-06, 1.202e-05, 1.738e-05,
    2.512e-05, 3.631e-05, 5.248e-05, 7.586e-05, 0.0001096, 0.0001585, 0.0002291, 0.0003311, 0.0004786,
    0.0006918, 0.001, 0.001445, 0.002089, 0.00302, 0.004365, 0.00631, 0.00912, 0.01318, 0.01905, 0.02754,
    0.03981, 0.05754, 0.08318, 0.1202, 0.1738, 0.2512, 0.3631, 0.5248,
]
_CURVE_LOSSES = [
    0.339, 0.3627, 0.3489, 0.3438, 0.3406, 0.3335, 0.347, 0.3413, 0.3448, 0.345, 0.3365, 0.3339, 0.3472, 0.3395,
    0.3381, 0.333, 0.3444, 0.3367, 0.3294, 0.3244, 0.3308, 0.3351, 0.3311, 0.3283, 0.328, 0.3227, 0.3234, 0.321,
    0.3221, 0.325, 0.3257, 0.3285, 0.3289, 0.3284, 0.3497, 0.3622, 0.391, 0.4316,
]


def lr_curve() -> tuple[list[float], list[float], float]:
    """(learning rates, smoothed losses, the stage-1 rate) of the recorded `lr_find` after unfreezing."""
    return list(_CURVE_LRS), list(_CURVE_LOSSES), _CURVE_STAGE1_LR


def show_lr_curve() -> tuple[list[float], list[float], float]:
    """Draw the recorded curve as `learn.recorder.plot()` would (log scale, no suggestion) and return
    (lrs, losses, stage-1 rate)."""
    import matplotlib.pyplot as plt

    lrs, losses, lr = lr_curve()
    _, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)",
           title=f"lr_find after unfreeze(); stage 1 trained at lr = {lr:.2g}")
    ax.grid(True, which="both", alpha=0.3)
    return lrs, losses, lr


def check_acc_02(ns: dict, preds: torch.Tensor, targs: torch.Tensor) -> None:
    """Planet, exercise 1: `acc_02` written with `def` instead of `partial`. The student's `my_acc_02(inp, targ)`
    must equal `accuracy_thresh(inp, targ, thresh=0.2)` on the validation outputs `preds` (raw activations) and
    targets `targs`, and on a made-up batch whose probabilities cover 0.01..0.99, where every threshold differs."""
    r = _Report("acc_02 with def", "my_acc_02")
    fn = _answer(ns, "my_acc_02", "lesson3-planet")
    if _blank(fn):
        return r.blank("with `def my_acc_02(inp, targ): ...`")
    if not _function(r, fn, "(inp, targ)"):
        return
    probs = torch.linspace(0.01, 0.99, 99)
    grid_logits = torch.log(probs / (1 - probs)).repeat(4, 1)
    grid_targs = (torch.arange(4 * 99).reshape(4, 99) % 3 == 0).float()
    for inp, targ, what in ((preds, targs, "the validation predictions"), (grid_logits, grid_targs, "a made-up batch")):
        ok, value = _result(r, fn, (inp, targ), "inp, targ")
        if not ok:
            return
        got = _number(value)
        if got is None:
            shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
            return r.hint(f"my_acc_02 returned {shape}, not one number: average over all (image, tag) pairs "
                          "with `.mean()`.")
        want = float(accuracy_thresh(inp, targ, thresh=0.2))
        if _close(got, want):
            continue
        if _close(got, float(accuracy_thresh(inp, targ, thresh=0.2, sigmoid=False))):
            return r.hint("it compares the raw activations with 0.2: the model outputs logits, so apply "
                          "`.sigmoid()` first to get probabilities.")
        for t in [round(x, 2) for x in np.arange(0.05, 0.96, 0.05)]:
            if _close(got, float(accuracy_thresh(inp, targ, thresh=t))):
                return r.hint(f"it matches accuracy_thresh with thresh={t}, not 0.2: check the threshold.")
        return r.hint(f"on {what} it gives {got:.4f}, accuracy_thresh(..., thresh=0.2) gives {want:.4f}: a tag "
                      "counts as predicted when its probability is above 0.2, and the accuracy is the share of "
                      "(image, tag) pairs where that matches the target.")
    r.correct(f"my_acc_02 equals accuracy_thresh(thresh=0.2) on {len(preds)} validation images and on a made-up "
              "batch (probabilities 0.01 to 0.99).")


def check_f2_by_hand(ns: dict, probs: torch.Tensor, target: torch.Tensor) -> None:
    """Planet, exercise 2: F2 by hand for one image. `my_f2` (a number) must equal `fbeta` at threshold 0.2 with
    beta 2 for the probabilities `probs` and the multi-hot `target` of the image `show_f2_image` printed."""
    r = _Report("F2 of one image", "my_f2")
    value = _answer(ns, "my_f2", "lesson3-planet")
    if _blank(value):
        return r.blank("with the F2 of the image printed above (a number)")
    got = _number(value)
    if got is None:
        return r.hint(f"my_f2 should be one number, got a {type(value).__name__}.")
    v = _f2_variants(probs.float(), target.float())
    if _close(got, v["F2"], 2e-3):
        return r.correct(f"F2 = {v['F2']:.4f} (fbeta with thresh=0.2, beta=2 on this image).")
    if _close(got, v["F1"], 2e-3):
        return r.hint("that is F1 (beta=1): F2 puts beta² = 4 on recall, (1 + 4)·P·R / (4·P + R).")
    if _close(got, v["F0.5"], 2e-3):
        return r.hint("precision and recall are swapped: F2 = 5·P·R / (4·P + R), where R (recall) is the share of "
                      "the true tags you predicted.")
    if _close(got, v["F2 at 0.5"], 2e-3):
        return r.hint("that is F2 with threshold 0.5: the lesson predicts a tag when its probability is above 0.2.")
    pred = probs > 0.2
    tp = int((pred & target.bool()).sum())
    return r.hint(f"not F2 of this image. Count first: which tags have p > 0.2 (predicted)? Of those, how many are "
                  f"true tags (there are {tp})? Then precision, recall and 5·P·R / (4·P + R).")


def check_lr_slice(ns: dict, lrs: list[float], losses: list[float], stage1_lr: float) -> None:
    """Planet, exercise 3: reading a learning-rate curve after unfreezing. `my_slice` must follow the lesson's rule
    (48:50): right end the stage-1 rate divided by 5 to 10; left end about 10x before the point where the loss
    shoots up (within a factor 3 of a tenth of the edge `stop_improving` finds), never above a tenth of the
    right end, as `unfreeze_slice` caps it."""
    from ..callbacks import stop_improving

    r = _Report("reading lr_find after unfreezing", "my_slice")
    value = _answer(ns, "my_slice", "lesson3-planet")
    if _blank(value):
        return r.blank("with `slice(left, right)`")
    low, high, hint = _slice_ends(value)
    if hint:
        return r.hint(hint)
    edge = lrs[stop_improving(losses)[0]]
    if edge / 3 <= low <= edge * 3:
        return r.hint("the left end is where the loss shoots up: go back 10x from there.")
    if edge / 30 <= low <= edge / 3 and low > high / 10 * 1.05:
        return r.hint(f"the curve is read right (10x before where it shoots up), but {low:.1e} is more than a tenth "
                      "of the right end: the first layers should move at least 10x slower than the head, so take a "
                      "tenth of the right end (as unfreeze_slice does).")
    if low >= high:
        return r.hint("the left end is not below the right end: slice(left, right) gives `left` to the first "
                      "layers and `right` to the head, and the first layers should move slower.")
    if not (stage1_lr / 10 * 0.95 <= high <= stage1_lr / 5 * 1.05):
        if _close(high, stage1_lr, 0.05):
            return r.hint("the right end is the stage-1 rate itself: the head is already trained, so divide it "
                          "by 5 (or 10).")
        return r.hint(f"the right end should be the stage-1 rate ({stage1_lr:.0e}) divided by 5 to 10.")
    want_low = min(edge / 10, high / 10)
    if want_low / 3 <= low <= want_low * 3 and low <= high / 10 * 1.05:
        return r.correct(f"slice({low:.1e}, {high:.1e}): right end the stage-1 rate / {stage1_lr / high:.0f}; left end "
                         f"10x before where the loss climbs for good (near {edge:.1e}), at most a tenth of the "
                         "right end.")
    return r.hint(_left_end_miss(low, high, lrs[int(np.nanargmin(losses))], edge, want_low))


def _slice_ends(value) -> tuple[float | None, float | None, str | None]:
    """The two ends of the answer `value` as numbers, or a hint when it is not a slice of two positive numbers."""
    if not isinstance(value, slice):
        return None, None, f"my_slice should be a slice, `slice(left, right)`, not a {type(value).__name__}."
    if value.start is None:
        return None, None, ("slice(b) alone gives every earlier group b/10: after unfreezing give both ends, "
                            "slice(left, right).")
    low, high = _number(value.start), _number(value.stop)
    if low is None or high is None or low <= 0 or high <= 0:
        return None, None, "both ends of the slice must be positive numbers (learning rates)."
    return low, high, None


def _left_end_miss(low: float, high: float, lowest: float, edge: float, want_low: float) -> str:
    """The hint for a left end `low` that is off: at the curve's lowest point (`lowest`), above a tenth of the right
    end, or else too high or too low against `want_low`."""
    if lowest / 3 <= low <= lowest * 3 and not (edge / 30 <= lowest <= edge / 3):
        return ("the left end is at the lowest point of the curve: after unfreezing the curve is flat and its "
                "lowest point is noise. Find where it starts climbing for good, then go back 10x.")
    if low > high / 10 * 1.05:
        return ("the left end is more than a tenth of the right end: the first layers should move at least "
                "10x slower than the head, so when the reading lands above that, take a tenth of the right "
                "end (as unfreeze_slice does).")
    return (f"the left end is too {'high' if low > want_low else 'low'}: find the rate where the loss "
            "starts to shoot up and go back 10x (one decade to the left on the plot), but no more than a "
            "tenth of the right end.")
