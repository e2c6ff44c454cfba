"""Run the lesson notebooks with the reference solutions filled in: every exercise check runs the answer in
solutions/<notebook>.py (COURSE_SOLUTIONS=1) and raises if it is rejected, so a broken solution, check or exercise
cell fails. Used by `make test`, after nbval has run the same notebooks with the answers blank.

Training is smoke-sized (COURSE_SMOKE=1: one batch per epoch), since no check depends on how well the model
learnt, only on the lesson's objects; nbval's run checks the learning. Prints each notebook's wall time."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent


def run(path: Path, timeout: int) -> tuple[bool, str]:
    """Execute one notebook in memory (nothing is written); (ok, one line about it)."""
    nb = nbformat.read(path, as_version=4)
    start = time.time()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as e:
        return False, f"FAILED {path.stem:<24} {time.time() - start:6.1f}s  {str(e).strip().splitlines()[-1]}"
    checks = sum("exercises.check_" in "".join(c.source) for c in nb.cells if c.cell_type == "code")
    return True, f"ok     {path.stem:<24} {time.time() - start:6.1f}s  {checks} checks accepted the reference solutions"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    parser.add_argument("--train", action="store_true", help="train as usual (no COURSE_SMOKE), slower")
    parser.add_argument("notebooks", nargs="*", help="default: every notebook in nbs/ that has exercises")
    args = parser.parse_args()
    os.environ["COURSE_SOLUTIONS"] = "1"  # the kernels inherit this process's environment
    if not args.train:
        os.environ["COURSE_SMOKE"] = "1"
    paths = [Path(p).resolve() for p in args.notebooks] or [
        p for p in sorted((ROOT / "nbs").glob("*.ipynb")) if "exercises.check_" in p.read_text(encoding="utf-8")]
    if not paths:
        print("No notebook has exercise cells yet: run tools/add_exercises.py first.")
        return 1
    results = []
    for p in paths:
        ok, line = run(p, args.timeout)
        print(line, flush=True)
        results.append(ok)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
