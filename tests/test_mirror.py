"""A dataset mirror (COURSE_MIRROR / --mirror): a folder or an http server holding the registry's files under
their names. Full mode takes each file from it through the usual download code, and from the real address
only when the mirror lacks it; Kaggle files (Planet) come from it too. Planet by hand: an unpacked train-jpg/
folder in downloads/ is accepted. Everything here is offline: the "real addresses" are unreachable or local."""
from __future__ import annotations

import functools
import tarfile
import threading
import time
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from http_server import toy_archive

from course_utils import download, kaggle
from course_utils.__main__ import main
from course_utils.download import DATASETS, Dataset, DatasetError, Source, download_dataset

UNREACHABLE = "http://127.0.0.1:9/files"  # the discard port: nothing listens, the connection is refused


@pytest.fixture
def mirror_toy(monkeypatch, tmp_path):
    """A registry entry `toy` whose real address is unreachable, and a mirror folder holding its archive."""
    monkeypatch.setitem(DATASETS, "toy", Dataset(sources=(Source(f"{UNREACHABLE}/toy.tgz"),), folder="toy",
                                                 expect=("a.txt",)))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "toy.tgz").write_bytes(toy_archive({"toy/a.txt": b"hello"}))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("COURSE_MIRROR", raising=False)
    return mirror


@pytest.fixture
def http_mirror(mirror_toy):
    """The mirror folder served over http, as `python -m http.server` would; yields (base URL, paths asked)."""
    asked = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(mirror_toy)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()


def test_a_mirror_folder_set_in_the_environment_is_used(mirror_toy, monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MIRROR", str(mirror_toy))
    path = download_dataset("toy")
    assert (path / "a.txt").read_bytes() == b"hello"
    assert (tmp_path / "data" / "downloads" / "toy.tgz").is_file()  # kept, as after any download


def test_an_http_mirror_is_used_through_the_same_download_code(http_mirror, tmp_path):
    base, asked = http_mirror
    path = download_dataset("toy", mirror=base)
    assert (path / "a.txt").read_bytes() == b"hello"
    assert asked == ["/toy.tgz"]
    assert not list((tmp_path / "data" / "downloads").glob("*.part*"))


def test_a_file_the_mirror_lacks_comes_from_its_real_address(http_mirror, mirror_toy, monkeypatch, capsys):
    base, asked = http_mirror
    (mirror_toy / "real").mkdir()
    (mirror_toy / "real" / "toy2.tgz").write_bytes(toy_archive({"toy/a.txt": b"from the real address"}))
    monkeypatch.setitem(DATASETS, "toy", Dataset(sources=(Source(f"{base}/real/toy2.tgz"),), folder="toy",
                                                 expect=("a.txt",)))
    path = download_dataset("toy", mirror=base)
    assert (path / "a.txt").read_bytes() == b"from the real address"
    assert asked == ["/toy2.tgz", "/real/toy2.tgz"]  # the mirror first (HTTP 404), then the real address
    assert f"toy2.tgz is not on the mirror {base}; downloading it from {base}/real/toy2.tgz" in capsys.readouterr().out


def test_a_missing_mirror_folder_is_an_error_naming_it(mirror_toy, tmp_path):
    with pytest.raises(DatasetError, match="nowhere.*is not a folder"):
        download_dataset("toy", mirror=str(tmp_path / "nowhere"))
    assert not (tmp_path / "data" / "toy").exists()


def test_a_wrong_file_on_the_mirror_is_refused(mirror_toy, monkeypatch):
    good = download.file_sha256(mirror_toy / "toy.tgz")
    (mirror_toy / "toy.tgz").write_bytes(toy_archive({"toy/a.txt": b"tampered"}))
    monkeypatch.setitem(DATASETS, "toy", Dataset(sources=(Source(f"{UNREACHABLE}/toy.tgz", sha256=good),),
                                                 folder="toy", expect=("a.txt",)))
    with pytest.raises(download.ChecksumError, match="not the expected one"):
        download_dataset("toy", mirror=str(mirror_toy))


def planet_by_hand(folder, csv_zipped: bool) -> None:
    """Planet's files as a student gets them by hand: train_v2.csv (or Kaggle's zip of it) and train-jpg."""
    (folder / "train-jpg").mkdir(parents=True)
    for i in range(3):
        (folder / "train-jpg" / f"train_{i}.jpg").write_bytes(b"jpeg")
    csv = "image_name,tags\ntrain_0,clear primary\n"
    if csv_zipped:
        with zipfile.ZipFile(folder / "train_v2.csv.zip", "w") as zf:
            zf.writestr("train_v2.csv", csv)
    else:
        (folder / "train_v2.csv").write_text(csv)


def no_kaggle(*args, **kwargs):
    raise AssertionError("Kaggle must not be asked")


def test_planet_files_come_from_the_mirror_not_kaggle(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    planet_by_hand(mirror, csv_zipped=True)
    with tarfile.open(mirror / "train-jpg.tar", "w") as t:
        t.add(mirror / "train-jpg", "train-jpg")
    import py7zr
    with py7zr.SevenZipFile(mirror / "train-jpg.tar.7z", "w") as z:
        z.write(mirror / "train-jpg.tar", "train-jpg.tar")
    monkeypatch.setattr(kaggle, "download_competition_file", no_kaggle)
    path = download_dataset("planet", tmp_path / "data", mirror=str(mirror))
    assert sorted(p.name for p in (path / "train-jpg").iterdir()) == ["train_0.jpg", "train_1.jpg", "train_2.jpg"]
    assert (path / "train_v2.csv").read_text().startswith("image_name,tags")


def test_planet_by_hand_accepts_an_unpacked_train_jpg_folder_and_keeps_it(tmp_path, monkeypatch):
    downloads = tmp_path / "data" / "downloads"
    planet_by_hand(downloads, csv_zipped=False)
    monkeypatch.setattr(kaggle, "download_competition_file", no_kaggle)
    path = download_dataset("planet", tmp_path / "data")
    assert sorted(p.name for p in (path / "train-jpg").iterdir()) == ["train_0.jpg", "train_1.jpg", "train_2.jpg"]
    assert len(list((downloads / "train-jpg").iterdir())) == 3  # the student's folder is left as it was


def test_mirror_command_copies_what_was_downloaded_and_datasets_shows_the_origin(mirror_toy, tmp_path, capsys,
                                                                                   fsynced):
    download_dataset("toy", mirror=str(mirror_toy))
    dest = tmp_path / "new-mirror"
    assert main(["mirror", str(dest)]) == 0
    assert (dest / "toy.tgz").read_bytes() == (mirror_toy / "toy.tgz").read_bytes()
    assert not list(dest.glob(".*"))  # no temporary files left
    assert fsynced(dest / "toy.tgz") and (dest / "toy.tgz").stat().st_mode & 0o777 == 0o644  # others may read it
    capsys.readouterr()
    main(["datasets", "--mirror", str(dest), "--dest", str(tmp_path / "elsewhere")])
    out = capsys.readouterr().out
    assert f"mirror        {(dest / 'toy.tgz').as_uri()}" in out
    assert "not mirrored  https://s3.amazonaws.com/fast-ai-imagelocal/camvid.tgz" in out


def test_a_mirror_answering_errors_is_called_broken_not_the_internet(mirror_toy, server, monkeypatch):
    """HTTP 500 every time: the message blames the mirror's server, not the connection."""
    from course_utils import fetch
    monkeypatch.setattr(download, "download_url", functools.partial(fetch.download_url, sleep=lambda s: None))
    server.plans["toy.tgz"] = ["status:500"] * 6
    with pytest.raises(DatasetError) as err:
        download_dataset("toy", mirror=server.url("").rstrip("/"))
    assert "it is the server that fails, not your internet connection" in str(err.value)
    assert "(its server answered with an error: the mirror is broken, not your internet connection)" in str(err.value)
    assert "check the internet connection" not in str(err.value)


def test_a_first_install_from_the_mirror_says_it_was_trusted_and_where(mirror_toy, capsys, tmp_path):
    """Trust on first use is said, with the sha256 and the checksums.json that keeps it."""
    download_dataset("toy", mirror=str(mirror_toy))
    out = capsys.readouterr().out
    digest = download.file_sha256(mirror_toy / "toy.tgz")
    assert (f"toy.tgz came from the mirror {mirror_toy}, and no sha256 was known for it: this first copy is trusted "
            f"(trust on first use). Its sha256 {digest} is recorded in {tmp_path / 'data' / 'checksums.json'}") in out


@pytest.mark.parametrize("mirror,message", [
    ("ftp://127.0.0.1/x", r"'ftp://127\.0\.0\.1/x' \(COURSE_MIRROR or --mirror\) uses ftp://, which the course "
                          r"cannot download from: use a folder or an http\(s\):// address"),
    ("http://[::1", r"'http://\[::1' \(COURSE_MIRROR or --mirror\) is not a valid address \(Invalid IPv6 URL\)"),
    ("http://host:port/", r"'http://host:port/' \(COURSE_MIRROR or --mirror\) is not a valid address \(Port "),
])
def test_an_unusable_mirror_address_is_named_as_the_mirrors(mirror_toy, mirror, message):
    """ftp:// and malformed addresses are refused as the mirror's, not taken for folders."""
    with pytest.raises(DatasetError, match=r"^The dataset mirror " + message):
        download_dataset("toy", mirror=mirror)


def test_a_link_out_of_a_mirror_folder_is_refused(mirror_toy, tmp_path):
    """A mirror file that is a symlink to a file outside the mirror is refused, naming it; nothing is copied."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not a dataset")
    (mirror_toy / "toy.tgz").unlink()
    (mirror_toy / "toy.tgz").symlink_to(secret)
    with pytest.raises(DatasetError, match=rf"holds toy\.tgz as a link to {secret}, outside the mirror folder: "
                                           "refused"):
        download_dataset("toy", mirror=str(mirror_toy))
    assert not (tmp_path / "data" / "downloads" / "toy.tgz").exists()


def test_datasets_with_a_mirror_that_never_answers_waits_once(mirror_toy, monkeypatch, capsys):
    """A server that accepts and never answers costs one probe timeout for the whole listing."""
    import socket

    from course_utils import mirror as mirrors
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    monkeypatch.setattr(mirrors, "PROBE_TIMEOUT", 0.5)
    monkeypatch.setattr(mirrors, "_down", {})
    try:
        start = time.monotonic()
        assert main(["datasets", "--mirror", f"http://127.0.0.1:{listener.getsockname()[1]}"]) == 0
        assert time.monotonic() - start < 2
    finally:
        listener.close()
    assert capsys.readouterr().out.count("mirror down") >= len(DATASETS) - 1


def test_mirror_to_a_file_is_one_clear_line(tmp_path, capsys, monkeypatch):
    """`mirror DEST` where DEST is a file says so, instead of '[Errno 17] File exists'."""
    data = tmp_path / "data"
    (data / "downloads").mkdir(parents=True)
    (data / "downloads" / "camvid.tgz").write_bytes(b"x")
    dest = tmp_path / "mirror_is_file"
    dest.write_text("")
    assert main(["mirror", str(dest), "--from", str(data)]) == 1
    assert capsys.readouterr().err == (f"error: The mirror folder {dest} is a file, not a folder: choose a folder (it "
                                       "is created if needed).\n")
