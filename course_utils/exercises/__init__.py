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
One module per lesson notebook (`planet`, `camvid`, `head_pose`, `imdb`, `data_block_tour`); `core` holds
what they share. Every name is imported from here: `from course_utils import exercises`.
"""
from .camvid import check_acc_camvid, check_camvid_split, check_group_rates
from .core import SolutionRejected, solution_code, solutions_dir, valid_outputs  # noqa: F401  (kept importable)
from .data_block_tour import check_dataset, check_folder_databunch, check_relu_sum, make_shapes_folder
from .head_pose import check_biwi_center, check_holdout, check_to_unit
from .imdb import EXERCISE_REVIEW, check_numericalize, check_tokens
from .planet import (
    check_acc_02,
    check_f2_by_hand,
    check_lr_slice,
    lr_curve,  # noqa: F401  (kept importable)
    pick_f2_image,  # noqa: F401  (kept importable)
    show_f2_image,
    show_lr_curve,
)

__all__ = ["valid_outputs", "show_f2_image", "show_lr_curve", "make_shapes_folder", "check_acc_02", "check_f2_by_hand",
           "check_lr_slice", "check_acc_camvid", "check_camvid_split", "check_group_rates", "check_biwi_center",
           "check_to_unit", "check_holdout", "check_tokens", "check_numericalize", "check_folder_databunch",
           "check_dataset", "check_relu_sum", "EXERCISE_REVIEW"]
