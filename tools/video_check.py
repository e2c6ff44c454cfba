"""Run the lesson-3 video's notebook cells against course_utils and count how many work unchanged.

A student types what the video shows (the fastai v1 notebooks of course-v3, November 2018). This harness
replays those cells, written as our own paraphrase of the course-v3 notebooks, and reports how many run.

    python tools/video_check.py                       # every lesson, both modes
    python tools/video_check.py planet camvid         # some lessons
    python tools/video_check.py --mode verbatim -v    # one mode; -v also prints each cell's own output

FORMAT of a lesson module, `tools/video_cells/<lesson>.py` (one per lesson: planet, camvid, head_pose, imdb):

    '''Docstring: which course-v3 notebook (path and commit) this paraphrases, and what was changed.'''
    from video_cells import Skip

    TITLE = "lesson3-planet"          # shown in the report
    SETUP = '''...'''                  # optional: code run first in every mode, never counted (e.g. seeding)
    CELLS = [
        "from course_utils.all import *",                 # a code cell, exactly as the student types it
        ("lr_find(learn)", "learn.lr_find()"),            # (code, fix): `fix` is our equivalent, run in
                                                          #   cell-by-cell mode when `code` fails, so later
                                                          #   cells find the state they expect
        Skip("download cell: no network here"),           # not run, counted as skipped
    ]

Rules for a cell's code: the only changes allowed from the course-v3 cell are the import line
(`from course_utils.all import *`), data paths (the bundled tiny data; `untar_data(URLs.X)` already gives
it in tiny mode), skipped download cells, and speed settings (resnet18, `pretrained=False`, 1 epoch, small
sizes). Jupyter's `%` and `!` lines are left out (they are not Python); a cell's last expression is not
displayed (its value is evaluated, so a failing attribute still fails).

The two modes, each in one fresh namespace per lesson:
  * cell by cell: every cell runs; a failing cell is counted, then its `fix` (if any) runs so that later
    cells have their state (a failing fix is reported too);
  * verbatim: the cells run top to bottom as typed, fixes never run; a failing cell is counted and the next
    one runs anyway (as a student pressing Shift+Enter would).
The harness runs in tiny mode (COURSE_MODE=tiny), with matplotlib's Agg backend; a cell that would open a
window (Pillow's own `Image.show`) fails instead. Each cell's prints are captured (shown with -v).

Output: per lesson and in total, the cells, skipped, evaluated, ran cell by cell (%) and ran verbatim (%);
then every failing cell with its number, its first line and its error's first line.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LESSONS = ("planet", "camvid", "head_pose", "imdb")
MODES = ("cell", "verbatim")


@dataclass
class Failure:
    """One failing cell: its index in CELLS, its first line, the error's first line, and whether it was the fix."""
    index: int
    code: str
    error: str
    in_fix: bool = False

    def line(self, lesson: str) -> str:
        """One report line for this failure."""
        first = next((ln for ln in self.code.strip().splitlines() if ln.strip()), "")
        what = "its fix" if self.in_fix else "cell"
        return f"  {lesson} {what} #{self.index}: `{first[:70]}` -> {self.error}"


@dataclass
class Result:
    """What one lesson gave in one mode."""
    lesson: str
    mode: str
    cells: int = 0
    skipped: int = 0
    ran: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def evaluated(self) -> int:
        """Cells that were run (all but the skipped ones)."""
        return self.cells - self.skipped

    @property
    def percent(self) -> float:
        """Share of the evaluated cells that ran without an error, in percent."""
        return 100.0 * self.ran / self.evaluated if self.evaluated else 100.0


def load_lesson(name: str):
    """Import tools/video_cells/<name>.py."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    return importlib.import_module(f"video_cells.{name}")


def _setup_environment() -> None:
    """Tiny mode, the Agg backend, and no viewer window from Pillow."""
    os.environ["COURSE_MODE"] = "tiny"
    os.environ["MPLBACKEND"] = "Agg"
    import matplotlib
    matplotlib.use("Agg")
    import PIL.Image

    def _no_viewer(self, *args, **kwargs):
        raise RuntimeError("Pillow's own Image.show() would open a desktop viewer (no matplotlib plot)")

    PIL.Image.Image.show = _no_viewer


def _error_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:200]


def _run_code(code: str, namespace: dict, name: str, verbose: bool) -> BaseException | None:
    """Run one cell's code in `namespace`; return the exception it raised, or None."""
    import matplotlib.pyplot as plt
    out = io.StringIO()
    try:
        compiled = compile(code, name, "exec")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            exec(compiled, namespace)
        return None
    except Exception as exc:  # noqa: BLE001 - every failure of a cell is counted, whatever it is
        if verbose:
            traceback.print_exc()
        return exc
    finally:
        plt.close("all")
        if verbose and out.getvalue().strip():
            print(out.getvalue().rstrip())


def run_lesson(name: str, mode: str, verbose: bool = False) -> Result:
    """Run one lesson's cells in one mode ('cell' or 'verbatim') and count what ran."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    _setup_environment()
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = load_lesson(name)
    result, start = Result(name, mode), time.perf_counter()
    cwd = os.getcwd()
    os.chdir(ROOT)  # cells name the bundled data as data/<name>_tiny, relative to the repository
    try:
        _run_cells(module, name, mode, verbose, result)
    finally:
        os.chdir(cwd)
    result.seconds = time.perf_counter() - start
    return result


def _run_cells(module, name: str, mode: str, verbose: bool, result: Result) -> None:
    """Run SETUP, then the cells, into `result`."""
    from video_cells import Skip
    namespace: dict = {"__name__": f"video_{name}"}
    import torch
    torch.manual_seed(0)
    setup = getattr(module, "SETUP", "")
    if setup:
        error = _run_code(setup, namespace, f"<{name} setup>", verbose)
        if error is not None:
            raise RuntimeError(f"{name}: SETUP failed: {_error_line(error)}") from error
    for index, cell in enumerate(module.CELLS):
        result.cells += 1
        if isinstance(cell, Skip):
            result.skipped += 1
            continue
        code, fix = (cell, None) if isinstance(cell, str) else cell
        if verbose:
            print(f"--- {name} [{mode}] cell #{index}:\n{code.strip()}")
        error = _run_code(code, namespace, f"<{name} cell {index}>", verbose)
        if error is None:
            result.ran += 1
            continue
        result.failures.append(Failure(index, code, _error_line(error)))
        if mode == "cell" and fix is not None:
            fix_error = _run_code(fix, namespace, f"<{name} cell {index} fix>", verbose)
            if fix_error is not None:
                result.failures.append(Failure(index, fix, _error_line(fix_error), in_fix=True))


def report(results: list[Result]) -> str:
    """The table: per lesson and in total, cells, skipped, evaluated, ran cell by cell and ran verbatim."""
    by = {(r.lesson, r.mode): r for r in results}
    lessons = list(dict.fromkeys(r.lesson for r in results))
    modes = [m for m in MODES if any(r.mode == m for r in results)]
    head = f"{'lesson':<11}{'cells':>6}{'skipped':>9}{'evaluated':>11}"
    head += "".join(f"{'ran ' + ('cell by cell' if m == 'cell' else 'verbatim'):>22}" for m in modes)
    lines = [head]
    totals = {"cells": 0, "skipped": 0, **{m: 0 for m in modes}}
    for lesson in lessons:
        first = by[(lesson, modes[0])]
        row = f"{lesson:<11}{first.cells:>6}{first.skipped:>9}{first.evaluated:>11}"
        for m in modes:
            r = by[(lesson, m)]
            row += f"{f'{r.ran} ({r.percent:.1f}%)':>22}"
            totals[m] += r.ran
        totals["cells"] += first.cells
        totals["skipped"] += first.skipped
        lines.append(row)
    evaluated = totals["cells"] - totals["skipped"]
    row = f"{'total':<11}{totals['cells']:>6}{totals['skipped']:>9}{evaluated:>11}"
    for m in modes:
        pct = 100.0 * totals[m] / evaluated if evaluated else 100.0
        row += f"{f'{totals[m]} ({pct:.1f}%)':>22}"
    lines.append(row)
    for m in modes:
        fails = [f.line(r.lesson) for r in results if r.mode == m for f in r.failures]
        title = "cell by cell" if m == "cell" else "verbatim"
        lines.append(f"failing cells, {title}: {len(fails) or 'none'}")
        lines.extend(fails)
    return "\n".join(lines)


def total_percent(results: list[Result], mode: str) -> float:
    """Share of all evaluated cells, over the lessons in `results`, that ran in `mode`, in percent."""
    rs = [r for r in results if r.mode == mode]
    evaluated = sum(r.evaluated for r in rs)
    return 100.0 * sum(r.ran for r in rs) / evaluated if evaluated else 100.0


def main(argv: list[str] | None = None) -> int:
    """Command line: run the lessons named (default: all whose module exists) and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help=f"lessons to run (default: all of {', '.join(LESSONS)})")
    parser.add_argument("--mode", choices=("both",) + MODES, default="both")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each cell, its output and tracebacks")
    args = parser.parse_args(argv)
    names = args.lessons or [n for n in LESSONS if (HERE / "video_cells" / f"{n}.py").exists()]
    for n in names:
        if not (HERE / "video_cells" / f"{n}.py").exists():
            parser.error(f"no lesson module tools/video_cells/{n}.py (lessons: {', '.join(LESSONS)})")
    modes = MODES if args.mode == "both" else (args.mode,)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    results = []
    for n in names:
        for m in modes:
            r = run_lesson(n, m, args.verbose)
            print(f"{n} [{'cell by cell' if m == 'cell' else 'verbatim'}]: {r.ran}/{r.evaluated} ran "
                  f"in {r.seconds:.0f}s", file=sys.stderr)
            results.append(r)
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
