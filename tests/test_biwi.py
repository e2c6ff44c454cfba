"""Reading BIWI head pose files and projecting the head centre onto the image (lesson 3, image regression)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from course_utils.download import get_dataset
from course_utils.vision import biwi_center
from course_utils.vision.biwi import pose_file, project_center, read_calibration, read_pose

# The real folder 01's intrinsics (fx = fy = 517.679, cx = 320, cy = 240.5) at the top of a file laid out like
# BIWI's rgb.cal (then distortion, rotation and translation, which the conversion does not use).
REAL_CAL = """517.679 0 320 
0 517.679 240.5 
0 0 1 

0 0 0 0 

0.999979 0.00307 -0.00562 
-0.00311 0.999985 -0.00453 
0.00561 0.00455 0.999974 

-24.0198 5.8896 -13.2308 
"""
# The lesson's worked example, 09/frame_00667: head centre (187.332, 40.3892, 893.135) mm (the rotation is made up).
POSE_00667 = """0.978842 -0.0695385 0.19244 
0.0489829 0.992769 0.109588 
-0.198669 -0.0978434 0.97517 

187.332 40.3892 893.135 
"""


@pytest.fixture
def biwi_files(tmp_path):
    """A BIWI subject folder `09/` with the real calibration and the lesson's example frame's pose."""
    folder = tmp_path / "09"
    folder.mkdir()
    (folder / "rgb.cal").write_text(REAL_CAL)
    (folder / "frame_00667_pose.txt").write_text(POSE_00667)
    return folder


def test_read_calibration_gives_the_intrinsics_at_the_top_of_rgb_cal(biwi_files):
    cal = read_calibration(biwi_files / "rgb.cal")
    np.testing.assert_allclose(cal, [[517.679, 0, 320], [0, 517.679, 240.5], [0, 0, 1]])


def test_read_pose_gives_the_rotation_and_the_head_centre_in_mm(biwi_files):
    rot, centre = read_pose(biwi_files / "frame_00667_pose.txt")
    assert rot.shape == (3, 3)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-4)  # a rotation
    np.testing.assert_allclose(centre, [187.332, 40.3892, 893.135])


def test_biwi_center_matches_the_lessons_worked_example(biwi_files):
    """09/frame_00667: (187.332, 40.3892, 893.135) -> (row, col) = (263.91, 428.58)."""
    ctr = biwi_center(biwi_files / "frame_00667_pose.txt", biwi_files / "rgb.cal")
    assert isinstance(ctr, torch.Tensor) and ctr.shape == (2,) and ctr.is_floating_point()
    assert ctr.tolist() == pytest.approx([263.91, 428.58], abs=0.01)


def test_projection_is_row_then_col():
    """A point right of the optical axis moves the column, one below it moves the row."""
    cal = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    assert project_center(np.array([10.0, 0, 100]), cal).tolist() == pytest.approx([40, 60])
    assert project_center(np.array([0, 10.0, 100]), cal).tolist() == pytest.approx([50, 50])


def test_pose_file_is_the_image_name_with_pose_txt():
    assert pose_file("/data/09/frame_00667_rgb.jpg").as_posix() == "/data/09/frame_00667_pose.txt"
    with pytest.raises(ValueError, match="_rgb.jpg"):
        pose_file("/data/09/frame_00667_depth.bin")


def test_bad_files_get_errors_that_name_them(tmp_path):
    cal = tmp_path / "rgb.cal"
    cal.write_text("517.679 0\n0 1\n")
    with pytest.raises(ValueError, match="rgb.cal"):
        read_calibration(cal)
    pose = tmp_path / "frame_00001_pose.txt"
    pose.write_text("1 0 0\n0 1 0\n0 0 1\n\n1.0 2.0\n")
    with pytest.raises(ValueError, match="frame_00001_pose.txt"):
        read_pose(pose)
    pose.write_text("1 0 0\n0 1 0\n0 0 1\n\n1.0 2.0 abc\n")
    with pytest.raises(ValueError, match="Line 5"):
        read_pose(pose)
    with pytest.raises(FileNotFoundError, match="missing_pose.txt"):
        read_pose(tmp_path / "missing_pose.txt")


def test_a_head_behind_the_camera_is_refused():
    with pytest.raises(ValueError, match="in front of the camera"):
        project_center(np.array([1.0, 2.0, 0.0]), np.eye(3))


def test_tiny_dataset_has_the_biwi_layout_and_every_centre_inside_its_frame():
    path = get_dataset("biwi_head_pose", "tiny")
    subjects = sorted(p.name for p in path.iterdir() if p.is_dir() and p.name.isdigit())  # not models/
    assert "13" in subjects and len(subjects) >= 4
    for s in subjects:
        frames = sorted((path / s).glob("frame_*_rgb.jpg"))
        assert frames and (path / s / "rgb.cal").is_file()
        for f in frames:
            r, c = biwi_center(pose_file(f), path / "01" / "rgb.cal").tolist()
            assert 0 <= r < 96 and 0 <= c < 128, f


def test_tiny_dataset_is_what_its_script_generates(tmp_path):
    """The committed data regenerates byte for byte (the first frames of each subject are enough to check)."""
    script = get_dataset("biwi_head_pose", "tiny").parent / "make_biwi_head_pose_tiny.py"
    out = tmp_path / "biwi"
    subprocess.run([sys.executable, str(script), "--frames", "2", "--out", str(out)], check=True, capture_output=True)
    committed = get_dataset("biwi_head_pose", "tiny")
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert len(files) == 12 * 5 + 9  # rgb.cal + 2 frames x (jpg, pose) per subject; subject 13 has 4 frames
    for rel in files:
        assert (out / rel).read_bytes() == (committed / rel).read_bytes(), rel
