"""A dataset mirror: one folder, or one http(s) base address, holding the registry's files under their file
names (`camvid.tgz`, `train-jpg.tar.7z`, ...). A school or a study group fills it once (`python -m
course_utils mirror DEST`) and points everyone at it with `COURSE_MIRROR` (or `--mirror`), so thirty
students do not each download 600 MB. `download.py` asks the mirror first and falls back to a file's real
address only when the mirror lacks it; this module only says where a file is, and fills a mirror folder.
"""
from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import DatasetError
from .persist import atomic_write

__all__ = ["copy_to_mirror"]

PROBE_TIMEOUT = 5.0  # seconds to wait for a mirror's answer when only asking whether it has a file
DOWN_FOR = 60.0  # seconds a mirror that did not answer a probe is taken as down (one wait, not one per file)
COPY_CHUNK = 2**20  # bytes per read when copying a file into a mirror folder
SCHEMES = ("http", "https", "file")
_down: dict[str, tuple[float, str]] = {}  # mirror -> (when it failed a probe, why)


def is_local(mirror: str) -> bool:
    """Whether `mirror` is a folder (anything without a `scheme://`); an address is checked to be a valid
    http(s):// or file:// one, else DatasetError naming it."""
    if "://" not in mirror:
        return False if urllib.parse.urlsplit(mirror).scheme in SCHEMES else True
    what = f"The dataset mirror {mirror!r} (COURSE_MIRROR or --mirror)"
    try:
        parts = urllib.parse.urlsplit(mirror)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as e:
        raise DatasetError(f"{what} is not a valid address ({e}): correct it, or unset COURSE_MIRROR.") from None
    if parts.scheme.lower() not in SCHEMES:
        raise DatasetError(f"{what} uses {parts.scheme}://, which the course cannot download from: use a "
                           "folder or an http(s):// address.")
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise DatasetError(f"{what} names no server: write it as http://HOST:PORT, or unset COURSE_MIRROR.")
    return False


def mirror_url(mirror: str, name: str) -> str:
    """The address of file `name` on `mirror`: a file:// URL for a folder, so that a copy from a shared drive
    goes through the same download code (atomic, verified) as one from a server."""
    if is_local(mirror):
        return (Path(mirror).expanduser().resolve() / name).as_uri()
    return mirror.rstrip("/") + "/" + urllib.parse.quote(name)


def on_mirror(mirror: str, name: str) -> bool:
    """Whether `mirror` has file `name`. A server that cannot be reached raises OSError (URLError) with the
    reason; only a clear "not found" (HTTP 404 or 410, or a missing file) answers False."""
    if is_local(mirror):
        folder = Path(mirror).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"The dataset mirror {folder} (COURSE_MIRROR or --mirror) is not a folder: "
                                    "mount the shared drive, correct the path, or unset COURSE_MIRROR.")
        path = folder / name
        if path.is_file() and not _inside(folder, path):
            raise DatasetError(f"The dataset mirror {folder} holds {name} as a link to {os.path.realpath(path)}, "
                               "outside the mirror folder: refused. Put the file itself in the mirror (or remove the "
                               "link) and run again.")
        return path.is_file()
    request = urllib.request.Request(mirror_url(mirror, name), method="HEAD", headers={"User-Agent": "course_utils"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT):
            return True
    except urllib.error.HTTPError as e:
        if e.code in (404, 410):
            return False
        raise


def probe(mirror: str, name: str) -> bool:
    """`on_mirror` for listings (`python -m course_utils datasets`): a server that did not answer is taken as
    down for DOWN_FOR seconds, so a dead mirror costs one PROBE_TIMEOUT, not one per file. Raises OSError
    (with the first failure's reason) while it is down."""
    failed = _down.get(mirror)
    if failed and time.monotonic() - failed[0] < DOWN_FOR:
        raise OSError(failed[1])
    try:
        return on_mirror(mirror, name)
    except urllib.error.HTTPError:
        raise  # it answered
    except OSError as e:
        _down[mirror] = (time.monotonic(), str(getattr(e, "reason", e)))
        raise


def _inside(folder: Path, path: Path) -> bool:
    root = os.path.realpath(folder)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def copy_to_mirror(files: list[Path], dest: str | Path) -> list[Path]:
    """Copy `files` (downloads of registry files) into the mirror folder `dest`, each written to a temporary
    name and renamed, so a mirror never shows a half-copied file; a file already there with the same size is
    kept. Returns the paths written."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"The mirror folder {dest} is a file, not a folder: choose a folder (it is created "
                                 "if needed).")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"Cannot make the mirror folder {dest}: part of that path is a file. Choose "
                                 "another folder.") from None
    written = []
    for f in files:
        target = dest / f.name
        if target.is_file() and target.stat().st_size == f.stat().st_size:
            continue
        with open(f, "rb") as src:  # a mirror is for others to read: 0o644 whatever the umask
            atomic_write(target, lambda fh: shutil.copyfileobj(src, fh, COPY_CHUNK), mode=0o644)
        written.append(target)
    return written
