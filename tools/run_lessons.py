"""Run every lesson notebook in nbs/ top to bottom (tiny mode unless COURSE_MODE says otherwise),
save the executed copies with their outputs, and print one line per lesson: final validation
results and wall time. Used by `make lessons`."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from lesson_metrics import final_results  # tools/ is this script's folder, first on sys.path
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent


def run(path: Path, out_dir: Path, timeout: int) -> tuple[bool, str]:
    """Execute one notebook in its own folder; write the executed copy; return (ok, summary)."""
    nb = nbformat.read(path, as_version=4)
    start = time.time()
    ok, note = True, ""
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as e:
        ok, note = False, str(e).strip().splitlines()[-1]
    secs = time.time() - start
    nbformat.write(nb, out_dir / path.name)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in final_results(nb.cells).items() if isinstance(v, float))
    status = "ok    " if ok else "FAILED"
    return ok, f"{status} {path.stem:<24} {secs:6.1f}s  {metrics or note}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="executed", help="folder for the executed notebooks (default: executed)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    parser.add_argument("notebooks", nargs="*", help="notebooks to run (default: all of nbs/*.ipynb)")
    args = parser.parse_args()
    out_dir = ROOT / args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p).resolve() for p in args.notebooks] or sorted((ROOT / "nbs").glob("*.ipynb"))
    results = []
    for p in paths:
        ok, line = run(p, out_dir, args.timeout)
        print(line, flush=True)
        results.append(ok)
    print(f"Executed notebooks are in {out_dir}/")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
