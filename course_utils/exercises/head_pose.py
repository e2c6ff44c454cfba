"""The exercises of lesson3-head-pose: a pose centre to a pixel, pixels to the model's [-1, 1] coordinates, and
holding out one person.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .core import _answer, _blank, _function, _Report, _result

__all__ = ["check_biwi_center", "check_to_unit", "check_holdout"]


def check_biwi_center(ns: dict, path: Path, cal_path: Path) -> None:
    """Head pose, exercise 1: from a `pose.txt` centre and `rgb.cal` to the pixel. `my_center(pose_path, cal_path)`
    must give the (row, col) that `biwi_center` gives, within 0.01 px, for five bundled frames of different
    subjects."""
    from ..vision.biwi import biwi_center, pose_file, read_calibration, read_pose

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
        if not np.allclose(got, want, atol=1e-2):
            return r.hint(_center_miss(got, want, read_pose(pose)[1], cal, f))
    r.correct(f"my_center matches biwi_center on {len(frames)} frames ("
              + ", ".join(f"{f.parent.name}/{f.name[:11]}" for f in frames) + ").")


def _center_miss(got: np.ndarray, want: np.ndarray, xyz, cal, frame: Path) -> str:
    """The hint for a centre `got` that is not `want`: swapped axes, no division by Z, cx and cy swapped, or else
    the formula. `xyz`: the pose file's translation; `cal`: the calibration matrix."""
    (x, y, z), (fx, fy, cx, cy) = xyz, (cal[0, 0], cal[1, 1], cal[0, 2], cal[1, 2])
    if np.allclose(got[::-1], want, atol=1e-2):
        return ("row and column are swapped: points here are (row, col) = (y, x), the order an image "
                "tensor is indexed in.")
    if np.allclose(got, [y * fy + cy, x * fx + cx], atol=1e-2):
        return ("divide by Z: a pinhole camera sees (X, Y, Z) at X·fx/Z + cx, so further away means "
                "closer to the image centre.")
    if np.allclose(got, [y * fy / z + cx, x * fx / z + cy], atol=1e-2):
        return ("cx and cy are swapped: cx (row 0, column 2 of the matrix) shifts the column, cy (row 1, "
                "column 2) the row.")
    return (f"for {frame.parent.name}/{frame.name} it gives {got.round(2).tolist()}, the head centre is at "
            f"{want.round(2).tolist()} (row, col): row = Y·fy/Z + cy, col = X·fx/Z + cx, with X, Y, Z "
            "the last line of the pose file and fx, fy, cx, cy from the calibration matrix.")


def check_to_unit(ns: dict) -> None:
    """Head pose, exercise 2: pixels to the model's [-1, 1] coordinates. `my_to_unit(point, size)` ((row, col)
    pixels, `size` = (height, width)) must equal `points_to_unit`, where -1 and 1 are the outer edges of the
    image and pixel centres sit at whole numbers, on points of two image sizes."""
    from ..vision.transforms import points_to_unit

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

