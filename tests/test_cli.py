"""`python -m course_utils download NAME` and `python -m course_utils datasets`, end to end on a fake registry
entry served by a local HTTP server."""
from __future__ import annotations

import runpy
import sys

import pytest
from http_server import TOY

from course_utils.__main__ import main
from course_utils.download import DATASETS, Dataset, Source


@pytest.fixture
def toy_entry(server, monkeypatch):
    """A registry entry `toy` whose archive the local server serves."""
    url = server.serve("toy.tgz", TOY)
    monkeypatch.setitem(DATASETS, "toy", Dataset(sources=(Source(url),), folder="toy", expect=("hello.txt",)))
    return url


def status_line(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name + " "))


def test_download_installs_once_and_datasets_shows_the_status(toy_entry, server, tmp_path, capsys):
    dest = tmp_path / "data"
    assert main(["datasets", "--dest", str(dest)]) == 0
    assert status_line(capsys.readouterr().out, "toy").split() == ["toy", "absent", str(dest / "toy")]

    assert main(["download", "toy", "--dest", str(dest)]) == 0
    assert capsys.readouterr().out == f"toy is ready in {dest / 'toy'}\n"
    assert (dest / "toy" / "hello.txt").read_bytes() == b"hello"

    n_requests = len(server.requests)
    assert main(["download", "toy", "--dest", str(dest)]) == 0
    assert len(server.requests) == n_requests  # already complete: nothing fetched
    assert capsys.readouterr().out == f"toy is ready in {dest / 'toy'}\n"

    assert main(["datasets", "--dest", str(dest)]) == 0
    assert status_line(capsys.readouterr().out, "toy").split()[:2] == ["toy", "complete"]


def test_a_partial_download_shows_as_partial(toy_entry, tmp_path, capsys):
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "toy.tgz.part").write_bytes(b"half")
    assert main(["datasets", "--dest", str(tmp_path)]) == 0
    assert status_line(capsys.readouterr().out, "toy").split()[:2] == ["toy", "partial"]


def test_a_failure_prints_one_clear_message_and_exits_1(server, tmp_path, monkeypatch, capsys):
    url = server.url("gone.tgz")
    monkeypatch.setitem(DATASETS, "gone", Dataset(sources=(Source(url),), folder="gone", expect=("x",)))
    assert main(["download", "gone", "--dest", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"error: Downloading {url} failed: the server answered HTTP 404 Not Found. If the file "
                            "has moved, the registry in course_utils/download.py needs its new address.\n")
    assert captured.out == ""


def test_python_m_course_utils_runs_the_command_line(tmp_path, monkeypatch, capsys):
    # what `python -m course_utils datasets` does, in this process (a new interpreter would spend seconds on torch)
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COURSE_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(sys, "argv", ["python -m course_utils", "datasets"])
    monkeypatch.delitem(sys.modules, "course_utils.__main__")  # run it afresh, as `python -m` does
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("course_utils", run_name="__main__")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    listed = [line.split()[:2] for line in out.splitlines()[1:] if not line.startswith(" ")]
    assert listed == [[name, "absent"] for name in DATASETS]
    assert f"{tmp_path / 'models' / 'wt103-fwd'}" in out


def test_an_unknown_name_is_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["download", "planets"])
    assert exit_.value.code == 2
    assert "invalid choice: 'planets' (choose from 'biwi_head_pose', 'camvid'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,resumes", [(["download", "camvid"], True), (["datasets"], False),
                                          (["predict", "model.pkl", "photo.jpg"], False)])
def test_ctrl_c_promises_a_resume_only_where_running_again_resumes(monkeypatch, capsys, argv, resumes):
    """Ctrl-C: download picks up where it stopped; predict or datasets have nothing to resume, so no such advice."""
    import course_utils.__main__ as cli
    from course_utils import train

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    for module, name in ((cli, "download_dataset"), (cli, "dataset_status"), (train, "load_learner")):
        monkeypatch.setattr(module, name, interrupt)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err == ("\nInterrupted. Run the same command again to resume.\n" if resumes else "\nInterrupted.\n")
