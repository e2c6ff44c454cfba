"""The feedback store: what users say the right answer was, kept for `finetune`.

Each input is stored once, named by the SHA-256 of its bytes (never by the uploaded file name), and each
correction adds one row to `feedback.csv` (time, file, predicted, corrected, export: the served export's file
name and sha256 prefix, so after a fine-tune the app can serve the new export into the same folder and every row
still says which model it corrected). Nothing is ever overwritten or deleted: a file that exists already has the
same bytes, and the CSV is only appended to (a feedback.csv written before rows named their export gets the
column added once, its rows kept, with `export` empty).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from ..persist import atomic_write

__all__ = ["FIELDS", "FeedbackStore", "read_feedback"]

FIELDS = ["time", "file", "predicted", "corrected", "export"]
REQUIRED = FIELDS[:4]  # rows written before the export column have it empty
CSV_NAME = "feedback.csv"


class FeedbackStore:
    """Appends corrections to `folder` (created on the first one); each row names `export` (see
    `Predictor.export_id`), the model the correction was made against."""

    def __init__(self, folder: str | Path, export: str = ""):
        self.folder = Path(folder)
        self.csv = self.folder / CSV_NAME
        self.export = export
        self._lock = threading.Lock()

    def add(self, data: bytes, ext: str, predicted: str, corrected: str) -> str:
        """Store the input (once) and append a row; returns the stored file's name."""
        name = hashlib.sha256(data).hexdigest() + ext
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_once(self.folder / name, data)
            self._append({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "file": name,
                          "predicted": predicted, "corrected": corrected, "export": self.export})
        return name

    def _append(self, row: dict) -> None:
        _add_export_column(self.csv)
        new = not self.csv.exists() or self.csv.stat().st_size == 0
        with open(self.csv, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
            fh.flush()
            os.fsync(fh.fileno())  # a row the user was thanked for survives a crash


def _add_export_column(f: Path) -> None:
    """A feedback.csv from before rows named their export: rewrite it once (atomically, every row kept) with
    an empty `export` column, so new rows can name theirs."""
    if not f.exists() or f.stat().st_size == 0:
        return
    with open(f, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
        if header == FIELDS:
            return
        fh.seek(0)
        rows = list(csv.DictReader(fh))
    if header != REQUIRED:
        raise ValueError(f"{f} has the columns {header}, not {FIELDS}: it was not written by this app. Move it "
                         "away or start the app with another --feedback folder.")

    def write(out) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({**r, "export": ""} for r in rows)
        out.write(text.getvalue().encode("utf-8"))

    atomic_write(f, write)


def _write_once(f: Path, data: bytes) -> None:
    """Write `f` atomically unless it exists (same name = same SHA-256 = same bytes); never replaces a file."""
    if f.exists():
        return
    fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=".upload.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, f)  # unlike a rename, a link fails rather than replace a file that appeared meanwhile
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def read_feedback(folder: str | Path) -> list[dict]:
    """The rows of `folder/feedback.csv`, each with `path` (the stored input) added; a row naming a file that
    is missing, or a path outside `folder`, is an error naming its line."""
    folder = Path(folder)
    f = folder / CSV_NAME
    if not f.is_file():
        raise FileNotFoundError(f"No {CSV_NAME} in {folder}: point --feedback at the folder the web app wrote "
                                "(`serve --feedback DIR`; by default `feedback/` beside the export).")
    with open(f, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{f} holds no corrections yet; collect some with the web app first.")
    for line, row in enumerate(rows, start=2):
        # `predicted` may be empty: a multi-label model can predict no tag at all
        missing = [k for k in REQUIRED if k != "predicted" and not (row.get(k) or "").strip()]
        if missing:
            raise ValueError(f"{f}, line {line}: the column(s) {', '.join(missing)} are empty; fix or remove the line.")
        name = row["file"]
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"{f}, line {line}: {name!r} is not a file name in {folder}; fix or remove the line.")
        row["path"] = folder / name
        if not row["path"].is_file():
            raise FileNotFoundError(f"{f}, line {line}: the stored input {name} is missing from {folder}; "
                                    "restore it or remove the line.")
    return rows
