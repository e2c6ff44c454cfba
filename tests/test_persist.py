"""Write to a temporary file, fsync, rename: `persist.commit_file` and `persist.atomic_write`, the one way the
package gives a written file its final name (downloads, the mirror, Kaggle's files, checksums, saves)."""
from __future__ import annotations

import os

import pytest

from course_utils import persist
from course_utils.persist import atomic_write, commit_file


def test_commit_file_syncs_the_file_before_renaming_it_over_the_old_one(tmp_path, monkeypatch):
    tmp, dest = tmp_path / "f.part", tmp_path / "f"
    tmp.write_bytes(b"new")
    dest.write_bytes(b"old")
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(persist.os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_ino)),
                                                         real_fsync(fd)))
    monkeypatch.setattr(persist.os, "replace", lambda a, b: (events.append(("replace", os.stat(a).st_ino)),
                                                             real_replace(a, b)))
    ino = tmp.stat().st_ino
    assert commit_file(tmp, dest) == dest
    assert events == [("fsync", ino), ("replace", ino)]
    assert dest.read_bytes() == b"new" and not tmp.exists()


def test_atomic_write_syncs_and_leaves_only_the_file(tmp_path, fsynced):
    f = tmp_path / "sub" / "f.json"
    atomic_write(f, lambda fh: fh.write(b"{}"))
    assert f.read_bytes() == b"{}" and fsynced(f)
    assert [p.name for p in f.parent.iterdir()] == ["f.json"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_atomic_write_gives_the_usual_permissions_or_the_mode_asked_for(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "private", lambda fh: fh.write(b"x"))
        atomic_write(tmp_path / "shared", lambda fh: fh.write(b"x"), mode=0o644)
    finally:
        os.umask(old)
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o644
