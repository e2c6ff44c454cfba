"""Downloading one file over HTTP(S) (or file://): `download_url()` streams it to a `.part` file, resumes a dropped
connection with a Range request, retries with backoff, gives up on a server that stalls or trickles, refuses
a web page or an empty body where an archive was expected, checks the size and sha256, and only then renames
it into place. `file_sha256()` hashes a file in chunks."""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from .archives import ARCHIVE_SUFFIXES
from .errors import ChecksumError, DownloadError
from .persist import atomic_write, commit_file

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

CHUNK = 1 << 20
RETRY_STATUS = {408, 429, 500, 502, 503, 504}  # worth another try; any other HTTP error is final
TIMEOUT = 45.0  # seconds a try waits for a silent server (connecting, the headers, each read); two tries at most
MIN_RATE = 1024.0  # bytes a second: slower than this over SLOW_WINDOW seconds, a download gives up (resumable)
SLOW_WINDOW = 60.0


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_url(url: str, dest: str | Path, sha256: str | None = None, *, size: int | None = None,
                 timeout: float | None = None, retries: int = 5, stall_retries: int = 1, backoff: float = 1.0,
                 min_rate: float | None = None, slow_window: float | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> Path:
    """Download `url` to `dest` and return `dest`.

    Streams to `dest.part` with a progress bar; after a dropped connection it resumes with an HTTP Range
    request (starting over if the server ignores it or the file changed); it retries up to `retries` times
    in a row without progress, waiting `backoff`, 2x, 4x... seconds between tries, but only `stall_retries`
    times after a try that waited `timeout` seconds (default TIMEOUT) for a silent server, so a dead server
    costs about two timeouts; it gives up at once, keeping what arrived, when fewer than `min_rate` bytes a
    second (default MIN_RATE) arrive over `slow_window` seconds (default SLOW_WINDOW). It checks `size` (bytes)
    and `sha256` if given, and only then renames the file to `dest`. A body longer than the Content-Length its
    server announced (a misconfigured server: the file may be cut short) and an empty body are refused. A bad
    download is discarded, and an existing `dest` is only ever replaced by a complete, verified file. An
    interrupted download resumes on the next call.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    timeout = TIMEOUT if timeout is None else timeout
    rate = (MIN_RATE if min_rate is None else min_rate, SLOW_WINDOW if slow_window is None else slow_window)
    failures = stalls = 0
    while True:
        before = _size(part)
        try:
            _transfer(url, part, timeout, rate)
            break
        except _Overrun as e:
            _discard(part)
            raise DownloadError(f"Downloading {url} failed: the server sent more than the {e.announced:,} bytes it "
                                "announced (its Content-Length), so a file that ends there would be cut short. "
                                "Nothing was kept. Run again later; if it happens again, the server is "
                                "misconfigured: download the file some other way (a browser) and put it at "
                                f"{dest}.") from None
        except _TooSlow as e:
            raise DownloadError(f"Downloading {url} is too slow: {e.got:,} bytes arrived in the last {e.seconds:.0f} "
                                f"s, under the minimum of {rate[0]:,.0f} bytes a second. What arrived is kept in "
                                f"{part}: run again later to resume (download_url's min_rate= and slow_window= set "
                                "the limit).") from None
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
        progress = _size(part) > before
        failures = 0 if progress else failures + 1
        stalls = 0 if progress or not _timed_out(error) else stalls + 1
        if failures > retries or stalls > stall_retries:
            raise DownloadError(f"Downloading {url} failed {failures} times in a row ({error}). "
                                f"{_advice(error, part, timeout)}",
                                getattr(error, "code", None)) from error
        if failures:
            sleep(backoff * 2 ** (failures - 1))
    _check_body(part, url, dest)
    _verify(part, url, sha256, size, dest)
    _meta(part).unlink(missing_ok=True)
    return commit_file(part, dest)


def _timed_out(error: BaseException) -> bool:
    """Whether a try ended because the server said nothing for `timeout` seconds."""
    return isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError)


def _advice(error: BaseException, part: Path, timeout: float) -> str:
    """What to do after the last try failed, from what went wrong: the server's fault is not the connection's."""
    kept = (f"What arrived is kept in {part}: run again later to resume." if _size(part) else
            "Nothing arrived: run again later.")
    if isinstance(error, urllib.error.HTTPError):
        return (f"The server answered each time, with an error (HTTP {error.code}): it is the server that fails, "
                f"not your internet connection. {kept}")
    if _timed_out(error):
        return (f"The server accepted the connection but then said nothing for {timeout:g} s: it is stuck or "
                f"overloaded, not your internet connection. {kept}")
    if _size(part):
        return kept
    return "Nothing arrived: check the internet connection and run again."


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _meta(part: Path) -> Path:
    """Beside a partial download: its address and the server's version tag (ETag), so a resume can check both."""
    return part.with_name(part.name + ".json")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _meta(part).unlink(missing_ok=True)


def _transfer(url: str, part: Path, timeout: float, rate: tuple[float, float] = (0.0, 60.0)) -> None:
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
        _stream(response, part, offset, total, rate)
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


class _TooSlow(Exception):
    """Fewer than the minimum rate's bytes arrived over the slow window."""

    def __init__(self, got: int, seconds: float):
        super().__init__(got, seconds)
        self.got, self.seconds = got, seconds


def _stream(response, part: Path, offset: int, total: int | None, rate: tuple[float, float] = (0.0, 60.0)) -> None:
    """Append the body of `response` to `part`. Before its announced end, look at what has arrived beyond it:
    bytes there mean the Content-Length was too small, and the file stopped short (_Overrun). `rate` is
    (bytes a second, over seconds): slower than that, _TooSlow."""
    min_rate, window = rate
    since, got = time.monotonic(), 0  # the current window: when it began, what arrived in it
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
            got += len(chunk)
            if min_rate and time.monotonic() - since >= window:
                if got < min_rate * window:
                    raise _TooSlow(got, time.monotonic() - since)
                since, got = time.monotonic(), 0
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


def _ends_early(path: Path) -> bool:
    """Whether `path` is a gzip or zip archive that ends before its own end (a prefix of a longer file)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"PK":
        return not zipfile.is_zipfile(path)  # a zip's directory is at its very end
    if magic != b"\x1f\x8b":
        return False
    try:
        with gzip.open(path) as f:
            while f.read(CHUNK):
                pass
    except EOFError:
        return True
    except (OSError, zlib.error):
        return False
    return False


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip(b" \t\r\n\xef\xbb\xbf").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml"))


def _verify(part: Path, url: str, sha256: str | None, size: int | None, dest: Path) -> None:
    kept = f" {dest} was left as it was." if dest.exists() else ""
    if size is not None and _size(part) != size:  # told at once (no hashing of gigabytes)
        got = _size(part)
        why = ("the download stopped short" if got < size and _ends_early(part) else
               "it is a different file from the expected one (another version on the server), not one cut short")
        _discard(part)
        raise ChecksumError(f"The file downloaded from {url} is {got:,} bytes, expected {size:,}: {why}. It was "
                            f"discarded.{kept} Run again to retry; if the same happens, the file on the server has "
                            "changed: please report it.")
    if sha256 is None:
        return
    got = file_sha256(part)
    if got != sha256.lower():
        _discard(part)
        raise ChecksumError(f"The file downloaded from {url} is not the expected one: its sha256 is {got}, "
                            f"expected {sha256}. It was discarded.{kept} Run again to retry; if the same "
                            "happens, the file on the server has changed: please report it.")
