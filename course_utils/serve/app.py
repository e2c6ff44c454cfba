"""The web app of lesson 3 ("it's just a page"): a Starlette backend that answers JSON, one static page.

    GET  /          the page (static/index.html + static/app.js, plain JavaScript, no build step)
    GET  /health    {"status": "ok"}
    GET  /info      what the model is: kind, classes, input size; which export (file, sha256, when trained)
    POST /predict   an image (multipart, field `file`) or a text (JSON {"text": ...}) -> the prediction
    POST /feedback  the same input plus the right answer (`label`, repeated for tags; `row`/`col` for a point)

Every answer is JSON, refusals included: a 4xx `{"error": "..."}` raised before anything is stored, a 500 or
507 naming the feedback folder when a correction cannot be written (nothing half-stored), and a 500 saying it is
a bug in the app for anything unexpected (its traceback goes to the log). Uploads are read into memory up to the
size limit (never spooled to disk), a body that stops arriving is answered 408, and images are decoded in worker
threads, two at a time, up to `max_mp` megapixels. Only the feedback store writes, inside its folder.

The app answers only to its own host names (DNS rebinding), takes POSTs only from its own page or from scripts
that send no Origin (another site's page cannot write corrections), and every answer carries a content security
policy, `nosniff` and `X-Frame-Options: DENY`.
"""
from __future__ import annotations

import errno
import json
import logging
import threading
from pathlib import Path
from urllib.parse import urlsplit

import anyio
from python_multipart.multipart import parse_options_header
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .feedback import FeedbackStore, storage_reason
from .predictor import BadInput, ModelOutputError, Predictor

__all__: list[str] = []  # nothing here is part of the advertised surface; import by name

STATIC = Path(__file__).parent / "static"
MAX_FIELDS = 64  # labels of a multi-label correction, row/col, text: far fewer than this
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DECODE_SLOTS = 2  # images decoded at once: each big photo takes its pixels' memory while it decodes
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
log = logging.getLogger("course_utils.serve")


def default_feedback_dir(export: str | Path) -> Path:
    """`feedback/` beside the export file."""
    export = Path(export)
    return (export if export.is_dir() else export.parent) / "feedback"


def create_app(export: str | Path, feedback_dir: str | Path | None = None, max_mb: float = 10.0,
               max_chars: int = 10_000, max_mp: float = 40.0, hosts=LOCAL_HOSTS,
               body_timeout: float = 30.0, max_batch: int = 32, batch_wait_ms: float = 5.0) -> Starlette:
    """The app for one exported learner; corrections go to `feedback_dir` (default: beside the export), which
    is checked first (FeedbackFolderError when it cannot take them). After a fine-tune, point it at the new
    export with the same `feedback_dir`: the rows already there stay, and each new row names the export it
    corrected. `hosts` are the host names it answers to (None: any); `body_timeout` the seconds a request body
    may go without sending anything. Concurrent predictions share model passes of up to `max_batch` inputs
    (1: one at a time), a request waiting at most `batch_wait_ms` for companions (see batcher.py)."""
    store = FeedbackStore(feedback_dir or default_feedback_dir(export))
    store.prepare()  # before the model loads: a wrong folder is said at once
    predictor = Predictor(export, max_chars=max_chars, max_mp=max_mp, max_batch=max_batch,
                          batch_wait_ms=batch_wait_ms)
    store.export = predictor.export_id
    limits = {"max_bytes": int(max_mb * 1024 * 1024), "timeout": body_timeout,
              "decoding": threading.BoundedSemaphore(DECODE_SLOTS)}

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    async def info(request: Request):
        return JSONResponse({**predictor.info(), "max_mb": max_mb, "max_mp": max_mp})

    async def predict(request: Request):
        item, _, _ = await _read_input(request, predictor, limits)
        return JSONResponse(await run_in_threadpool(predictor.predict, item))

    async def feedback(request: Request):
        item, raw, fields = await _read_input(request, predictor, limits)
        size = (item.height, item.width) if predictor.task.input == "image" else None
        corrected = predictor.corrected_label(fields["labels"], fields["point"], size)
        result = await run_in_threadpool(predictor.predict, item)
        data, ext = raw
        try:
            name = await run_in_threadpool(store.add, data, ext, result["predicted"], corrected)
        except OSError as e:
            log.error("feedback not stored in %s: %s", store.folder, e)
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            return JSONResponse({"error": f"The correction could not be stored in {store.folder}: "
                                          f"{storage_reason(e)}. Nothing was stored; tell whoever runs the app "
                                          f"({'free some space there' if full else 'make the folder writable'}"
                                          " or restart it with another --feedback folder)."},
                                status_code=507 if full else 500)
        return JSONResponse({"stored": name, "predicted": result["predicted"], "corrected": corrected,
                             "export": store.export})

    routes = [Route("/", index), Route("/health", health), Route("/info", info),
              Route("/predict", predict, methods=["POST"]), Route("/feedback", feedback, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    handlers = {BadInput: _bad_input, MultiPartException: _bad_form, HTTPException: _http_error,
                ModelOutputError: _model_output}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.add_middleware(_Guard, hosts=hosts)
    app.state.predictor, app.state.store = predictor, store
    return app


class _Guard:
    """Around every request: the Host must be one of `hosts` (None: any), a POST must come from the app's
    own page (its Origin, or else its Referer, names this host; scripts send neither), every answer gets
    SECURITY_HEADERS, and an unexpected exception becomes a JSON 500 (its traceback logged)."""

    def __init__(self, app, hosts=LOCAL_HOSTS):
        self.app = app
        self.hosts = None if hosts is None else {h.lower().strip("[]") for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_secured(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers[k] = v
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            return await refusal(scope, receive, send_secured)
        try:
            await self.app(scope, receive, send_secured)
        except Exception as e:
            log.exception("a bug in the app while answering %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await JSONResponse({"error": f"A bug in the app ({type(e).__name__}: {str(e)[:300]}); the details are "
                                         "in the server's log. Please report it."},
                               status_code=500)(scope, receive, send_secured)

    def _refusal(self, scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        if self.hosts is not None and name not in self.hosts:
            return JSONResponse({"error": f"This app does not answer to the host name {host!r}; open it at "
                                          f"{' or '.join(sorted(self.hosts))} (or start it with --host NAME)."},
                                status_code=400)
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            source = headers.get("origin") or headers.get("referer")
            if source is not None and (source == "null" or urlsplit(source).netloc.lower() != host.lower()):
                return JSONResponse({"error": f"Refused: this request comes from another page ({source[:200]}), "
                                              f"not from this app's own page at http://{host}/; open that page "
                                              "to send photos and corrections."}, status_code=403)
        return None


async def _bad_input(request: Request, exc: BadInput) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _bad_form(request: Request, exc: MultiPartException) -> JSONResponse:
    return JSONResponse({"error": f"The form data could not be read: {exc.message}"}, status_code=400)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def _model_output(request: Request, exc: ModelOutputError) -> JSONResponse:
    log.error("%s", exc)
    return JSONResponse({"error": str(exc)}, status_code=500)


# --- reading a request -------------------------------------------------------------------------------------
async def _read_input(request: Request, predictor: Predictor, limits: dict):
    """(the model's input: a PIL image or a text, (bytes, extension) to store, the answer fields), or BadInput."""
    body = await _read_body(request, limits["max_bytes"], limits["timeout"])
    ctype = request.headers.get("content-type", "")
    if predictor.task.input == "text":
        if not ctype.startswith("application/json"):
            raise BadInput(415, 'This model classifies texts: send JSON {"text": "..."} (Content-Type: '
                                'application/json).')
        fields = _json_fields(body)
        text = predictor.check_text(fields["text"])
        return text, (text.encode("utf-8"), ".txt"), fields
    if not ctype.startswith("multipart/form-data"):
        raise BadInput(415, "This model looks at images: send the image as multipart/form-data in the field 'file'.")
    fields = await _form_fields(request, body, limits["max_bytes"])

    def decode():
        with limits["decoding"]:  # a few at a time, off the event loop: /health answers meanwhile
            return predictor.open_image(fields["file"])

    img, ext = await run_in_threadpool(decode)
    return img, (fields["file"], ext), fields


async def _read_body(request: Request, max_bytes: int, timeout: float) -> bytes:
    """The body, refused with 413 as soon as it passes `max_bytes`, 408 when nothing arrives for `timeout`
    seconds, and 400 when empty."""
    too_big = BadInput(413, f"The upload is larger than the limit of {max_bytes / 2 ** 20:g} MB; send a smaller "
                            "file (or start the app with a larger --max-mb).")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(timeout):
                chunk = await stream.__anext__()
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise BadInput(408, f"The upload stopped: nothing arrived for {timeout:g} s after {size} bytes; send "
                                "it again.") from None
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        chunks.append(chunk)
    if not size:
        raise BadInput(400, "The request is empty: send an image (multipart field 'file') or JSON {\"text\": ...}.")
    return b"".join(chunks)


def _json_fields(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(400, f"The body is not valid JSON ({e}).") from None
    except RecursionError:
        raise BadInput(400, 'The JSON is nested too deeply to read; send {"text": "...", "label": "..."}.') from None
    if not isinstance(data, dict):
        raise BadInput(400, 'Send a JSON object such as {"text": "...", "label": "..."}.')
    label = data.get("label", [])
    labels = label if isinstance(label, list) else [] if label is None else [label]
    if not all(isinstance(v, str) for v in labels):
        raise BadInput(422, f"'label' must be a class name or a list of class names (strings), not "
                            f"{json.dumps(label)[:100]}.")
    text = data.get("text")
    for value in [text, *labels] if isinstance(text, str) else labels:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(400, "The JSON holds an unpaired surrogate (such as \\ud800), which is no character; "
                                "send valid Unicode text.") from None
    return {"text": text, "labels": labels, "point": None}


async def _form_fields(request: Request, body: bytes, max_bytes: int) -> dict:
    """The multipart fields: the file's bytes, the labels, the point. Parsed in memory: the spool limit is the
    body limit, so an upload never goes to a temporary file."""
    boundary = parse_options_header(request.headers.get("content-type", ""))[1].get(b"boundary")
    if boundary and b"--" + boundary in body and b"--" + boundary + b"--" not in body:
        raise BadInput(400, "The upload is incomplete: the form data stops before its end (the connection was "
                            "cut?); send the file again.")

    async def once():
        yield body
        yield b""

    parser = MultiPartParser(request.headers, once(), max_files=1, max_fields=MAX_FIELDS)
    parser.spool_max_size = max_bytes + 1
    form = await parser.parse()
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadInput(400, "No image in the request: send it as multipart/form-data in the field 'file'.")
        data = await upload.read()
        labels = [v for v in form.getlist("label") if isinstance(v, str)]
        point = (form["row"], form["col"]) if "row" in form and "col" in form else None
        return {"file": data, "labels": labels, "point": point}
    finally:
        await form.close()
