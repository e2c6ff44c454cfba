"""The feedback store and its reader: rows are whole or absent whatever the disk does, the folder is checked at
startup, cells that a spreadsheet would run as formulas are quoted and read back as given, and every malformed
feedback.csv is refused naming its file and line and saying how to fix it."""
from __future__ import annotations

import errno
import os

import pytest

from course_utils.serve import feedback as fb
from course_utils.serve.feedback import FIELDS, FeedbackFolderError, FeedbackStore, read_feedback

HEADER = ",".join(FIELDS)
PNG = b"\x89PNG not really, but bytes are bytes"


def _store(tmp_path, **kw) -> FeedbackStore:
    store = FeedbackStore(tmp_path / "fb", "export.pkl@0123456789ab")
    store.prepare()
    return store


def _lines(store) -> list[str]:
    return store.csv.read_text(encoding="utf-8").splitlines()


# --- writing -----------------------------------------------------------------------------------------------
def test_a_file_without_a_final_line_end_gets_one_before_the_next_row(tmp_path):
    """A hand edit that leaves no final newline: the next row starts on a line of its own."""
    store = _store(tmp_path)
    store.add(PNG, ".png", "a", "b")
    store.csv.write_bytes(store.csv.read_bytes().rstrip(b"\r\n"))
    store.add(PNG + b"2", ".png", "b", "a")
    rows = read_feedback(store.folder)
    assert [(r["predicted"], r["corrected"]) for r in rows] == [("a", "b"), ("b", "a")]


@pytest.mark.parametrize("failure", ["raise", "short"])
def test_a_failed_append_leaves_no_part_of_a_row_and_no_image(tmp_path, monkeypatch, failure):
    """The disk fills during the append: the CSV is cut back to its old size, the new image removed, and the
    next correction is a whole row of its own."""
    store = _store(tmp_path)
    store.add(PNG, ".png", "a", "b")
    before = store.csv.read_bytes()
    real_write = os.write

    def full(fd, data):
        if failure == "short":
            return real_write(fd, data[:20])  # part of the row reached the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fb.os, "write", full)
    with pytest.raises(OSError) as e:
        store.add(PNG + b"new", ".png", "a", "b")
    assert e.value.errno == errno.ENOSPC
    assert store.csv.read_bytes() == before
    assert sorted(p.name for p in store.folder.iterdir()) == sorted(["feedback.csv", read_feedback(store.folder)[0]
                                                                     ["file"]])
    monkeypatch.undo()
    store.add(PNG + b"new", ".png", "b", "a")
    assert [r["corrected"] for r in read_feedback(store.folder)] == ["b", "a"]


def test_startup_removes_upload_temp_files_a_crash_left(tmp_path):
    """A kill between writing an upload and linking it leaves `.upload.*.tmp`: the next start removes it."""
    (tmp_path / "fb").mkdir()
    (tmp_path / "fb" / ".upload.ysvmm02j.tmp").write_bytes(b"half an image")
    store = _store(tmp_path)
    assert list(store.folder.iterdir()) == []


def test_a_feedback_csv_with_another_header_is_refused_at_startup(tmp_path):
    (tmp_path / "fb").mkdir()
    (tmp_path / "fb" / "feedback.csv").write_text("file,corrected\nx.png,a\n")
    with pytest.raises(FeedbackFolderError) as e:
        _store(tmp_path)
    msg = str(e.value)
    assert "feedback.csv" in msg and "'file,corrected'" in msg and HEADER in msg and "--feedback" in msg
    assert (tmp_path / "fb" / "feedback.csv").read_text() == "file,corrected\nx.png,a\n"


def test_a_folder_that_is_a_file_is_refused_at_startup(tmp_path):
    (tmp_path / "fb").write_text("not a folder")
    with pytest.raises(FeedbackFolderError, match=r"fb is a file, not a folder; give --feedback a folder"):
        _store(tmp_path)


def test_a_feedback_csv_that_is_a_folder_is_refused_at_startup(tmp_path):
    (tmp_path / "fb" / "feedback.csv").mkdir(parents=True)
    with pytest.raises(FeedbackFolderError, match=r"feedback.csv is not a file; move it away"):
        _store(tmp_path)


@pytest.mark.parametrize("code,says", [(errno.EROFS, "the disk is mounted read-only. Make it writable"),
                                       (errno.ENOSPC, "the disk is full. Free some space there")])
def test_a_read_only_or_full_folder_is_refused_at_startup(tmp_path, monkeypatch, code, says):
    def refuse(fd, data):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fb.os, "write", refuse)
    with pytest.raises(FeedbackFolderError) as e:
        _store(tmp_path)
    assert f"The feedback folder {tmp_path / 'fb'} cannot be written: {says}" in str(e.value)
    assert list((tmp_path / "fb").iterdir()) == []  # the probe file is gone too


VALUES = ["=1+2", "@SUM(1) a", "+x", "-3.5 10.0", "'=quoted", "''", "'plain", "plain", "a=b", "", "\tx"]


@pytest.mark.parametrize("value", VALUES)
def test_cells_are_quoted_against_formulas_and_read_back_as_given(value):
    cell = fb.quote_cell(value)
    assert not cell.startswith(fb.FORMULA_START)
    assert fb.unquote_cell(cell) == value


def test_class_names_that_look_like_formulas_are_stored_quoted(tmp_path):
    """Class names such as `=1+2` or `@SUM(1)` reach feedback.csv with a leading quote, and read_feedback
    (so finetune) gets them back unchanged."""
    store = _store(tmp_path)
    store.add(PNG, ".png", "=1+2 @SUM(1)", "@SUM(1) a")
    assert _lines(store)[1].endswith(",'=1+2 @SUM(1),'@SUM(1) a,export.pkl@0123456789ab")
    row = read_feedback(store.folder)[0]
    assert (row["predicted"], row["corrected"]) == ("=1+2 @SUM(1)", "@SUM(1) a")


# --- reading -----------------------------------------------------------------------------------------------
def _folder(tmp_path, text: str | bytes, files=("a.png", "b.png")):
    folder = tmp_path / "fb"
    folder.mkdir()
    for name in files:
        (folder / name).write_bytes(PNG)
    (folder / "feedback.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


ROW_A = "2026-12-07T13:43:09+00:00,a.png,x,y,e.pkl@1"
ROW_B = "2026-12-07T13:43:42+00:00,b.png,y,x,e.pkl@1"


@pytest.mark.parametrize("glued", [f"{ROW_A}{ROW_B}",  # no line end after the first row
                                   "2026-12-07T13:43:09+00:00,a.png,x," + ROW_B])  # a torn row, then a whole one
def test_two_rows_glued_on_one_line_are_explained(tmp_path, glued):
    """Two rows on one line (a lost line end, or a torn row the next one was glued to): the message says so
    and where to split, and does not advise removing the line."""
    folder = _folder(tmp_path, f"{HEADER}\n{ROW_A}\n{glued}\n")
    with pytest.raises(ValueError) as e:
        read_feedback(folder)
    msg = str(e.value)
    assert "feedback.csv, line 3:" in msg and "two rows are glued on one line" in msg
    assert "Split the line in two just before '2026-12-07T13:43" in msg and "do not remove it" in msg


def test_a_wrong_header_is_named(tmp_path):
    folder = _folder(tmp_path, f"when,image,pred,label\n{ROW_A}\n")
    with pytest.raises(ValueError, match=r"feedback.csv, line 1: the header is 'when,image,pred,label', not "
                                         r"'time,file,predicted,corrected,export'"):
        read_feedback(folder)


def test_a_missing_header_is_named_and_the_first_row_kept(tmp_path):
    folder = _folder(tmp_path, f"{ROW_A}\n{ROW_B}\n")
    with pytest.raises(ValueError, match=r"has no header: line 1 is already a correction. Add the line "
                                         r"time,file,predicted,corrected,export at the top"):
        read_feedback(folder)


def test_a_utf8_bom_is_accepted(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a BOM."""
    folder = _folder(tmp_path, f"\ufeff{HEADER}\r\n{ROW_A}\r\n")
    rows = read_feedback(folder)
    assert [(r["time"], r["file"], r["line"]) for r in rows] == [("2026-12-07T13:43:09+00:00", "a.png", 2)]


def test_a_latin1_byte_names_the_file_and_line(tmp_path):
    folder = _folder(tmp_path, f"{HEADER}\n{ROW_A}\n{ROW_B}\n".replace(",y,x,", ",caf\xe9,x,").encode("latin-1"))
    with pytest.raises(ValueError) as e:
        read_feedback(folder)
    assert str(e.value).startswith(f"{folder / 'feedback.csv'}, line 3: the byte 0xe9 is not UTF-8")
    assert "save it as UTF-8" in str(e.value)


def test_rows_the_old_app_corrupted_are_explained_as_glued(tmp_path):
    """A CSV the app itself left with a partial row and a row glued onto it (before rows were written whole):
    the reader says two rows are glued and where to split them."""
    torn = "2026-12-07T13:43:40+00:00,a.png,@SUM(1) a,"
    folder = _folder(tmp_path, f"{HEADER}\n{torn}{ROW_B}\n")
    with pytest.raises(ValueError, match=r"line 2: 8 fields, not 5: two rows are glued"):
        read_feedback(folder)
