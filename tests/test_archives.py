"""extract_archive: every format the lessons' files come in, built here; hostile archives refused whole.

A refused or failed extraction leaves no destination folder, no temporary folder and nothing outside.
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

import course_utils.archives as archives
from course_utils.download import (
    DatasetError,
    UnsafeArchiveError,
    extract_archive,
)

TREE = {"top/a.txt": b"alpha", "top/sub/b.txt": b"beta" * 100}


def write_tar(path: Path, mode: str = "w", files: dict[str, bytes] = TREE) -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            add_member(tar, name, data=data)
    return path


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", kind=tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data)
    tar.addfile(info, io.BytesIO(data) if data else None)


def write_zip(path: Path, files: dict[str, bytes] = TREE) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def write_7z(path: Path, files: dict[str, bytes] = TREE) -> Path:
    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in files.items():
            z._writestr(data, name)  # the private writer: the public one refuses to build hostile names
    return path


def write_tar_7z(path: Path) -> Path:
    tar = write_tar(path.parent / "inner.tar")
    with py7zr.SevenZipFile(path, "w") as z:
        z.write(tar, "inner.tar")
    tar.unlink()
    return path


BUILDERS = {
    "a.zip": write_zip,
    "a.tar": write_tar,
    "a.tar.gz": lambda p: write_tar(p, "w:gz"),
    "a.tgz": lambda p: write_tar(p, "w:gz"),
    "a.7z": write_7z,
    "a.tar.7z": write_tar_7z,
}


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_format_extracts_to_the_same_tree(tmp_path, name):
    archive = BUILDERS[name](tmp_path / name)
    dest = extract_archive(archive, tmp_path / "out")
    assert dest == tmp_path / "out"
    assert files_under(dest) == TREE
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "out"])  # no temporary folder left


def hostile_tar(path: Path, *members) -> Path:
    with tarfile.open(path, "w") as tar:
        add_member(tar, "fine.txt", data=b"ok")  # a good member first: it must not survive either
        for name, kind, link in members:
            add_member(tar, name, data=b"evil" if kind == tarfile.REGTYPE else b"", kind=kind, link=link)
    return path


HOSTILE_TARS = {
    "dot-dot": ([("../evil.txt", tarfile.REGTYPE, "")],
                "its member '../evil.txt' climbs out with '..'"),
    "absolute path": ([("/tmp/evil.txt", tarfile.REGTYPE, "")],
                      "its member '/tmp/evil.txt' has an absolute path"),
    "symlink out": ([("link", tarfile.SYMTYPE, "../outside")],
                    "its member 'link' is a link to '../outside', outside the destination"),
    "absolute symlink": ([("etc", tarfile.SYMTYPE, "/etc")],
                         "its member 'etc' is a link to '/etc', outside the destination"),
    "symlink chain": ([("here", tarfile.SYMTYPE, "."), ("up", tarfile.SYMTYPE, "here/..")],
                      "its member 'up' is a link to 'here/..', outside the destination"),
    "hard link out": ([("hard", tarfile.LNKTYPE, "../outside")],
                      "its member 'hard' is a hard link to '../outside', outside the destination"),
    "device": ([("tty", tarfile.CHRTYPE, "")], "its member 'tty' is a device or a pipe"),
}


@pytest.mark.parametrize("case", list(HOSTILE_TARS))
def test_hostile_tar_members_are_refused_and_nothing_is_extracted(tmp_path, case):
    members, why = HOSTILE_TARS[case]
    (tmp_path / "outside").write_text("the user's file")
    archive = hostile_tar(tmp_path / "evil.tar", *members)
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, tmp_path / "out")
    assert str(err.value) == (f"Refusing to extract {archive}: {why}. Nothing was extracted. "
                              "The archive is damaged or hostile: delete it.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar", "outside"]
    assert (tmp_path / "outside").read_text() == "the user's file"


@pytest.mark.parametrize("name,member", [("evil.zip", "../evil.txt"), ("abs.zip", "/tmp/evil.txt"),
                                         ("evil.7z", "../evil.txt")])
def test_hostile_zip_and_7z_members_are_refused(tmp_path, name, member):
    write = write_zip if name.endswith(".zip") else write_7z
    archive = write(tmp_path / name, {"fine.txt": b"ok", member: b"evil"})
    with pytest.raises(UnsafeArchiveError, match=f"its member '{member}' "):
        extract_archive(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_symlinks_in_7z_archives_are_refused(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "target.txt").write_text("x")
    (tmp_path / "src" / "link").symlink_to("target.txt")
    with py7zr.SevenZipFile(tmp_path / "links.7z", "w") as z:
        z.writeall(tmp_path / "src", "src")
    with pytest.raises(UnsafeArchiveError, match="its member 'src/link' is a symbolic link"):
        extract_archive(tmp_path / "links.7z", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_existing_destination_is_never_overwritten(tmp_path):
    archive = write_zip(tmp_path / "a.zip")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="already exists"):
        extract_archive(archive, tmp_path / "out")
    assert files_under(tmp_path / "out") == {"mine.txt": b"keep"}


def test_a_file_that_is_no_archive_is_named_in_the_error(tmp_path):
    (tmp_path / "page.html").write_text("<html>Access denied</html>")
    with pytest.raises(DatasetError, match="page.html is not a zip, tar or 7z archive"):
        extract_archive(tmp_path / "page.html", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- archives too large to unpack ---------------------------------------------------------------------------
ZEROS = b"\0" * (8 << 20)  # 8 MB that deflate to ~8 KB: a ratio of ~1000, as in a zip bomb


def _zip_bomb(path, copies=2):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(copies):
            zf.writestr(f"bomb/zeros_{i}.bin", ZEROS)
    return path


def _tgz_bomb(path, copies=2):
    with tarfile.open(path, "w:gz") as tar:
        for i in range(copies):
            info = tarfile.TarInfo(f"bomb/zeros_{i}.bin")
            info.size = len(ZEROS)
            tar.addfile(info, io.BytesIO(ZEROS))
    return path


@pytest.fixture
def small_floor(monkeypatch):
    """The ratio check only matters above a size a disk notices; lowered here so the bombs stay small."""
    monkeypatch.setattr(archives, "RATIO_FLOOR", 1 << 20)


def _nothing_left(tmp_path, archive):
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


@pytest.mark.parametrize("make", [_zip_bomb, _tgz_bomb])
def test_an_archive_with_an_implausible_ratio_is_refused(tmp_path, small_floor, make):
    archive = make(tmp_path / ("bomb.zip" if make is _zip_bomb else "bomb.tgz"))
    with pytest.raises(DatasetError, match=r"would expand .* times its own size.*max_ratio=None"):
        extract_archive(archive, tmp_path / "out")
    _nothing_left(tmp_path, archive)
    assert extract_archive(archive, tmp_path / "out", max_ratio=None).is_dir(), "a trusted archive can be let through"


def test_an_archive_over_the_size_cap_is_refused(tmp_path):
    archive = _zip_bomb(tmp_path / "big.zip", copies=1)
    with pytest.raises(DatasetError, match=r"8\.0 MiB.*more than the limit of 1\.0 MiB.*max_size="):
        extract_archive(archive, tmp_path / "out", max_size=1 << 20, max_ratio=None)
    _nothing_left(tmp_path, archive)


def test_an_archive_larger_than_the_free_disk_is_refused(tmp_path, monkeypatch):
    archive = _zip_bomb(tmp_path / "big.zip", copies=1)
    monkeypatch.setattr(archives, "_free_bytes", lambda folder: 1 << 20)
    with pytest.raises(DatasetError, match=r"only 1\.0 MiB free"):
        extract_archive(archive, tmp_path / "out", max_ratio=None)
    _nothing_left(tmp_path, archive)


# --- symbolic links in a zip --------------------------------------------------------------------------------
def _contents(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


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


# --- truncated or corrupt archives --------------------------------------------------------------------------
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
