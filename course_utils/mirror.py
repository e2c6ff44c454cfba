"""A dataset mirror: one folder, or one http(s) base address, holding the registry's files under their file
names (`camvid.tgz`, `train-jpg.tar.7z`, ...). A school or a study group fills it once (`python -m
course_utils mirror DEST`) and points everyone at it with `COURSE_MIRROR` (or `--mirror`), so thirty
students do not each download 600 MB. `download.py` asks the mirror first and falls back to a file's real
address only when the mirror lacks it; this module only says where a file is, and fills a mirror folder.
"""
from __future__ import annotations

import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .persist import atomic_write

__all__ = ["mirror_url", "is_local", "on_mirror", "copy_to_mirror"]

PROBE_TIMEOUT = 10.0  # seconds to wait for a mirror's answer when only asking whether it has a file
COPY_CHUNK = 2**20  # bytes per read when copying a file into a mirror folder


def is_local(mirror: str) -> bool:
    """Whether `mirror` is a folder (anything that is not an http(s):// or file:// address)."""
    return urllib.parse.urlsplit(mirror).scheme not in ("http", "https", "file")


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
        return (folder / name).is_file()
    request = urllib.request.Request(mirror_url(mirror, name), method="HEAD", headers={"User-Agent": "course_utils"})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT):
            return True
    except urllib.error.HTTPError as e:
        if e.code in (404, 410):
            return False
        raise


def copy_to_mirror(files: list[Path], dest: str | Path) -> list[Path]:
    """Copy `files` (downloads of registry files) into the mirror folder `dest`, each written to a temporary
    name and renamed, so a mirror never shows a half-copied file; a file already there with the same size is
    kept. Returns the paths written."""
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for f in files:
        target = dest / f.name
        if target.is_file() and target.stat().st_size == f.stat().st_size:
            continue
        with open(f, "rb") as src:  # a mirror is for others to read: 0o644 whatever the umask
            atomic_write(target, lambda fh: shutil.copyfileobj(src, fh, COPY_CHUNK), mode=0o644)
        written.append(target)
    return written
