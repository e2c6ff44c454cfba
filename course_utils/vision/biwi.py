"""The BIWI Kinect head pose files of lesson 3's image regression: from a pose to a point on the image.

Layout: numbered subject folders (`01/` ... `24/`), each holding `frame_XXXXX_rgb.jpg` (640x480),
`frame_XXXXX_pose.txt` (a 3x3 head rotation, a blank line, then the head centre `X Y Z` in millimetres,
in the camera's frame) and `rgb.cal` (the colour camera's calibration; its 3x3 intrinsics come first).

Coordinate order: a point on an image is **(row, col) = (y, x)** in pixels, row 0 at the top, col 0 at the
left, as in the lesson. The same order is used everywhere in the course (targets, transforms, plots).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["read_calibration", "read_pose", "biwi_center", "pose_file"]


def _number_rows(path: Path, what: str) -> list[list[float]]:
    """The non-blank lines of a text file as rows of numbers, with an error naming the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist.")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append([float(v) for v in line.split()])
            except ValueError:
                raise ValueError(f"Line {n} of {what} file {path} is not a row of numbers: {line.strip()!r}.") from None
    return rows


def read_calibration(cal_path: str | Path) -> np.ndarray:
    """The 3x3 intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] from a BIWI `rgb.cal` (its first three rows;
    the rest of the file, the distortion and the camera's rotation and translation, is not needed)."""
    path = Path(cal_path)
    rows = _number_rows(path, "Calibration")[:3]
    if len(rows) < 3 or any(len(r) != 3 for r in rows):
        raise ValueError(f"{path} does not start with a 3x3 intrinsics matrix (three rows of three numbers), "
                         "as a BIWI rgb.cal does.")
    cal = np.array(rows)
    if cal[0, 0] <= 0 or cal[1, 1] <= 0:
        raise ValueError(f"{path}: the focal lengths fx={cal[0, 0]}, fy={cal[1, 1]} must be positive.")
    return cal


def read_pose(pose_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(rotation 3x3, head centre (X, Y, Z) in mm) from a BIWI `frame_XXXXX_pose.txt`."""
    path = Path(pose_path)
    rows = _number_rows(path, "Pose")
    if len(rows) != 4 or any(len(r) != 3 for r in rows):
        raise ValueError(f"{path} is not a BIWI pose file: expected a 3x3 rotation, a blank line and the head "
                         f"centre X Y Z (four rows of three numbers), found {len(rows)} rows.")
    return np.array(rows[:3]), np.array(rows[3])


def project_center(center: np.ndarray, cal: np.ndarray) -> np.ndarray:
    """The pixel (row, col) where the camera sees the 3-D point `center` = (X, Y, Z):
    col = X * fx / Z + cx, row = Y * fy / Z + cy (the lesson's conversion)."""
    x, y, z = (float(v) for v in center)
    if z <= 0:
        raise ValueError(f"The head centre {tuple(center)} is not in front of the camera (Z must be > 0).")
    return np.array([y * cal[1, 1] / z + cal[1, 2], x * cal[0, 0] / z + cal[0, 2]])


def biwi_center(pose_path: str | Path, cal_path: str | Path) -> torch.Tensor:
    """The head centre of one BIWI frame as a (row, col) pixel point: a float tensor of 2 elements."""
    _, center = read_pose(pose_path)
    return torch.tensor(project_center(center, read_calibration(cal_path)), dtype=torch.float32)


def pose_file(img_path: str | Path) -> Path:
    """The pose file of a BIWI image: `.../frame_00667_rgb.jpg` -> `.../frame_00667_pose.txt`."""
    path = Path(img_path)
    if not path.name.endswith("_rgb.jpg"):
        raise ValueError(f"{path} is not a BIWI colour frame (its name should end in `_rgb.jpg`).")
    return path.with_name(path.name[: -len("rgb.jpg")] + "pose.txt")
