"""A real HTTP server on 127.0.0.1 for the download tests (scripted to drop connections, ignore Range, stall,
fail or send wrong bytes), and the toy dataset archive it serves. The `server` fixture is in conftest.py."""
from __future__ import annotations

import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STALL_LIMIT = 10.0  # seconds: only so that a client ignoring its timeout fails its test instead of hanging the suite


class LocalServer:
    """An HTTP server on 127.0.0.1 serving `files` (name -> bytes) with Range and If-Range support.

    `plans[name]` scripts the next requests for that file, one step each: "ok", "drop:N" (send the
    headers and N bytes, then hang up), "whole" (ignore Range), "status:N" (answer HTTP N), "stall"
    (say nothing until the server shuts down), "announce:N" (say Content-Length: N, then send the whole body),
    "silent" (send the headers, then nothing), "trickle:S" (send the headers, then one byte every S seconds).
    `requests` records (name, Range, If-Range) of every request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.plans: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None, str | None]] = []
        self.closing = threading.Event()  # what a stalled reply waits for: the test's end, never a fixed time
        self.httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def serve(self, name: str, data: bytes, etag: str = '"v1"') -> str:
        self.files[name], self.etags[name] = data, etag
        return self.url(name)

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass  # the client hanging up on a stalled or dropped reply is part of the tests


class _Handler(BaseHTTPRequestHandler):
    """Answers GET from the files of `local` (a LocalServer), following its plans."""

    local: LocalServer

    def do_GET(self):
        name = self.path.lstrip("/")
        self.local.requests.append((name, self.headers.get("Range"), self.headers.get("If-Range")))
        plan = self.local.plans.get(name) or []
        step, _, arg = (plan.pop(0) if plan else "ok").partition(":")
        if step == "stall":
            self.local.closing.wait(STALL_LIMIT)
            return
        if step in ("silent", "trickle"):
            return self._stall_after_headers(name, step, arg)
        if step == "status":
            return self.send_error(int(arg))
        if name not in self.local.files:
            return self.send_error(404)
        data, etag = self.local.files[name], self.local.etags[name]
        start = self._range_start(etag) if step != "whole" else 0
        if start >= len(data) > 0:
            return self.send_error(416)
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", arg if step == "announce" else str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body[:int(arg)] if step == "drop" else body)

    def _stall_after_headers(self, name: str, step: str, arg: str) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.local.files.get(name, b"x" * 1000))))
        self.end_headers()
        self.wfile.flush()
        while step == "trickle" and not self.local.closing.wait(float(arg)):
            self.wfile.write(b"x")
            self.wfile.flush()
        self.local.closing.wait(STALL_LIMIT)

    def _range_start(self, etag: str) -> int:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if_range = self.headers.get("If-Range")
        return int(match.group(1)) if match and if_range in (None, etag) else 0

    def log_message(self, *args):
        pass


def _handler(server: LocalServer) -> type[_Handler]:
    """A handler class answering from `server`."""
    return type("Handler", (_Handler,), {"local": server})


def toy_archive(files: dict[str, bytes]) -> bytes:
    """A .tgz holding `files` (name -> bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TOY = toy_archive({"toy/hello.txt": b"hello", "toy/sub/x.txt": b"x"})
