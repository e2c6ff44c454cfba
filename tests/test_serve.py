"""The web app through Starlette's test client, for every kind of exported learner: predictions, feedback
stored by content hash with one appended CSV row, and every bad request refused with a JSON error and
nothing stored."""
from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import shutil
from datetime import datetime

import anyio
import numpy as np
import pytest
import torch
from kinds import KINDS, make_learner
from PIL import Image
from starlette.testclient import TestClient

from course_utils.serve.app import create_app

IMAGE_KINDS = [k for k in KINDS if k != "text"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """kind -> (export.pkl, sample input: image bytes or a text, classes)."""
    res = {}
    for kind in KINDS:
        root = tmp_path_factory.mktemp(kind.replace("-", ""))
        learn, sample = make_learner(kind, root)
        sample = sample if isinstance(sample, str) else sample.read_bytes()
        res[kind] = (learn.export(), sample, list(learn.data.classes or []))
    return res


def client(exports, kind, tmp_path, **kwargs):
    return TestClient(create_app(exports[kind][0], tmp_path / "fb", **kwargs), base_url="http://localhost")


def stored(tmp_path) -> list[str]:
    """What the feedback folder holds (the app creates it, empty, at startup)."""
    return sorted(p.name for p in (tmp_path / "fb").iterdir())


def predict(c, kind, sample):
    if kind == "text":
        return c.post("/predict", json={"text": sample})
    return c.post("/predict", files={"file": ("photo.png", sample, "image/png")})


def feedback(c, kind, sample, **fields):
    if kind == "text":
        return c.post("/feedback", json={"text": sample, **fields})
    return c.post("/feedback", files={"file": ("../../evil.png", sample, "image/png")}, data=fields)


def answer_for(kind, classes):
    """A correction the model can store: the last class, two tags, or a point."""
    if kind == "points":
        return {"row": "12.5", "col": "30"}
    return {"label": classes[:2]} if kind == "multi-label" else {"label": classes[-1]}


# --- what works ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_page_health_and_info(exports, kind, tmp_path):
    c = client(exports, kind, tmp_path)
    assert c.get("/health").json() == {"status": "ok"}
    info = c.get("/info").json()
    assert info["kind"] == kind and info["classes"] == exports[kind][2]
    assert info["input"] == ("text" if kind == "text" else "image")
    page = c.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
    assert "fetch(" in c.get("/static/app.js").text


@pytest.mark.parametrize("kind", KINDS)
def test_predict_answers_json_for_each_kind(exports, kind, tmp_path):
    _, sample, classes = exports[kind]
    r = predict(client(exports, kind, tmp_path), kind, sample)
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["kind"] == kind
    if kind == "segmentation":
        assert {c["label"] for c in res["legend"]} <= set(classes)
        assert sum(c["share"] for c in res["legend"]) == pytest.approx(1, abs=1e-3)
        mask = Image.open(io.BytesIO(__import__("base64").b64decode(res["mask_png"])))
        photo = Image.open(io.BytesIO(__import__("base64").b64decode(res["image_png"])))
        assert mask.size == photo.size == (32, 32)
    elif kind == "points":
        assert res["image_size"] == [40, 56] and len(res["points"]) == 1 and len(res["points"][0]) == 2
    else:
        assert sorted(res["labels"]) == sorted(classes)
        assert res["probabilities"] == sorted(res["probabilities"], reverse=True)
        if kind != "multi-label":
            assert res["prediction"] == res["labels"][0]
            assert sum(res["probabilities"]) == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "segmentation"])
def test_feedback_stores_the_input_by_content_hash_and_appends_a_row(exports, kind, tmp_path):
    _, sample, classes = exports[kind]
    c = client(exports, kind, tmp_path)
    predicted = predict(c, kind, sample).json()["predicted"]
    r = feedback(c, kind, sample, **answer_for(kind, classes))
    assert r.status_code == 200, r.text
    raw = sample.encode() if kind == "text" else sample
    ext = ".txt" if kind == "text" else {"JPEG": ".jpg", "PNG": ".png"}[Image.open(io.BytesIO(sample)).format]
    name = hashlib.sha256(raw).hexdigest() + ext
    assert r.json()["stored"] == name
    assert (tmp_path / "fb" / name).read_bytes() == raw
    assert feedback(c, kind, sample, **answer_for(kind, classes)).status_code == 200  # again: a second row
    rows = list(csv.DictReader(open(tmp_path / "fb" / "feedback.csv")))
    expected = {"points": "12.5 30.0", "multi-label": " ".join(classes[:2])}.get(kind) or classes[-1]
    assert [(r["file"], r["predicted"], r["corrected"]) for r in rows] == [(name, predicted, expected)] * 2
    assert sorted(p.name for p in (tmp_path / "fb").iterdir()) == sorted([name, "feedback.csv"])
    assert not (tmp_path / "evil.png").exists()  # the upload's own name is never a path


def test_feedback_never_overwrites_a_stored_file(exports, tmp_path):
    _, sample, classes = exports["single-label"]
    c = client(exports, "single-label", tmp_path)
    name = feedback(c, "single-label", sample, label=classes[0]).json()["stored"]
    (tmp_path / "fb" / name).write_bytes(b"kept")  # whatever is there stays
    assert feedback(c, "single-label", sample, label=classes[1]).status_code == 200
    assert (tmp_path / "fb" / name).read_bytes() == b"kept"
    assert len(list(csv.DictReader(open(tmp_path / "fb" / "feedback.csv")))) == 2


# --- what is refused ---------------------------------------------------------------------------------------
def _png(size=(24, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


IMAGE_BAD = {
    "not an image": (lambda c: c.post("/predict", files={"file": ("a.png", b"hello, not a picture", "image/png")}),
                     415, "not an image"),
    "corrupt image": (lambda c: c.post("/predict", files={"file": ("a.png", _png()[:-40], "image/png")}), 422,
                      "corrupt or truncated"),
    "too large": (lambda c: c.post("/predict", files={"file": ("a.png", _png() + b"\0" * 30_000, "image/png")}),
                  413, "larger than the limit"),
    "empty body": (lambda c: c.post("/predict", content=b"",
                                    headers={"Content-Type": "multipart/form-data; boundary=x"}),
                   400, "empty"),
    "empty file": (lambda c: c.post("/predict", files={"file": ("a.png", b"", "image/png")}), 400, "empty"),
    "no file field": (lambda c: c.post("/predict", data={"label": "x"}, files={"other": ("a", b"1", "text/plain")}),
                      400, "field 'file'"),
    "JSON to an image model": (lambda c: c.post("/predict", json={"text": "hi"}), 415, "multipart/form-data"),
    "label not a class": (lambda c: c.post("/feedback", files={"file": ("a.png", _png(), "image/png")},
                                           data={"label": "zebra"}), 422, "not one of the model's classes"),
    "no label": (lambda c: c.post("/feedback", files={"file": ("a.png", _png(), "image/png")}), 400, "right answer"),
}


@pytest.mark.parametrize("case", IMAGE_BAD)
@pytest.mark.parametrize("kind", ["single-label", "multi-label"])
def test_bad_image_requests_get_a_json_error_and_store_nothing(exports, kind, case, tmp_path):
    send, status, says = IMAGE_BAD[case]
    r = send(client(exports, kind, tmp_path, max_mb=0.02))
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    assert stored(tmp_path) == []


@pytest.mark.parametrize("point,says", [(None, "row"), (("-1", "3"), "outside"), (("5", "999"), "outside"),
                                        (("nan", "3"), "outside"), (("a", "b"), "must be numbers")])
def test_a_bad_point_is_refused(exports, point, says, tmp_path):
    fields = {} if point is None else {"row": point[0], "col": point[1]}
    r = feedback(client(exports, "points", tmp_path), "points", exports["points"][1], **fields)
    assert r.status_code in (400, 422) and says in r.json()["error"]
    assert stored(tmp_path) == []


def test_masks_take_no_feedback(exports, tmp_path):
    r = feedback(client(exports, "segmentation", tmp_path), "segmentation", exports["segmentation"][1], label="Sky")
    assert r.status_code == 422 and "not collected" in r.json()["error"]
    assert stored(tmp_path) == []


def test_a_single_label_model_takes_one_label(exports, tmp_path):
    _, sample, classes = exports["single-label"]
    r = feedback(client(exports, "single-label", tmp_path), "single-label", sample, label=classes[:2])
    assert r.status_code == 422 and "one label" in r.json()["error"]


TEXT_BAD = {
    "empty text": ({"json": {"text": "   "}}, 400, "empty"),
    "no text": ({"json": {"review": "x"}}, 400, '{"text"'),
    "text too long": ({"json": {"text": "word " * 30}}, 413, "limit is 100"),
    "not JSON": ({"content": b"{nope", "headers": {"Content-Type": "application/json"}}, 400, "not valid JSON"),
    "an image to a text model": ({"files": {"file": ("a.png", b"\x89PNG", "image/png")}}, 415, "classifies texts"),
    "empty body": ({"content": b"", "headers": {"Content-Type": "application/json"}}, 400, "empty"),
}


@pytest.mark.parametrize("case", TEXT_BAD)
@pytest.mark.parametrize("route", ["/predict", "/feedback"])
def test_bad_text_requests_get_a_json_error_and_store_nothing(exports, case, route, tmp_path):
    kwargs, status, says = TEXT_BAD[case]
    r = client(exports, "text", tmp_path, max_chars=100).post(route, **kwargs)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    assert stored(tmp_path) == []


def test_a_text_label_that_is_not_a_class_is_refused(exports, tmp_path):
    r = feedback(client(exports, "text", tmp_path), "text", "Great!", label="maybe")
    assert r.status_code == 422 and "not one of the model's classes" in r.json()["error"]
    assert stored(tmp_path) == []


def test_unknown_routes_and_methods_answer_json(exports, tmp_path):
    c = client(exports, "single-label", tmp_path)
    assert c.get("/nope").status_code == 404 and "error" in c.get("/nope").json()
    assert c.get("/predict").status_code == 405 and "error" in c.get("/predict").json()
    assert json.loads(c.get("/info").text)["kind"] == "single-label"


# --- which export answers, and serving a fine-tuned one -------------------------------------------------------
def test_info_names_the_export_served(exports, tmp_path):
    export = exports["single-label"][0]
    info = client(exports, "single-label", tmp_path).get("/info").json()
    assert info["export"] == export.name
    assert info["export_sha256"] == hashlib.sha256(export.read_bytes()).hexdigest()[:12]
    trained = datetime.fromisoformat(info["trained"])
    assert trained.tzinfo is not None and abs(trained.timestamp() - export.stat().st_mtime) < 1


def test_a_new_export_serves_into_the_same_feedback_folder(exports, tmp_path):
    """After a fine-tune the app serves the new export with the same --feedback folder: the rows stored so far
    stay, and each row names the export it corrected."""
    first, sample, classes = exports["single-label"]
    second = tmp_path / "export-2.pkl"
    second.write_bytes(first.read_bytes())  # a copy under another name stands for the fine-tuned export
    shutil.copystat(first, second)
    feedback(client(exports, "single-label", tmp_path), "single-label", sample, label=classes[0])
    c2 = TestClient(create_app(second, tmp_path / "fb"), base_url="http://localhost")
    assert c2.get("/info").json()["export"] == "export-2.pkl"
    r = feedback(c2, "single-label", sample, label=classes[1])
    assert r.json()["export"].startswith("export-2.pkl@")
    rows = list(csv.DictReader(open(tmp_path / "fb" / "feedback.csv")))
    sha = hashlib.sha256(first.read_bytes()).hexdigest()[:12]
    assert [(r["corrected"], r["export"]) for r in rows] == [(classes[0], f"{first.name}@{sha}"),
                                                             (classes[1], f"export-2.pkl@{sha}")]


def test_an_older_feedback_csv_keeps_its_rows_and_gains_the_export_column(exports, tmp_path):
    _, sample, classes = exports["single-label"]
    c = client(exports, "single-label", tmp_path)
    name = feedback(c, "single-label", sample, label=classes[0]).json()["stored"]
    old = f"time,file,predicted,corrected\n2024-01-01T00:00:00+00:00,{name},{classes[1]},{classes[0]}\n"
    (tmp_path / "fb" / "feedback.csv").write_text(old)  # as the app wrote it before rows named their export
    assert feedback(client(exports, "single-label", tmp_path), "single-label", sample,
                    label=classes[2]).status_code == 200
    rows = list(csv.DictReader(open(tmp_path / "fb" / "feedback.csv")))
    assert [(r["time"][:4], r["corrected"], bool(r["export"])) for r in rows] == [("2024", classes[0], False),
                                                                                 (rows[1]["time"][:4], classes[2],
                                                                                  True)]


# --- hostile requests ------------------------------------------------------------------------------------------
def _jpeg(size=(64, 32), orientation=None) -> bytes:
    """Random pixels as a JPEG `size` (w, h) as stored; with an EXIF orientation tag if given."""
    pixels = np.random.default_rng(5).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(pixels).save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def _upload(data: bytes, name="a.jpg"):
    return {"file": (name, data, "image/jpeg")}


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Referer": "http://evil.example/page.html"}])
def test_a_post_from_another_site_is_refused(exports, tmp_path, headers):
    """Another site's page can send a form to the app (a CORS simple request): it is refused, nothing stored."""
    _, sample, classes = exports["single-label"]
    c = client(exports, "single-label", tmp_path)
    r = c.post("/feedback", files={"file": ("a.png", sample, "image/png")}, data={"label": classes[0]},
               headers=headers)
    assert r.status_code == 403 and r.json()["error"].startswith("Refused: this request comes from another page")
    assert stored(tmp_path) == []
    own = c.post("/feedback", files={"file": ("a.png", sample, "image/png")}, data={"label": classes[0]},
                 headers={"Origin": "http://localhost", "Referer": "http://localhost/"})
    assert own.status_code == 200, own.text


def test_a_foreign_host_name_is_refused(exports, tmp_path):
    """DNS rebinding: a request naming another host gets a JSON 400; hosts=None (--host 0.0.0.0) takes any."""
    r = client(exports, "single-label", tmp_path).get("/info", headers={"Host": "evil.example:8801"})
    assert r.status_code == 400 and "does not answer to the host name 'evil.example:8801'" in r.json()["error"]
    assert client(exports, "single-label", tmp_path, hosts=None).get(
        "/info", headers={"Host": "evil.example:8801"}).status_code == 200


@pytest.mark.parametrize("path", ["/", "/info", "/static/app.js", "/nope"])
def test_every_answer_carries_security_headers(exports, tmp_path, path):
    r = client(exports, "single-label", tmp_path).get(path)
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_the_page_has_no_inline_style_or_script(exports, tmp_path):
    """default-src 'self' blocks inline code; the page keeps its style and script in files."""
    page = client(exports, "single-label", tmp_path).get("/").text
    assert "<style" not in page and 'href="/static/style.css"' in page
    assert "response.text()" in client(exports, "single-label", tmp_path).get("/static/app.js").text


def test_a_multipart_body_cut_before_its_end_is_called_incomplete(exports, tmp_path):
    _, sample, _ = exports["single-label"]
    body = (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + sample[: len(sample) // 2])
    r = client(exports, "single-label", tmp_path).post(
        "/predict", content=body, headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 400 and "The upload is incomplete" in r.json()["error"]


def test_a_float_tiff_of_nan_is_refused(exports, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 20), np.nan, dtype=np.float32), mode="F").save(buf, format="TIFF")
    r = client(exports, "single-label", tmp_path).post("/predict", files={"file": ("a.tif", buf.getvalue(),
                                                                                 "image/tiff")})
    assert r.status_code == 422 and "NaN or infinite pixel values" in r.json()["error"]


@pytest.mark.parametrize("kind", ["multi-label", "points"])
@pytest.mark.parametrize("orientation,size", [(6, (64, 32)), (None, (200, 150))])
def test_the_app_predicts_what_predict_on_the_file_does(exports, tmp_path, kind, orientation, size):
    """A phone photo stored sideways (EXIF orientation 6) is predicted upright, and any JPEG gets the same
    answer as `predict` on the file (the CLI's path): the same probabilities, or points in the upright photo."""
    from course_utils.learner import load_learner

    data = _jpeg(size, orientation)
    (tmp_path / "photo.jpg").write_bytes(data)
    label, _, probs = load_learner(exports[kind][0], device="cpu").predict(tmp_path / "photo.jpg")
    r = client(exports, kind, tmp_path).post("/predict", files=_upload(data))
    assert r.status_code == 200, r.text
    res = r.json()
    if kind == "points":
        upright = [size[0], size[1]] if orientation == 6 else [size[1], size[0]]
        assert res["image_size"] == upright
        assert res["points"] == [[round(v, 1) for v in p] for p in label.tolist()]
    else:
        got = dict(zip(res["labels"], res["probabilities"]))
        assert [got[c] for c in exports[kind][2]] == pytest.approx(probs.tolist(), abs=1e-4)


def test_a_click_on_the_upright_photo_is_accepted(exports, tmp_path):
    """A sideways-stored phone photo: the point is taken in the upright frame the page shows (64 high, 32 wide)."""
    r = client(exports, "points", tmp_path).post("/feedback", files=_upload(_jpeg((64, 32), 6)),
                                                 data={"row": "50", "col": "10"})
    assert r.status_code == 200, r.text
    assert r.json()["corrected"] == "50.0 10.0"


def test_json_nested_too_deep_is_a_400(exports, tmp_path):
    body = b"[" * 100_000 + b"]" * 100_000
    r = client(exports, "text", tmp_path).post("/predict", content=body,
                                               headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]


@pytest.mark.parametrize("label", [[1], [["pos"]], 7, {"a": 1}])
def test_a_label_that_is_not_text_is_a_422(exports, tmp_path, label):
    r = client(exports, "text", tmp_path).post("/feedback", json={"text": "a fine film", "label": label})
    assert r.status_code == 422 and "'label' must be a class name or a list of class names" in r.json()["error"]
    assert stored(tmp_path) == []


@pytest.mark.parametrize("route", ["/predict", "/feedback"])
@pytest.mark.parametrize("body", [b'{"text": "bad \\ud800 text", "label": "pos"}',
                                  b'{"text": "good text", "label": "p\\udfffos"}'])
def test_a_lone_surrogate_is_a_400(exports, tmp_path, route, body):
    r = client(exports, "text", tmp_path).post(route, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "unpaired surrogate" in r.json()["error"]
    assert stored(tmp_path) == []


def test_a_bug_in_the_app_is_a_json_500_and_the_app_goes_on(exports, tmp_path, monkeypatch, caplog):
    _, sample, _ = exports["single-label"]
    c = client(exports, "single-label", tmp_path)

    def broken(item):
        raise KeyError("oops")

    monkeypatch.setattr(c.app.state.predictor, "predict", broken)
    r = c.post("/predict", files={"file": ("a.png", sample, "image/png")})
    assert r.status_code == 500 and r.json()["error"].startswith("A bug in the app (KeyError: 'oops')")
    assert "Traceback" in caplog.text
    monkeypatch.undo()
    assert c.post("/predict", files={"file": ("a.png", sample, "image/png")}).status_code == 200


def test_a_body_that_stops_arriving_is_a_408(exports, tmp_path):
    """A slow or stalled upload is answered 408 after `body_timeout` seconds without data."""
    app = create_app(exports["single-label"][0], tmp_path / "fb", body_timeout=0.2)
    sent = []

    async def receive():
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": b"--xyz\r\n", "more_body": True}
        await anyio.sleep(30)  # the client sends nothing more

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
             "headers": [(b"host", b"localhost"), (b"content-type", b"multipart/form-data; boundary=xyz")],
             "http_version": "1.1", "scheme": "http", "server": ("localhost", 80), "client": ("127.0.0.1", 1),
             "root_path": "", "app": app}
    async def run():
        with anyio.fail_after(10):
            await app(scope, receive, send)

    anyio.run(run)
    start = next(m for m in sent if isinstance(m, dict) and m["type"] == "http.response.start")
    body = json.loads(b"".join(m.get("body", b"") for m in sent if isinstance(m, dict)
                               and m["type"] == "http.response.body"))
    assert start["status"] == 408 and "nothing arrived for 0.2 s" in body["error"]


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(exports, tmp_path):
    r = client(exports, "single-label", tmp_path, max_mp=0.001).post("/predict", files=_upload(_jpeg((64, 32))))
    assert r.status_code == 413
    assert r.json()["error"] == ("The image is 64x32 pixels (0.0 megapixels); this app takes at most 0.001. Resize "
                                 "it (or start the app with a larger --max-mp).")


@pytest.mark.parametrize("code,status,says", [(errno.ENOSPC, 507, "the disk is full"),
                                              (errno.EROFS, 500, "the disk is mounted read-only")])
def test_a_correction_that_cannot_be_written_is_a_json_error_and_nothing_half_stored(
        exports, tmp_path, monkeypatch, code, status, says):
    """The disk fills or turns read-only while the app runs: the answer names the folder and why, and the
    folder keeps neither the image nor part of a row."""
    from course_utils.serve import feedback as fb

    _, sample, classes = exports["single-label"]
    c = client(exports, "single-label", tmp_path)

    def refuse(fd, data):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fb.os, "write", refuse)
    r = c.post("/feedback", files={"file": ("a.png", sample, "image/png")}, data={"label": classes[0]})
    assert r.status_code == status
    assert r.json()["error"].startswith(f"The correction could not be stored in {tmp_path / 'fb'}: {says}. Nothing "
                                        "was stored")
    assert stored(tmp_path) == ["feedback.csv"] and (tmp_path / "fb" / "feedback.csv").read_bytes() == b""


def test_a_feedback_csv_turned_into_a_folder_is_a_json_500(exports, tmp_path):
    _, sample, classes = exports["single-label"]
    c = client(exports, "single-label", tmp_path)
    (tmp_path / "fb" / "feedback.csv").mkdir()
    r = c.post("/feedback", files={"file": ("a.png", sample, "image/png")}, data={"label": classes[0]})
    assert r.status_code == 500 and str(tmp_path / "fb") in r.json()["error"]
    assert stored(tmp_path) == ["feedback.csv"]  # no image without its row


@pytest.mark.parametrize("make", ["file", "other header"])
def test_a_feedback_folder_that_cannot_take_corrections_is_refused_at_startup(exports, tmp_path, make):
    if make == "file":
        (tmp_path / "fb").write_text("x")
    else:
        (tmp_path / "fb").mkdir()
        (tmp_path / "fb" / "feedback.csv").write_text("file,corrected\n")
    with pytest.raises(OSError, match=r"fb is a file, not a folder|starts with the header 'file,corrected'"):
        create_app(exports["single-label"][0], tmp_path / "fb")


def test_a_model_that_outputs_nan_is_a_json_500(exports, tmp_path):
    _, sample, classes = exports["single-label"]
    c = client(exports, "single-label", tmp_path)
    predictor = c.app.state.predictor
    with torch.no_grad():
        next(predictor.learn.model.parameters()).fill_(float("nan"))
    assert predictor.nonfinite_weights()
    r = c.post("/predict", files={"file": ("a.png", sample, "image/png")})
    assert r.status_code == 500 and "The model's output is not finite" in r.json()["error"]
    r = c.post("/feedback", files={"file": ("a.png", sample, "image/png")}, data={"label": classes[0]})
    assert r.status_code == 500 and stored(tmp_path) == []


def test_concurrent_predictions_share_model_passes_and_each_gets_its_own_answer(tmp_path):
    """Batched serving: requests sent at once are answered with exactly what each gets alone, in fewer passes."""
    import threading

    from course_utils.serve.predictor import Predictor

    learn, _ = make_learner("multi-label", tmp_path / "m")
    export = learn.export()
    predictor = Predictor(export, batch_wait_ms=200)
    imgs = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8))
            for i in range(8)]
    alone = [predictor.predict(img) for img in imgs]
    passes = predictor.batcher.batches
    together, barrier = [None] * 8, threading.Barrier(8)

    def one(i):
        barrier.wait()
        together[i] = predictor.predict(imgs[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for a, b in zip(alone, together):
        assert b["labels"] == a["labels"] and b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-4)
    assert predictor.batcher.batches - passes < 8


def test_batching_can_be_turned_off(tmp_path):
    from course_utils.serve.predictor import Predictor

    learn, item = make_learner("single-label", tmp_path / "s")
    predictor = Predictor(learn.export(), max_batch=1)
    assert predictor.predict(Image.open(item))["kind"] == "single-label"
    assert predictor.batcher.max_batch == 1
