"""What every exercise check shares: the student's answer (or, with COURSE_SOLUTIONS=1, the reference one from
solutions/), the one line a check prints, calling the student's code safely; and `valid_outputs`, which the
exercise cells of several lessons use.
"""
from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..config import course_solutions

__all__ = ["valid_outputs"]

_MISSING = object()


class SolutionRejected(AssertionError):
    """A reference solution (COURSE_SOLUTIONS=1) that its check did not accept, or that is missing."""


def solutions_dir() -> Path:
    """The repository's `solutions/` folder (one file of reference answers per notebook)."""
    return Path(__file__).resolve().parents[2] / "solutions"


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
    the learner's own), in order, on the CPU, in float32: what a metric receives during validation. It runs the
    learner's own evaluation loop (`get_preds`), so a smoke run (COURSE_SMOKE=1) reads only its batches too."""
    dl = (data if data is not None else learn.data).ordered_dl("valid")
    return learn.get_preds(activ=False, dl=dl if max_batches is None else itertools.islice(dl, max_batches))
