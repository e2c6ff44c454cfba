"""Without course_utils installed, each lesson notebook's import cell fails with the one install command."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "nbs").glob("*.ipynb"))


def import_cell(path: Path) -> str:
    """The first code cell that imports from course_utils."""
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == "code" and "from course_utils" in c.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_import_cell_gives_the_install_command(path, monkeypatch):
    monkeypatch.setitem(sys.modules, "course_utils", None)  # what Python does when the package is not installed
    with pytest.raises(ModuleNotFoundError) as err:
        exec(compile(import_cell(path), path.name, "exec"), {})
    assert "course_utils is not installed" in str(err.value)
    assert "pip install -r requirements.txt -e ." in str(err.value)
