"""`python -m course_utils serve`: bad settings, an unknown host, a taken port and an unusable feedback folder are
one line before the model loads or anything says "Serving"; a broken export and an open --host are warned about."""
from __future__ import annotations

import socket

import pytest
import torch
from kinds import make_learner

from course_utils.__main__ import main


def _serve(capsys, *args):
    rc = main(["serve", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("args,says", [(["--port", "70000"], "--port: 70000 is not a port: ports go from 0 to 65535"),
                                       (["--port", "-1"], "--port: -1 is not a port"),
                                       (["--max-mb", "-1"], "--max-mb: -1 must be a number above 0"),
                                       (["--max-mb", "nan"], "--max-mb: nan must be a number above 0"),
                                       (["--max-chars", "-5"], "--max-chars: -5 must be a number above 0"),
                                       (["--max-mp", "0"], "--max-mp: 0 must be a number above 0")])
def test_bad_settings_are_refused_before_anything_loads(capsys, tmp_path, args, says):
    with pytest.raises(SystemExit) as e:
        main(["serve", str(tmp_path / "nope.pkl"), *args])
    assert e.value.code == 2 and says in capsys.readouterr().err


def test_an_unknown_host_is_one_line_before_serving(capsys, tmp_path):
    rc, out, err = _serve(capsys, str(tmp_path / "nope.pkl"), "--host", "999.1.1.1", "--port", "0")
    assert rc == 1 and "Serving" not in out
    assert err.startswith("error: --host 999.1.1.1: no such address on this machine") and err.count("\n") == 1


def test_a_port_in_use_is_one_line_before_serving(capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc, out, err = _serve(capsys, str(tmp_path / "nope.pkl"), "--port", str(port))
    assert rc == 1 and "Serving" not in out
    assert err == (f"error: Port {port} on 127.0.0.1 is in use by another program; choose another with --port (or "
                   "stop the other program).\n")


def test_a_feedback_folder_that_is_a_file_is_one_line_before_the_model_loads(capsys, tmp_path):
    (tmp_path / "fb").write_text("x")
    rc, out, err = _serve(capsys, str(tmp_path / "nope.pkl"), "--port", "0", "--feedback", str(tmp_path / "fb"))
    assert rc == 1 and out == ""
    assert err == (f"error: The feedback folder {tmp_path / 'fb'} is a file, not a folder; give --feedback a folder "
                   "(it is created if missing).\n")


def test_an_export_with_nan_weights_is_warned_about_and_an_open_host_said(capsys, tmp_path, monkeypatch):
    """An export whose weights turned NaN (a file written before exports were checked): a warning at startup."""
    import uvicorn

    from course_utils.serve import predictor

    export = make_learner("single-label", tmp_path)[0].export()
    original = predictor.load_learner

    def load_broken(*args, **kwargs):
        learn = original(*args, **kwargs)
        with torch.no_grad():
            next(learn.model.parameters()).fill_(float("nan"))
        return learn

    monkeypatch.setattr(predictor, "load_learner", load_broken)
    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(sockets))
    rc, out, err = _serve(capsys, str(export), "--port", "0", "--host", "0.0.0.0")
    assert rc == 0 and len(ran) == 1
    ran[0][0].close()
    assert "hold NaN or infinite values" in err and "every prediction will fail" in err
    assert "answering to any host name" in out and "Serving a single-label model" in out
