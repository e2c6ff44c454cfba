"""The feedback store: what users say the right answer was, kept for `finetune`.

Each input is stored once, named by the SHA-256 of its bytes (never by the uploaded file name), and each
correction adds one row to `feedback.csv` (time, file, predicted, corrected, export: the served export's file
name and sha256 prefix, so after a fine-tune the app can serve the new export into the same folder and every row
still says which model it corrected). Nothing is ever overwritten or deleted: a file that exists already has the
same bytes, and the CSV is only appended to (a feedback.csv written before rows named their export gets the
column added once, its rows kept, with `export` empty).

Rows are whole or absent: each is one `os.write` of its encoded bytes (after a line end, if a hand edit left
the file without one), and a failed write is cut back to the size before. An input whose row could not be
written is removed again, so the folder never holds an image without its row.

Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` as a formula. Such a cell (a class name, say) is
written with a leading `'`, and `read_feedback` removes it again: a `'` is only ever added before one of those
characters (or before another `'`), so every value reads back exactly as it was given.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import os
import re
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path

from ..persist import atomic_write

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

FIELDS = ["time", "file", "predicted", "corrected", "export"]
REQUIRED = FIELDS[:4]  # rows written before the export column have it empty
CSV_NAME = "feedback.csv"
TEMP_PREFIX = ".upload."
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d)?(?:[+-]\d\d:\d\d|Z)?")  # the rows' time


class FeedbackFolderError(OSError):
    """The feedback folder cannot take corrections (a file, read-only, full, or a feedback.csv of another
    format); the message names the folder and what to do."""


def quote_cell(value: str) -> str:
    """`value` as it is written to feedback.csv: a leading `'` before a formula character (see the module)."""
    if value.startswith(FORMULA_START) or (value.startswith("'") and value[1:2].startswith(FORMULA_START + ("'",))):
        return "'" + value
    return value


def unquote_cell(cell: str) -> str:
    """The value `quote_cell` wrote as `cell`."""
    if cell.startswith("'") and cell[1:2] and cell[1:2].startswith(FORMULA_START + ("'",)):
        return cell[1:]
    return cell


class FeedbackStore:
    """Appends corrections to `folder`; each row names `export` (see `Predictor.export_id`), the model the
    correction was made against. `prepare()` checks the folder at startup; `add` also works without it."""

    def __init__(self, folder: str | Path, export: str = ""):
        self.folder = Path(folder)
        self.csv = self.folder / CSV_NAME
        self.export = export
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """At startup: create the folder, remove upload temp files a crash left, check feedback.csv's header
        (adding the export column to an older one) and test a write; FeedbackFolderError says what is wrong."""
        where = f"The feedback folder {self.folder}"
        if self.folder.exists() and not self.folder.is_dir():
            raise FeedbackFolderError(f"{where} is a file, not a folder; give --feedback a folder (it is created "
                                      "if missing).")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in self.folder.glob(f"{TEMP_PREFIX}*.tmp"):  # a crash between write and link
                stale.unlink()
            if self.csv.exists() and not self.csv.is_file():
                raise FeedbackFolderError(f"{self.csv} is not a file; move it away so the app can write its "
                                          "corrections there.")
            _add_export_column(self.csv)
            fd, probe = tempfile.mkstemp(dir=self.folder, prefix=TEMP_PREFIX, suffix=".tmp")
            try:
                os.write(fd, b"x" * 4096)  # a full disk refuses this too
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except FeedbackFolderError:
            raise
        except OSError as e:
            raise FeedbackFolderError(f"{where} cannot be written: {storage_reason(e)}. {storage_advice(e)}") from e

    def add(self, data: bytes, ext: str, predicted: str, corrected: str) -> str:
        """Store the input (once) and append a row; returns the stored file's name. On an error nothing is
        left half-stored: the row is whole or absent, and an input stored for it is removed again."""
        name = hashlib.sha256(data).hexdigest() + ext
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            created = _write_once(self.folder / name, data)
            try:
                self._append({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "file": name,
                              "predicted": predicted, "corrected": corrected, "export": self.export})
            except BaseException:
                if created:
                    (self.folder / name).unlink(missing_ok=True)
                raise
        return name

    def _append(self, row: dict) -> None:
        _add_export_column(self.csv)
        fd = os.open(self.csv, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            text = io.StringIO()
            writer = csv.writer(text)
            if size == 0:
                writer.writerow(FIELDS)
            elif not _ends_with_newline(self.csv, size):
                text.write("\n")  # a hand edit without a final line end: never glue the row onto it
            writer.writerow([quote_cell(str(row[k])) for k in FIELDS])
            data = text.getvalue().encode("utf-8")
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(errno.ENOSPC, f"only {written} of {len(data)} bytes could be written")
                os.fsync(fd)  # a row the user was thanked for survives a crash
            except BaseException:
                os.ftruncate(fd, size)  # no part of a row stays behind
                raise
        finally:
            os.close(fd)


def storage_reason(e: OSError) -> str:
    """Why a write failed, in words (the disk is full, read-only, ...)."""
    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
               errno.EROFS: "the disk is mounted read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a folder",
               errno.EISDIR: "feedback.csv is a folder"}
    return reasons.get(e.errno, e.strerror or str(e))


def storage_advice(e: OSError) -> str:
    """What to do about a failed write: free space, or another folder."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "Free some space there, or start the app with another --feedback folder."
    return "Make it writable, or start the app with another --feedback folder."


def _ends_with_newline(f: Path, size: int) -> bool:
    with open(f, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) in (b"\n", b"\r")


def _add_export_column(f: Path) -> None:
    """A feedback.csv from before rows named their export: rewrite it once (atomically, every row kept) with
    an empty `export` column, so new rows can name theirs. Any other header is refused, naming the file."""
    if not f.exists() or f.stat().st_size == 0:
        return
    with open(f, newline="", encoding="utf-8-sig", errors="replace") as fh:
        header = next(csv.reader(fh), [])
        if header == FIELDS:
            return
        fh.seek(0)
        rows = list(csv.DictReader(fh))
    if header != REQUIRED:
        raise FeedbackFolderError(f"{f} starts with the header {','.join(header)!r}, not {','.join(FIELDS)!r}: it "
                                  "was not written by this app. Move it away or start the app with another "
                                  "--feedback folder.")

    def write(out) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({**r, "export": ""} for r in rows)
        out.write(text.getvalue().encode("utf-8"))

    atomic_write(f, write)


def _write_once(f: Path, data: bytes) -> bool:
    """Write `f` atomically unless it exists (same name = same SHA-256 = same bytes); never replaces a file.
    True when this call created it."""
    if f.exists():
        return False
    fd, tmp = tempfile.mkstemp(dir=f.parent, prefix=TEMP_PREFIX, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, f)  # unlike a rename, a link fails rather than replace a file that appeared meanwhile
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(tmp)


def read_feedback(folder: str | Path) -> list[dict]:
    """The rows of `folder/feedback.csv` (cells as they were given: see `unquote_cell`), each with `path` (the
    stored input) and `line` added. Errors name the file and line and say how to fix it: a file that is not
    UTF-8 (a UTF-8 BOM is fine), a missing or other header, two rows glued on one line, an empty column, a
    row naming a file that is missing or a path outside `folder`."""
    folder = Path(folder)
    f = folder / CSV_NAME
    if not f.is_file():
        raise FileNotFoundError(f"No {CSV_NAME} in {folder}: point --feedback at the folder the web app wrote "
                                "(`serve --feedback DIR`; by default `feedback/` beside the export).")
    raw = f.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{f}, line {line}: the byte 0x{raw[e.start]:02x} is not UTF-8 (the file was saved in "
                         "another encoding, such as latin-1); save it as UTF-8 (a spreadsheet's 'CSV UTF-8') or "
                         "fix that line.") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise ValueError(f"{f} holds no corrections yet; collect some with the web app first.")
    if header not in (FIELDS, REQUIRED):
        expected = ",".join(FIELDS)
        if TIME.match(header[0]):
            raise ValueError(f"{f} has no header: line 1 is already a correction. Add the line {expected} at the "
                             "top (keep that row: it is a correction too).")
        raise ValueError(f"{f}, line 1: the header is {','.join(header)!r}, not {expected!r}; name the columns "
                         f"{expected} (in this order), or point --feedback at the folder the web app wrote.")
    rows = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        rows.append(_feedback_row(f, folder, reader.line_num, header, cells))
    if not rows:
        raise ValueError(f"{f} holds no corrections yet; collect some with the web app first.")
    return rows


def _feedback_row(f: Path, folder: Path, line: int, header: list[str], cells: list[str]) -> dict:
    """One checked row of feedback.csv as a dict (see `read_feedback`)."""
    where = f"{f}, line {line}"
    if len(cells) > len(header):
        glued = [m for c in cells[1:] for m in [TIME.search(c)] if m]
        if glued:
            raise ValueError(f"{where}: {len(cells)} fields, not {len(header)}: two rows are glued on one line (the "
                             f"first lost its line end). Split the line in two just before {glued[0].group()!r}; "
                             "do not remove it, it holds two corrections.")
        raise ValueError(f"{where}: {len(cells)} fields, not {len(header)}; a value with a comma must be in double "
                         "quotes. Fix the line.")
    row = {k: "" for k in FIELDS}
    row.update(zip(header, (unquote_cell(c) for c in cells)))
    # `predicted` may be empty: a multi-label model can predict no tag at all
    missing = [k for k in REQUIRED if k != "predicted" and not row[k].strip()]
    if missing:
        raise ValueError(f"{where}: the column(s) {', '.join(missing)} are empty; fix or remove the line.")
    name = row["file"]
    if Path(name).name != name or name.startswith("."):
        raise ValueError(f"{where}: {name!r} is not a file name in {folder}; fix or remove the line.")
    row["path"], row["line"] = folder / name, line
    if not row["path"].is_file():
        raise FileNotFoundError(f"{where}: the stored input {name} is missing from {folder}; restore it or remove "
                                "the line.")
    return row
