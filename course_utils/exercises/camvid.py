"""The exercises of lesson3-camvid: the masked pixel accuracy by hand, the validation set from valid.txt, and the
learning rate of each layer group (`check_group_rates`, which lesson3-imdb's third exercise uses too).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..metrics import masked_accuracy
from .core import _answer, _blank, _close, _function, _number, _Report, _result

__all__ = ["check_acc_camvid", "check_camvid_split", "check_group_rates"]


def check_acc_camvid(ns: dict, output: torch.Tensor, target: torch.Tensor, void_code: int) -> None:
    """CamVid, exercise 1: the masked pixel accuracy by hand. `my_acc_camvid(input, target)` must equal
    `masked_accuracy(input, target, void_code)` on a validation batch (`output`: the U-Net's raw outputs,
    (bs, classes, h, w); `target`: the masks), on the same batch with the left half of every mask Void, and give
    nan (nothing to score) when every pixel is Void."""
    r = _Report("masked pixel accuracy", "my_acc_camvid")
    fn = _answer(ns, "my_acc_camvid", "lesson3-camvid")
    if _blank(fn):
        return r.blank("with `def my_acc_camvid(input, target): ...`")
    if not _function(r, fn, "(input, target)"):
        return
    half = target.clone()
    half[..., : half.shape[-1] // 2] = void_code
    out_half = output.clone()  # predict Void where it is Void, so that counting Void pixels shows
    out_half[:, void_code][(half.squeeze(1) if half.dim() == output.dim() else half) == void_code] = 1e4
    cases = [(output, target, "a validation batch"), (out_half, half, "the batch with half of each mask Void")]
    shapes = (f"input is {tuple(output.shape)} (bs, classes, h, w), so a pixel's prediction is "
              f"`input.argmax(dim=1)`; target is {tuple(target.shape)}"
              + (": `target.squeeze(1)` gives (bs, h, w)." if target.dim() == output.dim() else "."))
    for inp, targ, what in cases:
        ok, value = _result(r, fn, (inp, targ), "input, target", shapes)
        if not ok:
            return
        got = _number(value)
        if got is None:
            return r.hint(f"on {what} it returned {getattr(value, 'shape', type(value).__name__)}, not one number: "
                          "take the mean over the kept pixels.")
        hint = _accuracy_miss(got, inp, targ, void_code, what, shapes)
        if hint:
            return r.hint(hint)
    void = torch.full_like(target, void_code)
    ok, value = _result(r, fn, (output, void), "input, target")
    if not ok:
        return
    got = _number(value)
    if got is None or not math.isnan(got):
        return r.hint(f"on a mask that is all Void it gives {value!r}: there is no labelled pixel to score "
                      "(0 right out of 0), so the metric must give nan, as acc_camvid does. A number there means "
                      "Void pixels were counted (or 0/0 was replaced by a value).")
    r.correct(f"my_acc_camvid equals acc_camvid on a batch of {len(target)} masks, on the same masks half Void, "
              "and gives nan on an all-Void mask.")


def _accuracy_miss(got: float, inp: torch.Tensor, targ: torch.Tensor, void_code: int, what: str,
                   shapes: str) -> str | None:
    """The hint for a masked accuracy `got` on one batch that differs from `masked_accuracy`; None when it agrees."""
    want = float(masked_accuracy(inp, targ, void_code))
    if _close(got, want):
        return None
    t = targ.squeeze(1) if targ.dim() == inp.dim() else targ
    pred = inp.argmax(dim=1)
    if _close(got, float((pred == t).float().mean())):
        return ("it counts the Void pixels too: leave out every pixel whose target is `void_code` "
                "(`keep = target != void_code`) before comparing.")
    if _close(got, float(((pred == t) & (t != void_code)).float().sum() / t.numel())):
        return "it divides by all pixels, Void included: divide by the number of non-Void pixels."
    return f"on {what} it gives {got:.4f}, acc_camvid gives {want:.4f}. {shapes}"


def check_camvid_split(ns: dict, path: Path) -> None:
    """CamVid, exercise 2: the validation set from `valid.txt`. `my_is_valid(x)` (x: an image's path) must be True
    exactly for the images named in `path/valid.txt`, checked on every image in `path/images`."""
    r = _Report("the validation set from valid.txt", "my_is_valid")
    fn = _answer(ns, "my_is_valid", "lesson3-camvid")
    if _blank(fn):
        return r.blank("with `def my_is_valid(x): ...`")
    if not _function(r, fn, "(x)"):
        return
    path = Path(path)
    wanted = set((path / "valid.txt").read_text().split())
    images = sorted((path / "images").glob("*.png"))
    chosen = set()
    for f in images:
        ok, value = _result(r, fn, (f,), f"Path({str(f)!r})")
        if not ok:
            return
        if value:
            chosen.add(f.name)
    if chosen == wanted:
        return r.correct(f"my_is_valid picks exactly the {len(wanted)} images of valid.txt out of {len(images)}.")
    if not chosen:
        return r.hint("it is False for every image: valid.txt lists file names (`street_064.png`), and x is a whole "
                      "path; compare `x.name`.")
    if len(chosen) == len(images):
        return r.hint("it is True for every image: only the images named in valid.txt are for validation.")
    extra, missing = sorted(chosen - wanted), sorted(wanted - chosen)
    return r.hint(f"it picks {len(chosen)} images, valid.txt names {len(wanted)}"
                  + (f"; not in valid.txt: {extra[:3]}" if extra else "")
                  + (f"; in valid.txt but not picked: {missing[:3]}" if missing else "")
                  + ". Read the names from valid.txt (not a random share: the file keeps whole video sequences apart).")


def check_group_rates(ns: dict, learn, lrs: slice, notebook: str, name: str = "my_rates") -> None:
    """CamVid exercise 3 and IMDB exercise 3: discriminative learning rates. `my_rates` (a list, one rate per layer
    group of `learn`, first group first) must equal what `learn.fit_one_cycle(..., lrs)` gives each group
    (`learn.lr_range(lrs)`: spread geometrically from lrs.start to lrs.stop), within 1%."""
    r = _Report("the learning rate of each layer group", name)
    value = _answer(ns, name, notebook)
    if _blank(value):
        return r.blank("with a list of rates, one per layer group")
    want = learn.lr_range(lrs)
    try:
        got = [float(v) for v in value]
    except (TypeError, ValueError):
        return r.hint(f"{name} should be a list of numbers, one per layer group, not a {type(value).__name__}.")
    n = len(want)
    if len(got) != n:
        return r.hint(f"{name} has {len(got)} rates, but the learner has {n} layer groups "
                      f"(len(learn.layer_groups)): one rate each.")
    close = lambda a, b: all(abs(x - y) <= 0.01 * abs(y) for x, y in zip(a, b))  # noqa: E731
    if close(got, want):
        ratio = want[1] / want[0] if n > 1 else 1.0
        return r.correct(f"{n} groups, from {want[0]:.2e} (first layers) to {want[-1]:.2e} (head), each group "
                         f"{ratio:.3g}x the one before.")
    if close(got[::-1], want):
        return r.hint("the order is reversed: the first layer group (the early layers) gets the smallest rate, "
                      "the head the largest.")
    if close(got, list(np.linspace(lrs.start, lrs.stop, n))):
        return r.hint("those are evenly spaced: a slice spreads the rates geometrically, each group the same "
                      "factor times the one before (evenly spaced on a log scale).")
    if len(set(round(g, 12) for g in got)) == 1:
        return r.hint("every group has the same rate: slice(a, b) gives a to the first group and b to the last.")
    return r.hint(f"the first group should get {lrs.start:.2e}, the last {lrs.stop:.2e}, and each group in between "
                  "the same factor more than the one before.")

