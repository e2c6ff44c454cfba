"""Downloading one file over HTTP(S) (or file://): `download_url()` streams it to a `.part` file, resumes a dropped
connection with a Range request, retries with backoff, gives up on a server that stalls or trickles, refuses
a web page or an empty body where an archive was expected, checks the size and sha256, and only then renames
it into place. `file_sha256()` hashes a file in chunks."""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from .archives import ARCHIVE_SUFFIXES
from .errors import ChecksumError, DownloadError
from .persist import atomic_write, commit_file

__all__ = ["download_url", "file_sha256", "CHUNK", "RETRY_STATUS"]

CHUNK = 1 << 20
RETRY_STATUS = {408, 429, 500, 502, 503, 504}  # worth another try; any other HTTP error is final


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_url(url: str, dest: str | Path, sha256: str | None = None, *, size: int | None = None,
                 timeout: float = 60.0, retries: int = 5, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download `url` to `dest` and return `dest`.

    Streams to `dest.part` with a progress bar; after a dropped connection it resumes with an HTTP Range
    request (starting over if the server ignores it or the file changed); it retries up to `retries` times
    in a row without progress, waiting `backoff`, 2x, 4x... seconds between tries; checks `size` (bytes) and
    `sha256` if given, and only then renames the file to `dest`. A body longer than the Content-Length its
    server announced (a misconfigured server: the file may be cut short) and an empty body are refused. A bad
    download is discarded, and an existing `dest` is only ever replaced by a complete, verified file. An
    interrupted download resumes on the next call.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    while True:
        before = _size(part)
        try:
            _transfer(url, part, timeout)
            break
        except _Overrun as e:
            _discard(part)
            raise DownloadError(f"Downloading {url} failed: the server sent more than the {e.announced:,} bytes it "
                                "announced (its Content-Length), so a file that ends there would be cut short. "
                                "Nothing was kept. Run again later; if it happens again, the server is "
                                "misconfigured: download the file some other way (a browser) and put it at "
                                f"{dest}.") from None
        except urllib.error.HTTPError as e:
            if e.code == 416 and before:  # "range not satisfiable": our partial file is not a prefix of theirs
                _discard(part)
                continue
            if e.code not in RETRY_STATUS:
                raise DownloadError(f"Downloading {url} failed: the server answered HTTP {e.code} {e.reason}. "
                                    "If the file has moved, the registry in course_utils/download.py needs its "
                                    "new address.", e.code) from None
            error: Exception = e
        except (OSError, http.client.HTTPException) as e:  # no network, timeouts, dropped connections
            error = e
        failures = 0 if _size(part) > before else failures + 1
        if failures > retries:
            advice = (f"What arrived is kept in {part}: run again to resume." if _size(part) else
                      "Nothing arrived: check the internet connection and run again.")
            raise DownloadError(f"Downloading {url} failed {failures} times in a row ({error}). {advice}") from error
        if failures:
            sleep(backoff * 2 ** (failures - 1))
    _check_body(part, url, dest)
    _verify(part, url, sha256, size, dest)
    _meta(part).unlink(missing_ok=True)
    return commit_file(part, dest)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _meta(part: Path) -> Path:
    """Beside a partial download: its address and the server's version tag (ETag), so a resume can check both."""
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _meta(part).unlink(missing_ok=True)


def _transfer(url: str, part: Path, timeout: float) -> None:
    """One try: append the rest of `url` to `part`; raise if the connection ends before the file does."""
    offset, version = _resume_point(part, url)
    headers = {"User-Agent": "course_utils"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if version:
            headers["If-Range"] = version  # the server sends the whole file instead if it changed since
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        if offset and not (response.status == 206 and
                           response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")):
            offset = 0  # the server sent the whole file: start over
        meta = {"url": url, "version": response.headers.get("ETag") or response.headers.get("Last-Modified")}
        atomic_write(_meta(part), lambda fh: fh.write(json.dumps(meta).encode()))
        total = _total_size(response, offset)
        _stream(response, part, offset, total)
    if total is not None and _size(part) < total:
        raise http.client.IncompleteRead(b"", total - _size(part))


def _resume_point(part: Path, url: str) -> tuple[int, str | None]:
    """How many bytes of `url` are already in `part`, and the version they came from."""
    try:
        meta = json.loads(_meta(part).read_text())
    except (OSError, ValueError):
        return 0, None
    return (_size(part), meta.get("version")) if meta.get("url") == url else (0, None)


def _total_size(response, offset: int) -> int | None:
    if offset:  # Content-Range: bytes <first>-<last>/<total>
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
    else:
        total = response.headers.get("Content-Length", "")
    return int(total) if total.isdigit() else None


class _Overrun(Exception):
    """The server sent more bytes than its Content-Length announced."""

    def __init__(self, announced: int):
        super().__init__(announced)
        self.announced = announced


# The last bytes of a body are read through the response's buffer, which then shows what came after them
PEEK_WINDOW = io.DEFAULT_BUFFER_SIZE // 2


def _stream(response, part: Path, offset: int, total: int | None) -> None:
    """Append the body of `response` to `part`. Before its announced end, look at what has arrived beyond it:
    bytes there mean the Content-Length was too small, and the file stopped short (_Overrun)."""
    left = None if total is None else total - offset
    with open(part, "ab" if offset else "wb") as f, \
         tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
              desc=part.name[:-len(".part")], mininterval=0.5) as bar:
        while left is None or left > 0:
            if left is not None and left <= PEEK_WINDOW and len(response.peek(left + 1)) > left:
                raise _Overrun(total - offset)
            last = left if left is None or left <= PEEK_WINDOW else left - PEEK_WINDOW  # stop at the window
            chunk = response.read1(CHUNK if last is None else min(CHUNK, last))
            if not chunk:
                break
            f.write(chunk)
            bar.update(len(chunk))
            if left is not None:
                left -= len(chunk)


def _check_body(part: Path, url: str, dest: Path) -> None:
    """Refuse, and discard, what a network in the way sends instead of the file: nothing at all, or a web
    page (a Wi-Fi login or a proxy's error page, answered with 200 OK) where an archive is expected. Kept,
    it would make every later run fail the same way."""
    if _size(part) == 0:
        _discard(part)
        raise DownloadError(f"Downloading {url} gave an empty file: the server answered but sent nothing. Nothing "
                            "was kept. Run again later; if it stays empty, the address may have changed.")
    if dest.name.lower().endswith(ARCHIVE_SUFFIXES) and _looks_like_html(part):
        _discard(part)
        raise DownloadError(f"Downloading {url} gave a web page, not the archive {dest.name}: a Wi-Fi login page or "
                            "a proxy's error page answers like this. Nothing was kept. Open any web page in a "
                            "browser to log in to the network, then run again.")


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip(b" \t\r\n\xef\xbb\xbf").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml"))


def _verify(part: Path, url: str, sha256: str | None, size: int | None, dest: Path) -> None:
    kept = f" {dest} was left as it was." if dest.exists() else ""
    if size is not None and _size(part) != size:  # a cut-short file, told at once (no hashing of gigabytes)
        got = _size(part)
        _discard(part)
        raise ChecksumError(f"The file downloaded from {url} is {got:,} bytes, expected {size:,}: "
                            f"{'the download stopped short' if got < size else 'it is not the expected file'}. "
                            f"It was discarded.{kept} Run again to retry; if the same happens, the file on the "
                            "server has changed: please report it.")
    if sha256 is None:
        return
    got = file_sha256(part)
    if got != sha256.lower():
        _discard(part)
        raise ChecksumError(f"The file downloaded from {url} is not the expected one: its sha256 is {got}, "
                            f"expected {sha256}. It was discarded.{kept} Run again to retry; if the same "
                            "happens, the file on the server has changed: please report it.")
