"""Checks for the exercises under "Check your understanding" at the end of each lesson notebook.

A student writes an answer in a marked cell (a function or a value with the name the exercise gives); the next
cell calls one check here with `globals()` and the lesson's objects. A check never raises on a student's answer:
it prints one line, starting with

* `correct:` and what it checked, or
* `not yet:` and a hint naming what is wrong (a traceback of the student's code becomes a one-line hint), or
* `not answered yet:` while the answer cell still holds `...` (or None, or the name is not defined).

With `COURSE_SOLUTIONS=1` (teachers, `make test`) a check runs the reference answer instead, the code under the
exercise's name in `solutions/<notebook>.py`, executed in the notebook's namespace as if typed into the answer
cell; if that is not accepted (or not there) the check raises `SolutionRejected`, so a broken solution or check
fails the run.

Every check is fast (no training): it compares the answer with the course's own function on the lesson's data.
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .config import course_solutions
from .metrics import accuracy_thresh, fbeta, masked_accuracy

__all__ = ["SolutionRejected", "solutions_dir", "solution_code", "valid_outputs", "pick_f2_image", "show_f2_image",
           "lr_curve", "show_lr_curve", "make_shapes_folder", "check_acc_02", "check_f2_by_hand", "check_lr_slice",
           "check_acc_camvid", "check_camvid_split", "check_group_rates", "check_biwi_center", "check_to_unit",
           "check_holdout", "check_tokens", "check_numericalize", "check_folder_databunch", "check_dataset",
           "check_relu_sum", "EXERCISE_REVIEW"]

_MISSING = object()


class SolutionRejected(AssertionError):
    """A reference solution (COURSE_SOLUTIONS=1) that its check did not accept, or that is missing."""


def solutions_dir() -> Path:
    """The repository's `solutions/` folder (one file of reference answers per notebook)."""
    return Path(__file__).resolve().parent.parent / "solutions"


def solution_code(notebook: str, name: str) -> str:
    """The reference answer for exercise `name` of `notebook` (e.g. "lesson3-planet"): the code under the line
    `# %% name` in solutions/<notebook>.py, up to the next `# %%` line."""
    f = solutions_dir() / f"{notebook}.py"
    if not f.is_file():
        raise SolutionRejected(f"COURSE_SOLUTIONS=1 but there is no reference solution file {f}. Unset "
                               "COURSE_SOLUTIONS to check your own answers, or restore solutions/ from the repository.")
    sections = re.split(r"^# %% *(\w+) *$", f.read_text(encoding="utf-8"), flags=re.M)
    found = dict(zip(sections[1::2], sections[2::2]))
    if name not in found:
        raise SolutionRejected(f"{f} has no section `# %% {name}`; add the reference answer for {name} there.")
    return found[name]


def _answer(ns: dict, name: str, notebook: str):
    """The student's answer `name` in the namespace `ns`, or, with COURSE_SOLUTIONS=1, the reference one."""
    if course_solutions():
        exec(compile(solution_code(notebook, name), f"solutions/{notebook}.py:{name}", "exec"), ns)
    return ns.get(name, _MISSING)


def _blank(value) -> bool:
    return value is _MISSING or value is None or value is Ellipsis


class _Report:
    """Prints the one line a check ends with; in solutions mode anything but `correct` raises."""

    def __init__(self, exercise: str, name: str):
        self.exercise, self.name = exercise, name

    def correct(self, what: str) -> None:
        src = " (the reference solution)" if course_solutions() else ""
        print(f"correct{src}: {self.exercise}: {what}")

    def hint(self, why: str) -> None:
        if course_solutions():
            raise SolutionRejected(f"{self.exercise}: the reference solution for {self.name} was rejected: {why}")
        print(f"not yet: {self.exercise}: {why}")

    def blank(self, how: str = "", message: str = "") -> None:
        if course_solutions():
            raise SolutionRejected(f"{self.exercise}: the reference solution did not define {self.name}.")
        print(f"not answered yet: {self.exercise}: " + (message or f"replace the `...` in the answer cell "
              f"{how or f'with your {self.name}'}, run it, then run this cell again."))


def _call(fn: Callable, *args):
    """(result, None) or (None, 'ErrorType: message') if the student's function raised."""
    try:
        return fn(*args), None
    except Exception as e:  # noqa: BLE001  (any error in the student's code becomes a hint, never a traceback)
        return None, f"{type(e).__name__}: {e}"


def _number(value) -> float | None:
    """A float from a Python number, a NumPy scalar or a one-element tensor; None if it is not one number."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().float()) if value.numel() == 1 else None
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value)
    return None


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(b))


def _function(report: _Report, fn, signature: str) -> bool:
    """False (after a hint) unless the answer is a function."""
    if not callable(fn):
        report.hint(f"{report.name} should be a function, `def {report.name}{signature}: ...`, "
                    f"but it is a {type(fn).__name__}.")
        return False
    return True


def _result(report: _Report, fn, args: tuple, shown_args: str, advice: str = ""):
    """Call the student's function; a hint for an error (with `advice`, if any), a blank for a function that still
    returns nothing. Returns (ok, value)."""
    value, err = _call(fn, *args)
    if err:
        report.hint(f"calling {report.name}({shown_args}) raised {err}" + (f". {advice}" if advice else ""))
        return False, None
    if _blank(value):
        report.blank(message=f"{report.name} returns nothing yet: write its body, with a `return`, run the answer "
                     "cell, then this one again.")
        return False, None
    return True, value


# --------------------------------------------------------------------------- helpers for the exercise cells
def valid_outputs(learn, data=None, max_batches: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's raw outputs (before sigmoid/softmax) and the targets on the validation set of `data` (default:
    the learner's own), in order, on the CPU, in float32: what a metric receives during validation."""
    dl = (data if data is not None else learn.data).ordered_dl("valid")
    outs, targs = [], []
    learn.model.eval()
    with torch.no_grad():
        for i, (xb, yb) in enumerate(dl):
            if max_batches is not None and i >= max_batches:
                break
            outs.append(learn.forward(xb).detach().float().cpu())
            targs.append(yb.cpu())
    return torch.cat(outs), torch.cat(targs)


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


# --------------------------------------------------------------------------- planet
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
    from .callbacks import stop_improving

    r = _Report("reading lr_find after unfreezing", "my_slice")
    value = _answer(ns, "my_slice", "lesson3-planet")
    if _blank(value):
        return r.blank("with `slice(left, right)`")
    if not isinstance(value, slice):
        return r.hint(f"my_slice should be a slice, `slice(left, right)`, not a {type(value).__name__}.")
    if value.start is None:
        return r.hint("slice(b) alone gives every earlier group b/10: after unfreezing give both ends, "
                      "slice(left, right).")
    low, high = _number(value.start), _number(value.stop)
    if low is None or high is None or low <= 0 or high <= 0:
        return r.hint("both ends of the slice must be positive numbers (learning rates).")
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
    lowest = lrs[int(np.nanargmin(losses))]
    if lowest / 3 <= low <= lowest * 3 and not (edge / 30 <= lowest <= edge / 3):
        return r.hint("the left end is at the lowest point of the curve: after unfreezing the curve is flat and its "
                      "lowest point is noise. Find where it starts climbing for good, then go back 10x.")
    if low > high / 10 * 1.05:
        return r.hint("the left end is more than a tenth of the right end: the first layers should move at least "
                      "10x slower than the head, so when the reading lands above that, take a tenth of the right "
                      "end (as unfreeze_slice does).")
    return r.hint(f"the left end is too {'high' if low > want_low else 'low'}: find the rate where the loss "
                  "starts to shoot up and go back 10x (one decade to the left on the plot), but no more than a "
                  "tenth of the right end.")


# --------------------------------------------------------------------------- camvid
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
        want = float(masked_accuracy(inp, targ, void_code))
        if _close(got, want):
            continue
        t = targ.squeeze(1) if targ.dim() == inp.dim() else targ
        pred = inp.argmax(dim=1)
        if _close(got, float((pred == t).float().mean())):
            return r.hint("it counts the Void pixels too: leave out every pixel whose target is `void_code` "
                          "(`keep = target != void_code`) before comparing.")
        if _close(got, float(((pred == t) & (t != void_code)).float().sum() / t.numel())):
            return r.hint("it divides by all pixels, Void included: divide by the number of non-Void pixels.")
        return r.hint(f"on {what} it gives {got:.4f}, acc_camvid gives {want:.4f}. {shapes}")
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


# --------------------------------------------------------------------------- head pose
def check_biwi_center(ns: dict, path: Path, cal_path: Path) -> None:
    """Head pose, exercise 1: from a `pose.txt` centre and `rgb.cal` to the pixel. `my_center(pose_path, cal_path)`
    must give the (row, col) that `biwi_center` gives, within 0.01 px, for five bundled frames of different
    subjects."""
    from .vision.biwi import biwi_center, pose_file, read_calibration, read_pose

    r = _Report("a pose centre to a pixel", "my_center")
    fn = _answer(ns, "my_center", "lesson3-head-pose")
    if _blank(fn):
        return r.blank("with `def my_center(pose_path, cal_path): ...`")
    if not _function(r, fn, "(pose_path, cal_path)"):
        return
    frames = sorted(Path(path).glob("*/frame_*_rgb.jpg"))
    frames = frames[:: max(1, len(frames) // 5)][:5]
    cal = read_calibration(cal_path)
    for f in frames:
        pose = pose_file(f)
        ok, value = _result(r, fn, (pose, cal_path), "pose_path, cal_path")
        if not ok:
            return
        try:
            got = np.asarray(value, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            got = np.zeros(0)
        if got.shape != (2,):
            return r.hint(f"my_center should return two numbers, (row, col); it returned {value!r}.")
        want = biwi_center(pose, cal_path).numpy().astype(float)
        if np.allclose(got, want, atol=1e-2):
            continue
        (x, y, z), (fx, fy, cx, cy) = read_pose(pose)[1], (cal[0, 0], cal[1, 1], cal[0, 2], cal[1, 2])
        if np.allclose(got[::-1], want, atol=1e-2):
            return r.hint("row and column are swapped: points here are (row, col) = (y, x), the order an image "
                          "tensor is indexed in.")
        if np.allclose(got, [y * fy + cy, x * fx + cx], atol=1e-2):
            return r.hint("divide by Z: a pinhole camera sees (X, Y, Z) at X·fx/Z + cx, so further away means "
                          "closer to the image centre.")
        if np.allclose(got, [y * fy / z + cx, x * fx / z + cy], atol=1e-2):
            return r.hint("cx and cy are swapped: cx (row 0, column 2 of the matrix) shifts the column, cy (row 1, "
                          "column 2) the row.")
        return r.hint(f"for {f.parent.name}/{f.name} it gives {got.round(2).tolist()}, the head centre is at "
                      f"{want.round(2).tolist()} (row, col): row = Y·fy/Z + cy, col = X·fx/Z + cx, with X, Y, Z "
                      "the last line of the pose file and fx, fy, cx, cy from the calibration matrix.")
    r.correct(f"my_center matches biwi_center on {len(frames)} frames ("
              + ", ".join(f"{f.parent.name}/{f.name[:11]}" for f in frames) + ").")


def check_to_unit(ns: dict) -> None:
    """Head pose, exercise 2: pixels to the model's [-1, 1] coordinates. `my_to_unit(point, size)` ((row, col)
    pixels, `size` = (height, width)) must equal `points_to_unit`, where -1 and 1 are the outer edges of the
    image and pixel centres sit at whole numbers, on points of two image sizes."""
    from .vision.transforms import points_to_unit

    r = _Report("pixels to [-1, 1]", "my_to_unit")
    fn = _answer(ns, "my_to_unit", "lesson3-head-pose")
    if _blank(fn):
        return r.blank("with `def my_to_unit(point, size): ...`")
    if not _function(r, fn, "(point, size)"):
        return
    cases = [(torch.tensor([263.9, 428.6]), (480, 640)), (torch.tensor([0.0, 0.0]), (480, 640)),
             (torch.tensor([30.5, 12.25]), (36, 48))]
    for pt, size in cases:
        ok, value = _result(r, fn, (pt.clone(), size), f"torch.tensor({pt.tolist()}), {size}")
        if not ok:
            return
        got = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
        want = points_to_unit(pt, size)
        if got.shape == want.shape and torch.allclose(got, want, atol=1e-4):
            continue
        hw = torch.tensor(size, dtype=torch.float32)
        if got.shape == want.shape and torch.allclose(got, 2 * pt / hw - 1, atol=1e-4):
            return r.hint("off by half a pixel: pixel 0 covers -0.5 to 0.5, so the image's top/left edge is at "
                          "-0.5 pixels; use (2·p + 1) / size - 1.")
        if got.shape == want.shape and torch.allclose(got, points_to_unit(pt, size[::-1]), atol=1e-4):
            return r.hint("height and width are swapped: the row is divided by the height, the column by the width.")
        if got.shape == want.shape and torch.allclose(got, (2 * pt + 1) / hw / 2, atol=1e-4):
            return r.hint("that is in [0, 1]: the model's coordinates run from -1 (top/left edge) to 1.")
        return r.hint(f"my_to_unit({pt.tolist()}, {size}) gives {got.tolist()}, expected {want.tolist()}.")
    r.correct("my_to_unit equals points_to_unit on 3 points of 480x640 and 36x48 images.")


def check_holdout(ns: dict, path: Path) -> None:
    """Head pose, exercise 3: holding out one person. `my_is_valid(o)` (o: a frame's path) must be True exactly for
    the frames of subject 13, checked on every bundled frame."""
    r = _Report("hold out subject 13", "my_is_valid")
    fn = _answer(ns, "my_is_valid", "lesson3-head-pose")
    if _blank(fn):
        return r.blank("with `def my_is_valid(o): ...`")
    if not _function(r, fn, "(o)"):
        return
    frames = sorted(Path(path).glob("*/frame_*_rgb.jpg"))
    chosen = []
    for f in frames:
        ok, value = _result(r, fn, (f,), f"Path({str(f)!r})")
        if not ok:
            return
        if value:
            chosen.append(f)
    subjects = sorted({f.parent.name for f in chosen})
    n13 = sum(f.parent.name == "13" for f in frames)
    if subjects == ["13"] and len(chosen) == n13:
        return r.correct(f"my_is_valid holds out the {n13} frames of subject 13 and keeps the other "
                         f"{len(frames) - n13} for training.")
    if not chosen:
        return r.hint("it is False for every frame: o is the path of an image like `13/frame_00007_rgb.jpg`; the "
                      "subject is the folder it is in, `o.parent.name`.")
    if len(subjects) > 1:
        return r.hint(f"it picks frames of {len(subjects)} subjects ({', '.join(subjects[:5])}...): a random or "
                      "mixed split puts near-copies of training frames in validation. Hold out one whole person, "
                      "subject 13.")
    return r.hint(f"it holds out subject {subjects[0]}" + (f" (only {len(chosen)} of its frames)" if
                  subjects == ["13"] else "") + ": the lesson holds out every frame of subject 13.")


# --------------------------------------------------------------------------- imdb
EXERCISE_REVIEW = "I LOVED this movie!!!! Really."


def check_tokens(ns: dict, tokenizer) -> None:
    """IMDB, exercise 1: tokenizing by hand. `my_tokens` (a list of strings, written without running the tokenizer)
    must equal `tokenizer.process_text(EXERCISE_REVIEW)`, special tokens included."""
    from .text.tokenize import SPECIAL_TOKENS

    r = _Report("tokenize a review", "my_tokens")
    value = _answer(ns, "my_tokens", "lesson3-imdb")
    if _blank(value):
        return r.blank("with the list of tokens you expect")
    if isinstance(value, str) or not all(isinstance(t, str) for t in value):
        return r.hint("my_tokens should be a list of strings, one per token, like ['xxbos', ...].")
    got, want = list(value), tokenizer.process_text(EXERCISE_REVIEW)
    if got == want:
        specials = [t for t in want if t in SPECIAL_TOKENS]
        return r.correct(f"{len(want)} tokens, with the special tokens {', '.join(specials)}.")
    if not got or got[0] != want[0]:
        return r.hint("every text starts with a special token marking the beginning of a text.")
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    near = " ".join(want[max(0, i - 1): i]) or "the start"
    tail = EXERCISE_REVIEW
    if any(t != t.lower() for t in got):
        return r.hint("every token is lower case: capitals are kept as special tokens placed before the word.")
    if any(t in ("!", "!!!!") for t in got[i: i + 4]) and "xxrep" not in got:
        return r.hint("a character repeated 4 or more times becomes three tokens: a special token, the count, "
                      "the character.")
    if "xxup" not in got:
        return r.hint("a word written in CAPITALS gets a special token before it (and it is lower-cased).")
    if "xxmaj" not in got:
        return r.hint("a word with a capital first letter gets a special token before it.")
    return r.hint(f"token {i} differs (after {near!r}); read `{tail}` again, word by word: one-letter words, "
                  "punctuation and the repeated `!` each follow a rule.")


def check_numericalize(ns: dict, vocab) -> None:
    """IMDB, exercise 2: numericalizing by hand. `my_numericalize(tokens, vocab)` must give, for each token, its
    index in `vocab.itos`, and 0 (`xxunk`) for a token outside the vocabulary, as `vocab.numericalize` does;
    checked on a real sentence's tokens with two made-up words in it."""
    r = _Report("numericalize", "my_numericalize")
    fn = _answer(ns, "my_numericalize", "lesson3-imdb")
    if _blank(fn):
        return r.blank("with `def my_numericalize(tokens, vocab): ...`")
    if not _function(r, fn, "(tokens, vocab)"):
        return
    known = [t for t in vocab.itos[9:40] if t.isalpha()][:6]
    tokens = ["xxbos", "xxmaj"] + known[:3] + ["qwzxv"] + known[3:] + ["zzgrpf", "."]
    value, err = _call(fn, tokens, vocab)
    if err and err.startswith("KeyError"):
        return r.hint(f"it raised {err}: a token outside the vocabulary is not in vocab.stoi; it gets the id of "
                      "xxunk, 0.")
    if err:
        return r.hint(f"calling my_numericalize(tokens, vocab) raised {err}")
    if _blank(value):
        return r.blank(message="my_numericalize returns nothing yet: write its body, with a `return`, run the "
                       "answer cell, then this one again.")
    try:
        got = [int(v) for v in value]
    except (TypeError, ValueError):
        return r.hint(f"my_numericalize should return a list of ints, got {type(value).__name__}.")
    want = vocab.numericalize(tokens)
    if got == want:
        return r.correct(f"{len(tokens)} tokens, the unknown 'qwzxv' and 'zzgrpf' both 0 (xxunk).")
    if len(got) < len(want):
        return r.hint(f"it returns {len(got)} ids for {len(tokens)} tokens: a token outside the vocabulary is not "
                      "dropped, it becomes xxunk (id 0).")
    if len(got) == len(want) and all(g == w + 1 for g, w in zip(got, want) if w):
        return r.hint("the ids are one too high: the id of a token is its position in vocab.itos, counting from 0.")
    return r.hint(f"for {tokens} it gives {got}: the id of a token is its position in vocab.itos (vocab.stoi "
                  "maps it back), and 0 (xxunk) for a word the vocabulary does not have.")


# --------------------------------------------------------------------------- the data block tour
_SHAPES = ("circle", "square", "triangle")


def make_shapes_folder(dest: Path | None = None, counts: dict | None = None, seed: int = 0) -> Path:
    """A small image-classification folder in MNIST's layout: `train/<shape>/*.png` and `valid/<shape>/*.png`,
    16x16 grey drawings of circles, squares and triangles (`counts`: {"train": n, "valid": m} per shape,
    default 6 and 2). Returns its path (a new temporary folder unless `dest` is given)."""
    from PIL import Image, ImageDraw

    counts = counts or {"train": 6, "valid": 2}
    dest = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="shapes-"))
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for shape in _SHAPES:
            (dest / split / shape).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = Image.new("L", (16, 16), 0)
                d = ImageDraw.Draw(img)
                a, b = int(rng.integers(1, 5)), int(rng.integers(11, 15))
                if shape == "circle":
                    d.ellipse([a, a, b, b], fill=255)
                elif shape == "square":
                    d.rectangle([a, a, b, b], fill=255)
                else:
                    d.polygon([(a, b), (b, b), ((a + b) // 2, a)], fill=255)
                img.save(dest / split / shape / f"{shape}_{i}.png")
    return dest


def check_folder_databunch(ns: dict) -> None:
    """Data block tour, exercise 1: a DataBunch for a new folder layout. `my_databunch(folder)` must build, for
    two folders that `make_shapes_folder` creates (train/ and valid/ with one sub-folder per shape, different
    counts), a DataBunch with the three shape classes, the folders' split, and batches of 4 images of 16x16."""
    r = _Report("a DataBunch from folders", "my_databunch")
    fn = _answer(ns, "my_databunch", "lesson3-data-block")
    if _blank(fn):
        return r.blank("with `def my_databunch(folder): ...`")
    if not _function(r, fn, "(folder)"):
        return
    with tempfile.TemporaryDirectory(prefix="shapes-check-") as tmp:
        for k, counts in enumerate(({"train": 5, "valid": 3}, {"train": 4, "valid": 2})):
            folder = make_shapes_folder(Path(tmp) / f"layout{k}", counts, seed=k + 1)
            with contextlib.redirect_stdout(io.StringIO()):  # the DataBunch's own notes (the decode cache's line)
                ok, data = _result(r, fn, (folder,), f"Path({str(folder)!r})")
            if not ok:
                return
            if not hasattr(data, "train_ds") or not hasattr(data, "one_batch"):
                return r.hint(f"my_databunch returned a {type(data).__name__}, not a DataBunch: end the chain with "
                              ".databunch(bs=4).")
            n_train, n_valid = 3 * counts["train"], 3 * counts["valid"]
            if list(data.classes) != list(_SHAPES):
                return r.hint(f"the classes are {list(data.classes)}, expected {list(_SHAPES)}: label each image "
                              "with the name of its folder (label_from_folder).")
            if (len(data.train_ds), len(data.valid_ds)) != (n_train, n_valid):
                return r.hint(f"{len(data.train_ds)} training and {len(data.valid_ds)} validation images, the folders "
                              f"hold {n_train} and {n_valid}: split by the train/ and valid/ folders "
                              "(split_by_folder), not at random.")
            xb, yb = data.one_batch()
            if tuple(xb.shape[1:]) != (3, 16, 16) or len(xb) != 4:
                return r.hint(f"one batch holds images of shape {tuple(xb.shape)}; expected (4, 3, 16, 16): "
                              ".transform(..., size=16) and .databunch(bs=4).")
            if yb.dim() != 1 or int(yb.max()) >= 3:
                return r.hint(f"the batch's labels {yb.tolist()} should be one class index per image.")
    r.correct("on two new folder layouts: classes circle/square/triangle, the folders' split (15+9 and 12+6 images), "
              "batches of 4 images 3x16x16 with one class index each.")


def check_dataset(ns: dict) -> None:
    """Data block tour, exercise 2: a Dataset of our own. `MySquares(n)` must have length n and item i
    (i, i*i) as two float tensors of one element, so that a `DataLoader` stacks them into batches."""
    from torch.utils.data import DataLoader

    r = _Report("a Dataset of your own", "MySquares")
    cls = _answer(ns, "MySquares", "lesson3-data-block")
    if _blank(cls):
        return r.blank("with `class MySquares(Dataset): ...`")
    if not isinstance(cls, type):
        return r.hint(f"MySquares should be a class (`class MySquares(Dataset):`), not a {type(cls).__name__}.")
    ds, err = _call(cls, 10)
    if err:
        return r.hint(f"MySquares(10) raised {err}: `__init__(self, n)` takes the number of items.")
    n, err = _call(len, ds)
    if err:
        return r.hint(f"len(MySquares(10)) raised {err}: a Dataset needs `__len__`.")
    if n != 10:
        return r.hint(f"len(MySquares(10)) is {n}, not 10: `__len__` returns the number of items.")
    for i in (0, 3, 9):
        item, err = _call(ds.__getitem__, i)
        if err:
            return r.hint(f"MySquares(10)[{i}] raised {err}: `__getitem__(self, i)` returns item i.")
        if not (isinstance(item, tuple) and len(item) == 2):
            return r.hint(f"MySquares(10)[{i}] is {item!r}: an item is a pair (input, target).")
        try:
            x, y = (float(torch.as_tensor(v).reshape(-1)[0]) for v in item)
        except (TypeError, ValueError, IndexError, RuntimeError):
            return r.hint(f"MySquares(10)[{i}] is {item!r}: input and target should be tensors of one number.")
        if (x, y) != (i, i * i) and (x, y) == (i * i, i):
            return r.hint("input and target are swapped: item i is (i, i*i), input first.")
        if (x, y) != (i, i * i):
            return r.hint(f"MySquares(10)[{i}] is ({x}, {y}), expected ({float(i)}, {float(i * i)}).")
    batch, err = _call(lambda: next(iter(DataLoader(ds, batch_size=4))))
    if err:
        return r.hint(f"a DataLoader could not make a batch: {err}. Return tensors of the same shape for every item.")
    xb, yb = batch
    if len(xb) != 4:
        return r.hint(f"a batch of 4 items has inputs of shape {tuple(xb.shape)}.")
    r.correct(f"len 10, items (i, i*i), and a DataLoader batch of 4: inputs {tuple(xb.shape)}, targets "
              f"{tuple(yb.shape)}.")


def check_relu_sum(ns: dict) -> None:
    """Data block tour, exercise 3: a sum of ReLUs by hand. `my_relu_sum(x, w, b, a, c)` must compute
    c + sum_i a_i * max(0, w_i * x + b_i) for every x (a 1-d tensor), equal to Linear(1, n), ReLU, Linear(n, 1)
    with those weights."""
    r = _Report("a sum of ReLUs", "my_relu_sum")
    fn = _answer(ns, "my_relu_sum", "lesson3-data-block")
    if _blank(fn):
        return r.blank("with `def my_relu_sum(x, w, b, a, c): ...`")
    if not _function(r, fn, "(x, w, b, a, c)"):
        return
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(-3, 3, 13)
    w, b, a = (torch.randn(5, generator=g) for _ in range(3))
    c = 0.5
    model = torch.nn.Sequential(torch.nn.Linear(1, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    with torch.no_grad():
        model[0].weight.copy_(w[:, None])
        model[0].bias.copy_(b)
        model[2].weight.copy_(a[None])
        model[2].bias.fill_(c)
        want = model(x[:, None])[:, 0]
    ok, value = _result(r, fn, (x.clone(), w, b, a, c), "x, w, b, a, c")
    if not ok:
        return
    try:
        got = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        return r.hint(f"my_relu_sum should return one value per x, got {type(value).__name__}.")
    if got.shape != want.shape:
        return r.hint(f"my_relu_sum returned {tuple(got.shape)} values for {len(x)} x's: one per x. Broadcast "
                      "x[:, None] against w (shape (n,)) and sum over the ReLUs (dim=1).")
    if torch.allclose(got, want, atol=1e-4):
        return r.correct("equals Linear(1, 5) -> ReLU -> Linear(5, 1) at 13 points in [-3, 3].")
    lin = c + ((w * x[:, None] + b) * a).sum(1)
    if torch.allclose(got, lin, atol=1e-4):
        return r.hint("there is no ReLU: without max(0, .) the sum of lines is one straight line.")
    if torch.allclose(got, (c + ((w * x[:, None] + b) * a).sum(1)).clamp(min=0), atol=1e-4):
        return r.hint("the ReLU is applied after the sum: each term gets its own max(0, w_i·x + b_i), then the "
                      "a_i-weighted sum.")
    return r.hint("not c + Σ a_i·max(0, w_i·x + b_i); compare at x = 0 by hand.")
