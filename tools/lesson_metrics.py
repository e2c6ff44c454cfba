"""What a lesson notebook reports at its end: the dict shown by its cell tagged `final-metrics` (the last
epoch's validation results, e.g. `{'train_loss': 0.27, 'valid_loss': 0.17, 'fbeta': 0.84}`).

The one reader of it: `tools/run_lessons.py` prints it as each lesson's summary line, and the root
`conftest.py` holds it to each lesson's learning floor when nbval runs the notebooks."""
from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

FINAL_METRICS = "final-metrics"  # the tag of the cell that shows the final results


def cell_tags(cell: Mapping) -> list[str]:
    """The tags of a notebook cell (an empty list if it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def shown_results(outputs: Iterable[Mapping] | None) -> dict:
    """The dict a cell's outputs show: its first plain-text output read as a Python literal; {} if none."""
    for out in outputs or []:
        text = out.get("data", {}).get("text/plain")
        if text:
            return ast.literal_eval(text)
    return {}


def final_results(cells: Iterable[Mapping], tag: str = FINAL_METRICS) -> dict:
    """The dict shown by the cell tagged `tag` (`final-metrics`: the last epoch's validation results) among a
    notebook's `cells`; {} if no such cell shows one."""
    for cell in cells:
        if tag in cell_tags(cell):
            results = shown_results(cell.get("outputs"))
            if results:
                return results
    return {}
