"""The web app of lesson 3 ("it's just a page"): a Starlette backend that answers JSON, one static page.

    GET  /          the page (static/index.html + static/app.js, plain JavaScript, no build step)
    GET  /health    {"status": "ok"}
    GET  /info      what the model is: kind, classes, input size; which export (file, sha256, when trained)
    POST /predict   an image (multipart, field `file`) or a text (JSON {"text": ...}) -> the prediction
    POST /feedback  the same input plus the right answer (`label`, repeated for tags; `row`/`col` for a point)

Every refusal is a 4xx JSON `{"error": "..."}` raised before anything is stored. Uploads are read into memory
up to the size limit (never spooled to disk), and only the feedback store writes, inside its folder.
"""
from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .feedback import FeedbackStore
from .predictor import BadInput, Predictor

__all__ = ["create_app", "default_feedback_dir", "STATIC"]

STATIC = Path(__file__).parent / "static"
MAX_FIELDS = 64  # labels of a multi-label correction, row/col, text: far fewer than this


def default_feedback_dir(export: str | Path) -> Path:
    """`feedback/` beside the export file."""
    export = Path(export)
    return (export if export.is_dir() else export.parent) / "feedback"


def create_app(export: str | Path, feedback_dir: str | Path | None = None, max_mb: float = 10.0,
               max_chars: int = 10_000) -> Starlette:
    """The app for one exported learner; corrections go to `feedback_dir` (default: beside the export). After
    a fine-tune, point it at the new export with the same `feedback_dir`: the rows already there stay, and each
    new row names the export it corrected."""
    predictor = Predictor(export, max_chars=max_chars)
    store = FeedbackStore(feedback_dir or default_feedback_dir(export), predictor.export_id)
    max_bytes = int(max_mb * 1024 * 1024)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    async def info(request: Request):
        return JSONResponse({**predictor.info(), "max_mb": max_mb})

    async def predict(request: Request):
        item, _, _ = await _read_input(request, predictor, max_bytes)
        return JSONResponse(await run_in_threadpool(predictor.predict, item))

    async def feedback(request: Request):
        item, raw, fields = await _read_input(request, predictor, max_bytes)
        size = None if isinstance(item, str) else (item.height, item.width)
        corrected = predictor.corrected_label(fields["labels"], fields["point"], size)
        result = await run_in_threadpool(predictor.predict, item)
        data, ext = raw
        name = await run_in_threadpool(store.add, data, ext, result["predicted"], corrected)
        return JSONResponse({"stored": name, "predicted": result["predicted"], "corrected": corrected,
                             "export": store.export})

    routes = [Route("/", index), Route("/health", health), Route("/info", info),
              Route("/predict", predict, methods=["POST"]), Route("/feedback", feedback, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    handlers = {BadInput: _bad_input, MultiPartException: _bad_form, HTTPException: _http_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.predictor, app.state.store = predictor, store
    return app


async def _bad_input(request: Request, exc: BadInput) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _bad_form(request: Request, exc: MultiPartException) -> JSONResponse:
    return JSONResponse({"error": f"The form data could not be read: {exc.message}"}, status_code=400)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


# --- reading a request -------------------------------------------------------------------------------------
async def _read_input(request: Request, predictor: Predictor, max_bytes: int):
    """(the model's input: a PIL image or a text, (bytes, extension) to store, the answer fields), or BadInput."""
    body = await _read_body(request, max_bytes)
    ctype = request.headers.get("content-type", "")
    if predictor.kind == "text":
        if not ctype.startswith("application/json"):
            raise BadInput(415, 'This model classifies texts: send JSON {"text": "..."} (Content-Type: '
                                'application/json).')
        fields = _json_fields(body)
        text = predictor.check_text(fields["text"])
        return text, (text.encode("utf-8"), ".txt"), fields
    if not ctype.startswith("multipart/form-data"):
        raise BadInput(415, "This model looks at images: send the image as multipart/form-data in the field 'file'.")
    fields = await _form_fields(request, body, max_bytes)
    img, ext = predictor.open_image(fields["file"])
    return img, (fields["file"], ext), fields


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it passes `max_bytes` (and 400 when empty)."""
    too_big = BadInput(413, f"The upload is larger than the limit of {max_bytes / 2 ** 20:g} MB; send a smaller "
                            "file (or start the app with a larger --max-mb).")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
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
    if not isinstance(data, dict):
        raise BadInput(400, 'Send a JSON object such as {"text": "...", "label": "..."}.')
    label = data.get("label", [])
    return {"text": data.get("text"), "labels": label if isinstance(label, list) else [str(label)], "point": None}


async def _form_fields(request: Request, body: bytes, max_bytes: int) -> dict:
    """The multipart fields: the file's bytes, the labels, the point. Parsed in memory: the spool limit is the
    body limit, so an upload never goes to a temporary file."""
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
