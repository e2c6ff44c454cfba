"""Extracting an archive safely: `extract_archive()` (zip, tar in any compression, 7z, and Planet's tar inside
a 7z) into a new folder, member by member, refusing members that would land outside it (absolute paths,
`..`, links pointing out, devices) and archives that would expand to an implausible size (a zip bomb) or
more than the disk holds."""
from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from .errors import DatasetError, UnsafeArchiveError

__all__ = ["extract_archive"]

SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z")  # a file so named must be an archive
# Limits on what an archive may expand to, checked before (zip, 7z) or while (tar) anything is written. Real
# datasets expand 1-10x (JPEGs and PNGs barely compress; text ~4x); a zip bomb expands ~1000x. Both limits
# can be lifted for an archive you trust: extract_archive(..., max_ratio=None, max_size=None).
MAX_RATIO = 200
RATIO_FLOOR = 256 << 20  # below 256 MiB expanded, any ratio is harmless (a CSV of repeated values compresses 100x)
MAX_SIZE = 200 << 30  # 200 GiB, more than any dataset of the course


def extract_archive(src: str | Path, dest: str | Path, *, max_ratio: float | None = MAX_RATIO,
                    max_size: int | None = MAX_SIZE, budget: "SizeBudget | None" = None) -> Path:
    """Extract `src` (.zip, .tar, .tar.gz/.tgz, .7z or .tar.7z) into the new folder `dest`, and return `dest`.

    Members are extracted one by one into a temporary folder beside `dest`, renamed to `dest` at the end,
    so an interruption leaves no half-extracted `dest`. A member that would land outside it (an absolute
    path, `..`, a link pointing out, any symbolic link in a zip or 7z) stops everything with UnsafeArchiveError
    naming the member; a truncated or corrupt archive, with a DatasetError saying to download it again. An archive
    whose contents add up to more than `max_size` bytes, more than `max_ratio` times its own size (above
    RATIO_FLOOR), or more than the free disk space is refused with a DatasetError (None lifts a limit).
    `budget` (a SizeBudget) shares those limits between several archives (a dataset's files), instead.
    """
    src, dest = Path(src), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; extract_archive only creates new folders.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
    try:
        try:
            if budget is not None:
                budget.archive = src  # the one named if it is refused
            _extractor(src)(src, tmp, budget or SizeBudget(src, tmp, max_ratio, max_size))
        except _damage_errors() as e:
            raise DatasetError(f"{src} is truncated or damaged ({type(e).__name__}: {e}). Nothing was extracted: "
                               "delete it and download it again.") from e
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after the rename, unless something failed
    return dest


def _damage_errors() -> tuple[type[BaseException], ...]:
    """What reading a truncated or corrupt archive raises (never a full disk or a permission error)."""
    errors = (EOFError, tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, gzip.BadGzipFile)
    try:
        from py7zr.exceptions import ArchiveError
    except ImportError:  # without py7zr, a .7z is refused before any reading
        return errors
    return (*errors, ArchiveError)


def _archive_kind(path: Path) -> str | None:
    """`tar.7z`, `7z`, `zip`, `tar` (any compression) or None, from the name and the first bytes."""
    if path.name.lower().endswith(".tar.7z"):
        return "tar.7z"
    with open(path, "rb") as f:
        if f.read(len(SEVEN_ZIP_MAGIC)) == SEVEN_ZIP_MAGIC:
            return "7z"
    if zipfile.is_zipfile(path):
        return "zip"
    return "tar" if tarfile.is_tarfile(path) else None


def _extractor(src: Path) -> Callable[[Path, Path], None]:
    kind = _archive_kind(src)
    if kind is None:
        raise DatasetError(f"{src} is not a zip, tar or 7z archive. If it is a damaged download, delete it and "
                           "run again.")
    return {"zip": _extract_zip, "tar": _extract_tar, "7z": _extract_7z, "tar.7z": _extract_tar_7z}[kind]


def _checked_target(archive: Path, folder: Path, name: str) -> Path:
    """Where member `name` lands in `folder`; UnsafeArchiveError if that is outside it."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        _refuse(archive, name, "has an absolute path")
    if ".." in parts:
        _refuse(archive, name, "climbs out with '..'")
    target = folder.joinpath(*parts)
    if not _inside(folder, target):
        _refuse(archive, name, "would land outside the destination (through a link)")
    return target


def _inside(folder: Path, path: Path) -> bool:
    """Whether `path`, with every link resolved, is inside `folder`."""
    root = os.path.realpath(folder)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def _refuse(archive: Path, name: str, why: str) -> None:
    raise UnsafeArchiveError(f"Refusing to extract {archive}: its member {name!r} {why}. Nothing was extracted. "
                             "The archive is damaged or hostile: delete it.")


class SizeBudget:
    """What an archive (or the archives of one dataset together) may still expand to; `spend` refuses it once
    its members add up past a limit. `packed`: the archives' total size (default: `archive`'s)."""

    def __init__(self, archive: Path, folder: Path, max_ratio: float | None = MAX_RATIO,
                 max_size: int | None = MAX_SIZE, packed: int | None = None):
        self.archive, self.folder, self.total = archive, folder, 0
        self.max_ratio, self.max_size = max_ratio, max_size
        self.packed = max(archive.stat().st_size if packed is None else packed, 1)
        self.free = _free_bytes(folder)

    def spend(self, nbytes: int) -> None:
        """Count `nbytes` more of extracted content (before writing them)."""
        self.total += max(nbytes, 0)
        total, name = self.total, self.archive.name
        if self.max_size is not None and total > self.max_size:
            self._refuse(f"its contents add up to at least {_mib(total)}, more than the limit of {_mib(self.max_size)}",
                         f"max_size={total}")
        if self.max_ratio is not None and total > RATIO_FLOOR and total > self.max_ratio * self.packed:
            self._refuse(f"it would expand to at least {_mib(total)}, {total / self.packed:.0f} times its own size "
                         f"({_mib(self.packed)}; datasets expand at most ~10 times, a zip bomb ~1000 times)",
                         "max_ratio=None")
        if total > self.free:
            raise DatasetError(f"Refusing to extract {name}: it expands to at least {_mib(total)} but there is only "
                               f"{_mib(self.free)} free in {self.folder.parent}. Nothing was kept. Free some space "
                               "(or set COURSE_DATA to a bigger disk) and run again.")

    def _refuse(self, why: str, override: str) -> None:
        raise DatasetError(f"Refusing to extract {self.archive}: {why}. Nothing was kept. If it is damaged or "
                           "not the dataset, delete it; if you trust it, call "
                           f"extract_archive(src, dest, {override}).")


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _extract_zip(archive: Path, folder: Path, budget: SizeBudget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # every check before anything is written (zipfile never writes past file_size)
            _checked_target(archive, folder, info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):  # zipfile would write it as a file holding the target's
                # name, then fail on a member written through it (other unzippers would follow it)
                _refuse(archive, info.filename, "is a symbolic link (not accepted in .zip archives)")
            budget.spend(info.file_size)
        for info in infos:
            zf.extract(info, folder)


def _extract_tar(archive: Path, folder: Path, budget: SizeBudget) -> None:
    # One pass, member by member, so a compressed tar is read once; each is checked before it is written
    # (and a bomb is stopped as soon as the sizes seen so far pass a limit).
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python's own checks too, where present
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            target = _checked_target(archive, folder, member.name)
            if member.issym() and not _inside(folder, target.parent / member.linkname):
                _refuse(archive, member.name, f"is a link to {member.linkname!r}, outside the destination")
            if member.islnk() and not _inside(folder, folder / member.linkname):
                _refuse(archive, member.name, f"is a hard link to {member.linkname!r}, outside the destination")
            if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
                _refuse(archive, member.name, "is a device or a pipe")
            budget.spend(member.size if member.isfile() else 0)
            tar.extract(member, folder, **safe)


def _extract_7z(archive: Path, folder: Path, budget: SizeBudget) -> None:
    with _open_7z(archive) as z:
        for info in z.list():
            _checked_target(archive, folder, info.filename)
            if info.is_symlink:  # only readable by extracting it; the datasets have none
                _refuse(archive, info.filename, "is a symbolic link (not accepted in .7z archives)")
            budget.spend(info.uncompressed or 0)
        z.extractall(folder)


def _extract_tar_7z(archive: Path, folder: Path, budget: SizeBudget) -> None:
    """A tar inside a 7z (Planet's train-jpg.tar.7z): unpack the 7z, then the tar, then drop the tar."""
    inner = folder / ".tar.7z"
    _extract_7z(archive, inner, budget)
    tars = sorted(inner.rglob("*.tar"))
    if len(tars) != 1:
        raise DatasetError(f"{archive} should hold exactly one .tar file; it holds {[t.name for t in tars]}.")
    _extract_tar(tars[0], folder, budget)  # the budget counts the tar and its members: both are on disk at once
    shutil.rmtree(inner)


def _open_7z(archive: Path):
    try:
        import py7zr
    except ImportError as e:
        raise DatasetError(f"Extracting {archive.name} needs the py7zr package ({e}): "
                           "pip install -r requirements.txt") from None
    return py7zr.SevenZipFile(archive)
