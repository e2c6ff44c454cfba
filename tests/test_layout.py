"""The package's layout: no module of course_utils over 600 lines, the modules split out of a long one import on
their own (no import cycle), and the names callers import from the old module still come from there."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "course_utils"
MAX_LINES = 600


def test_no_module_is_over_600_lines():
    """A module that grows past 600 lines is named with its length, so it gets split along its seams."""
    long = {str(f.relative_to(PACKAGE.parent)): n for f in sorted(PACKAGE.rglob("*.py"))
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, (f"modules over {MAX_LINES} lines: "
                      + ", ".join(f"{name} ({n} lines)" for name, n in long.items())
                      + ". Split each along its seams (one concern per module), re-exporting the names callers use.")


SPLIT = ["course_utils.items", "course_utils.labels", "course_utils.problems", "course_utils.databunch",
         "course_utils.data_block", "course_utils.exercises", "course_utils.exercises.core",
         "course_utils.exercises.planet", "course_utils.exercises.camvid", "course_utils.exercises.head_pose",
         "course_utils.exercises.imdb", "course_utils.exercises.data_block_tour"]


def test_each_split_module_imports_first():
    """Each module imported first, in a fresh set of course_utils modules, loads: no import cycle between them."""
    code = ("import importlib, sys\n"
            f"for name in {SPLIT!r}:\n"
            "    for m in [m for m in sys.modules if m == 'course_utils' or m.startswith('course_utils.')]:\n"
            "        del sys.modules[m]\n"
            "    importlib.import_module(name)\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


# Every name that notebooks, tools, tests and course_utils import from data_block, with the module it lives in now.
MOVED = {"items": ["ItemList", "TransformConfig", "RENAMED"],
         "labels": ["TargetList", "CategoryList", "MultiCategoryList", "FloatList", "EmptyLabelList"],
         "databunch": ["DataBunch", "DatasetType", "DeviceDataLoader", "LabelList", "Normalize", "load_data",
                       "decide_auto_cache"],
         "problems": ["problem_list", "problem_kind"]}


@pytest.mark.parametrize("module,name", [(m, n) for m, names in MOVED.items() for n in names])
def test_data_block_still_gives_the_moved_names(module, name):
    """`from course_utils.data_block import X` keeps working for every X that moved to its own module."""
    import importlib

    from course_utils import data_block

    assert getattr(data_block, name) is getattr(importlib.import_module(f"course_utils.{module}"), name)
    assert name in data_block.__all__


def test_exercises_package_finds_the_solutions_folder():
    """The exercise checks, now a package one folder deeper, still read the repository's solutions/."""
    from course_utils import exercises

    assert exercises.solutions_dir() == PACKAGE.parent / "solutions"
    assert (exercises.solutions_dir() / "lesson3-planet.py").is_file()


# Modules whose tests live in a file named otherwise, with the reason. A package's own modules may share the
# package's test file instead (exercises/* -> test_exercises.py), and __init__.py files only re-export.
TESTED_ELSEWHERE = {
    "__main__.py": "test_cli.py: the command line as a user runs it",
    "all.py": "test_video_names.py: `from course_utils.all import *` gives the names the videos use",
    "finetune_data.py": "test_finetune.py: the feedback rows and data are checked through finetune",
    "progress.py": "test_learner.py: every fit draws its progress bar",
    "serve/app.py": "test_serve.py: the app is tested through its HTTP routes",
    "serve/predictor.py": "test_serve.py and test_batcher.py: predictions as the server makes them",
    "text/v1_names.py": "test_text_names.py: the fastai v1 names of the text API",
    "vision/batch.py": "test_batch_aug.py: augmentation of whole batches",
    "vision/models.py": "test_pretrained.py: the architectures and their weights",
}


def _test_files_for(rel: Path) -> list[str]:
    """The test files that may hold the tests of module `rel` (relative to the package): `a/b.py` ->
    test_b.py, test_a_b.py, or test_a.py (the package's test file)."""
    parts = rel.with_suffix("").parts
    names = {parts[-1], "_".join(parts)} | ({parts[0]} if len(parts) > 1 else set())
    return [f"test_{n}.py" for n in sorted(names)]


def test_every_module_has_its_test_file():
    """Each module of course_utils has `tests/test_<module>.py` (or is listed in TESTED_ELSEWHERE with the file
    that tests it), so a test is found next to the module it exercises."""
    tests = Path(__file__).resolve().parent
    missing = []
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE)
        if f.name == "__init__.py" or rel.as_posix() in TESTED_ELSEWHERE:
            continue
        if not any((tests / name).is_file() for name in _test_files_for(rel)):
            missing.append(f"{rel.as_posix()} (add tests/{_test_files_for(rel)[0]})")
    assert not missing, "modules without a test file: " + ", ".join(missing)
    stale = [m for m in TESTED_ELSEWHERE if not (PACKAGE / m).is_file()]
    assert not stale, f"TESTED_ELSEWHERE names modules that no longer exist: {stale}"
