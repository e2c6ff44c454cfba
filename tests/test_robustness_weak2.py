"""Round two of the hostile-input trial (issue 16), more of the WEAK table cases: a zip with a symbolic link
and a file written through it (D13), a truncated or corrupt archive (D14)."""
from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile

import py7zr
import pytest

from course_utils.download import DatasetError, UnsafeArchiveError, extract_archive


def _contents(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


# --- D13: a zip symlink entry, and a file written through it -------------------------------------------------
def _zip_with_link(path, target):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/fine.txt", b"ok")
        link = zipfile.ZipInfo("data/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16  # how zip (Info-ZIP, Python) marks a symbolic link
        zf.writestr(link, target)
        zf.writestr("data/link/written_through.txt", b"evil")
    return path


@pytest.mark.parametrize("target", ["../../outside", "/tmp", "fine.txt"])
def test_a_symbolic_link_in_a_zip_is_refused_by_name(tmp_path, target):
    (tmp_path / "outside").mkdir()
    archive = _zip_with_link(tmp_path / "links.zip", target)
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, tmp_path / "out")
    assert str(err.value) == (f"Refusing to extract {archive}: its member 'data/link' is a symbolic link (not "
                              "accepted in .zip archives). Nothing was extracted. The archive is damaged or "
                              "hostile: delete it.")
    assert _contents(tmp_path) == ["links.zip", "outside"] and not any((tmp_path / "outside").iterdir())


def test_a_zip_without_links_still_extracts(tmp_path):
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as zf:
        info = zipfile.ZipInfo("data/run.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16  # unix modes on ordinary files are no links
        zf.writestr(info, b"#!/bin/sh\n")
        zf.writestr("data/sub/", b"")
    out = extract_archive(tmp_path / "plain.zip", tmp_path / "out")
    assert (out / "data" / "run.sh").read_bytes() == b"#!/bin/sh\n" and (out / "data" / "sub").is_dir()


# --- D14: a truncated or corrupt archive -----------------------------------------------------------------------
PAYLOAD = {f"data/f{i}.bin": os.urandom(40_000) for i in range(4)}  # random bytes: compression cannot shrink them


def _tar(mode):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in PAYLOAD.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip_with_bad_crc():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in PAYLOAD.items():
            zf.writestr(name, data)
    raw = bytearray(buf.getvalue())
    raw[100] ^= 0xFF  # one flipped byte inside the first member's data: the zip still opens, the member is bad
    return bytes(raw)


def _7z(tmp_path):
    with py7zr.SevenZipFile(tmp_path / "whole.7z", "w") as z:
        for name, data in PAYLOAD.items():
            z.writestr(data, name)
    data = (tmp_path / "whole.7z").read_bytes()
    (tmp_path / "whole.7z").unlink()
    return data


DAMAGED = {
    "cut.tgz": lambda tmp: _tar("w:gz")[:60_000],
    "cut.tar.xz": lambda tmp: _tar("w:xz")[:60_000],
    "cut.tar": lambda tmp: _tar("w")[:60_000],
    "badcrc.zip": lambda tmp: _zip_with_bad_crc(),
    "flipped.7z": lambda tmp: (lambda d: d[:200] + bytes(b ^ 0xFF for b in d[200:400]) + d[400:])(_7z(tmp)),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_archive_is_named_and_leaves_nothing(tmp_path, name):
    archive = tmp_path / name
    archive.write_bytes(DAMAGED[name](tmp_path))
    with pytest.raises(DatasetError) as err:
        extract_archive(archive, tmp_path / "out")
    msg = str(err.value)
    assert msg.startswith(f"{archive} is truncated or damaged (")
    assert msg.endswith("). Nothing was extracted: delete it and download it again.")
    assert _contents(tmp_path) == [name], "no folder, finished or half-made, is left beside it"
