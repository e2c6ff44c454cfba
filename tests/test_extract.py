"""extract_archive: every format the lessons' files come in, built here; hostile archives refused whole.

A refused or failed extraction leaves no destination folder, no temporary folder and nothing outside.
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

from course_utils.download import DatasetError, UnsafeArchiveError, extract_archive

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


def test_a_truncated_archive_fails_and_leaves_no_folder(tmp_path):
    whole = write_tar(tmp_path / "whole.tgz", "w:gz", {"big.bin": bytes(range(256)) * 4000})
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(DatasetError, match=r"cut\.tgz is truncated or damaged .*delete it and download it again"):
        extract_archive(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tgz", "whole.tgz"]


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
