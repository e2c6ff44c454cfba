"""The final-metrics reader (tools/lesson_metrics.py): one definition for `make lessons`' summary lines and the
learning floors the root conftest.py checks under nbval."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import lesson_metrics  # noqa: E402
import run_lessons  # noqa: E402
from lesson_metrics import FINAL_METRICS, final_results  # noqa: E402


def _cell(tags, *texts):
    return {"cell_type": "code", "metadata": {"tags": list(tags)},
            "outputs": [{"output_type": "execute_result", "data": {"text/plain": t}} for t in texts]}


def test_the_dict_shown_by_the_tagged_cell_is_read():
    cells = [_cell([], "{'accuracy': 0.1}"), {"cell_type": "markdown", "source": "text", "metadata": {}},
             _cell(["lm-final-metrics"], "{'accuracy': 0.3}"), _cell([FINAL_METRICS], "{'accuracy': 0.9}")]
    assert final_results(cells) == {"accuracy": 0.9}
    assert final_results(cells, "lm-final-metrics") == {"accuracy": 0.3}
    assert final_results([_cell([]), _cell([FINAL_METRICS])]) == {}  # no such cell, or not run yet


def test_make_lessons_uses_the_same_reader():
    assert run_lessons.final_results is lesson_metrics.final_results
