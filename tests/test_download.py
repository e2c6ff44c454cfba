"""Downloads resume, retry, verify and land atomically; get_dataset installs a dataset once.

Everything is served by a real HTTP server on 127.0.0.1 (tests/http_server.py, scripted to drop connections,
ignore Range, stall, fail or send wrong bytes); nothing reaches the internet, and no test sleeps
for its backoff (the sleep function is injected).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time

import pytest
from http_server import STALL_LIMIT, TOY, toy_archive

from course_utils.config import data_dir
from course_utils.download import (
    DATASETS,
    ChecksumError,
    Dataset,
    DatasetError,
    DownloadError,
    Source,
    bundled_data_dir,
    dataset_status,
    download_dataset,
    download_url,
    get_dataset,
)

PAYLOAD = bytes(range(256)) * 1200  # 300 KB: several reads, still instant


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def delays():
    """The backoff delays a download asked for (recorded instead of slept)."""
    return []


def fetch(url, dest, delays, **kwargs):
    return download_url(url, dest, sleep=delays.append, backoff=0.5, **kwargs)


# --- download_url ---------------------------------------------------------------------------------------

def test_download_streams_the_file_into_place_and_leaves_nothing_else(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD)
    dest = fetch(url, tmp_path / "data.bin", delays, sha256=sha(PAYLOAD))
    assert dest == tmp_path / "data.bin" and dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]
    assert delays == []


def test_a_finished_download_reaches_the_disk_before_it_takes_its_name(server, tmp_path, delays, fsynced):
    url = server.serve("data.bin", PAYLOAD)
    server.plans["data.bin"] = ["drop:100000"]  # resumed: the .part file is written in two goes
    dest = fetch(url, tmp_path / "data.bin", delays, sha256=sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD and fsynced(dest)


def test_a_dropped_connection_is_resumed_with_a_range_request(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD)
    server.plans["data.bin"] = ["drop:100000"]
    dest = fetch(url, tmp_path / "data.bin", delays, sha256=sha(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("data.bin", None, None), ("data.bin", "bytes=100000-", '"v1"')]
    assert delays == []  # it made progress, so it resumes at once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_an_interrupted_download_resumes_on_the_next_call(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD)
    # what an earlier run killed after 1000 bytes leaves behind
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    (tmp_path / "data.bin.part.json").write_text(json.dumps({"url": url, "version": '"v1"'}))
    assert fetch(url, tmp_path / "data.bin", delays).read_bytes() == PAYLOAD
    assert server.requests == [("data.bin", "bytes=1000-", '"v1"')]


def test_a_server_that_ignores_range_makes_it_start_over(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD)
    (tmp_path / "data.bin.part").write_bytes(b"x" * 1000)
    (tmp_path / "data.bin.part.json").write_text(json.dumps({"url": url, "version": '"v1"'}))
    server.plans["data.bin"] = ["whole"]
    assert fetch(url, tmp_path / "data.bin", delays).read_bytes() == PAYLOAD


def test_a_file_changed_on_the_server_since_the_partial_download_is_fetched_afresh(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD[::-1], etag='"v2"')
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])  # from version v1
    (tmp_path / "data.bin.part.json").write_text(json.dumps({"url": url, "version": '"v1"'}))
    assert fetch(url, tmp_path / "data.bin", delays).read_bytes() == PAYLOAD[::-1]


def test_a_partial_file_longer_than_the_remote_one_is_restarted(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD[:500])
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    (tmp_path / "data.bin.part.json").write_text(json.dumps({"url": url, "version": '"v1"'}))
    assert fetch(url, tmp_path / "data.bin", delays).read_bytes() == PAYLOAD[:500]
    assert [r[1] for r in server.requests] == ["bytes=1000-", None]


def test_server_errors_are_retried_with_exponential_backoff(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD)
    server.plans["data.bin"] = ["status:503", "status:503", "ok"]
    assert fetch(url, tmp_path / "data.bin", delays).read_bytes() == PAYLOAD
    assert delays == [0.5, 1.0]


def test_it_gives_up_after_the_retries_keeping_what_arrived(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD)
    server.plans["data.bin"] = ["drop:1000"] + ["status:503"] * 3
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "data.bin", delays, retries=2)
    part = tmp_path / "data.bin.part"
    assert str(err.value) == (f"Downloading {url} failed 3 times in a row (HTTP Error 503: Service Unavailable). "
                              "The server answered each time, with an error (HTTP 503): it is the server that "
                              f"fails, not your internet connection. What arrived is kept in {part}: run again "
                              "later to resume.")
    assert delays == [0.5, 1.0]
    assert part.read_bytes() == PAYLOAD[:1000] and not (tmp_path / "data.bin").exists()
    assert fetch(url, tmp_path / "data.bin", delays).read_bytes() == PAYLOAD  # the next call resumes
    assert server.requests[-1][1] == "bytes=1000-"


def test_when_nothing_arrives_it_says_to_check_the_connection(tmp_path, delays):
    url = "http://127.0.0.1:9/data.bin"  # the discard port: nothing listens there
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "data.bin", delays, retries=1)
    assert re.fullmatch(rf"Downloading {re.escape(url)} failed 2 times in a row \(<urlopen error .*>\)\. "
                        r"Nothing arrived: check the internet connection and run again\.", str(err.value))
    assert delays == [0.5] and list(tmp_path.iterdir()) == []


def test_a_stalled_server_times_out_and_is_retried(server, tmp_path, delays):
    url = server.serve("data.bin", PAYLOAD)
    server.plans["data.bin"] = ["stall"]  # it never answers: only the timeout ends the wait
    start = time.monotonic()
    assert fetch(url, tmp_path / "data.bin", delays, timeout=0.1).read_bytes() == PAYLOAD
    assert time.monotonic() - start < STALL_LIMIT / 2
    assert delays == [0.5]


def test_http_404_fails_at_once_with_a_clear_message(server, tmp_path, delays):
    url = server.url("moved.tgz")
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "moved.tgz", delays)
    assert str(err.value) == (f"Downloading {url} failed: the server answered HTTP 404 Not Found. If the file has "
                              "moved, the registry in course_utils/download.py needs its new address.")
    assert delays == [] and list(tmp_path.iterdir()) == []


def test_wrong_bytes_fail_the_checksum_and_leave_no_file(server, tmp_path, delays):
    bad = PAYLOAD[:-1] + b"!"
    url = server.serve("data.bin", bad)
    with pytest.raises(ChecksumError) as err:
        fetch(url, tmp_path / "data.bin", delays, sha256=sha(PAYLOAD))
    assert str(err.value) == (f"The file downloaded from {url} is not the expected one: its sha256 is {sha(bad)}, "
                              f"expected {sha(PAYLOAD)}. It was discarded. Run again to retry; if the same "
                              "happens, the file on the server has changed: please report it.")
    assert list(tmp_path.iterdir()) == []  # no dest, no .part, nothing that looks complete


def test_a_checksum_mismatch_keeps_the_users_existing_file(server, tmp_path, delays):
    url = server.serve("data.bin", b"corrupt")
    (tmp_path / "data.bin").write_bytes(b"the user's good copy")
    with pytest.raises(ChecksumError, match=re.escape(f"{tmp_path / 'data.bin'} was left as it was.")):
        fetch(url, tmp_path / "data.bin", delays, sha256=sha(PAYLOAD))
    assert (tmp_path / "data.bin").read_bytes() == b"the user's good copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


# --- the registry and get_dataset -------------------------------------------------------------------------

def test_the_registry_lists_every_full_mode_dataset_at_its_real_location():
    urls = {name: [s.url for s in d.sources] for name, d in DATASETS.items()}
    planet = "kaggle://planet-understanding-the-amazon-from-space"
    assert urls["planet"] == [f"{planet}/train-jpg.tar.7z", f"{planet}/train_v2.csv"]
    assert urls["camvid"] == ["https://s3.amazonaws.com/fast-ai-imagelocal/camvid.tgz"]
    assert urls["biwi_head_pose"] == ["https://s3.amazonaws.com/fast-ai-imagelocal/biwi_head_pose.tgz"]
    assert urls["imdb"] == ["https://s3.amazonaws.com/fast-ai-nlp/imdb.tgz"]
    assert urls["imdb_sample"] == ["https://s3.amazonaws.com/fast-ai-sample/imdb_sample.tgz"]
    assert urls["wt103"] == ["https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz"]
    assert urls["mnist_tiny"] == ["https://s3.amazonaws.com/fast-ai-sample/mnist_tiny.tgz"]
    assert urls["coco_tiny"] == ["https://s3.amazonaws.com/fast-ai-coco/coco_tiny.tgz"]
    assert DATASETS["wt103"].weights and DATASETS["wt103"].folder == "wt103-fwd"
    tiny = {name: d.tiny for name, d in DATASETS.items() if d.tiny}
    assert tiny == {"planet": "planet_tiny", "camvid": "camvid_tiny", "biwi_head_pose": "biwi_head_pose_tiny",
                    "imdb": "imdb_tiny", "imdb_sample": "imdb_tiny", "mnist_tiny": "mnist_tiny",
                    "coco_tiny": "coco_tiny"}
    for d in DATASETS.values():  # a checksum is either real-looking or honestly missing
        assert all(s.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", s.sha256) for s in d.sources)


def test_tiny_mode_returns_the_bundled_copy(monkeypatch):
    monkeypatch.delenv("COURSE_MODE", raising=False)
    assert get_dataset("planet") == bundled_data_dir() / "planet_tiny"
    with pytest.raises(ValueError, match="wt103 has no tiny copy"):
        get_dataset("wt103", "tiny")
    with pytest.raises(KeyError, match="Unknown dataset 'planets'"):
        get_dataset("planets", "tiny")


def test_full_mode_downloads_verifies_and_extracts_once(toy, server, fsynced):
    path = get_dataset("toy", "full")
    assert path == toy / "toy"
    assert (path / "hello.txt").read_bytes() == b"hello" and (path / "sub" / "x.txt").read_bytes() == b"x"
    assert json.loads((path / ".complete").read_text())["files"] == {"toy.tgz": sha(TOY)}
    records = json.loads((toy / "checksums.json").read_text())
    assert records[server.url("toy.tgz")]["sha256"] == sha(TOY)
    assert sorted(p.name for p in toy.iterdir()) == ["checksums.json", "downloads", "toy"]  # no staging left
    assert dataset_status("toy") == "complete"
    assert fsynced(toy / "checksums.json") and fsynced(path / ".complete") and fsynced(toy / "downloads" / "toy.tgz")

    n_requests = len(server.requests)
    assert get_dataset("toy", "full") == path
    assert len(server.requests) == n_requests  # the second call costs nothing


def test_a_changed_file_fails_the_checksum_recorded_on_first_use(toy, server):
    get_dataset("toy", "full")
    shutil.rmtree(toy / "toy")
    (toy / "downloads" / "toy.tgz").unlink()
    changed = toy_archive({"toy/hello.txt": b"tampered", "toy/sub/x.txt": b"x"})
    server.serve("toy.tgz", changed)
    with pytest.raises(ChecksumError) as err:
        get_dataset("toy", "full")
    assert f"The expected sha256 is the one recorded in {toy / 'checksums.json'}" in str(err.value)
    assert not (toy / "toy").exists() and list((toy / "downloads").iterdir()) == []


def test_a_kept_download_is_reinstalled_without_the_network(toy, server):
    get_dataset("toy", "full")
    shutil.rmtree(toy / "toy")
    n_requests = len(server.requests)
    assert (get_dataset("toy", "full") / "hello.txt").read_bytes() == b"hello"
    assert len(server.requests) == n_requests


@pytest.mark.parametrize("damage,message", [
    ("truncated", r"toy.tgz is truncated or damaged \(EOFError: .*\)\. Nothing was extracted: delete it"),
    ("not an archive", r"toy.tgz is not a zip, tar or 7z archive\. If it is a damaged download, delete it")])
def test_a_damaged_kept_download_says_to_delete_it(toy, damage, message):
    (toy / "downloads").mkdir(parents=True)
    (toy / "downloads" / "toy.tgz").write_bytes(TOY[: len(TOY) // 2] if damage == "truncated" else b"<html>")
    with pytest.raises(DatasetError, match=message):
        get_dataset("toy", "full")
    assert sorted(p.name for p in toy.iterdir()) == ["downloads"]


def test_an_incomplete_folder_someone_made_is_left_alone(toy):
    (toy / "toy").mkdir(parents=True)
    (toy / "toy" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError) as err:
        get_dataset("toy", "full")
    assert str(err.value).startswith(f"{toy / 'toy'} exists but is not a complete toy dataset "
                                     "(missing: hello.txt, sub).")
    assert dataset_status("toy") == "partial"
    assert [p.name for p in (toy / "toy").iterdir()] == ["notes.txt"]


def test_a_complete_folder_put_in_place_by_hand_is_used_as_it_is(toy, server):
    (toy / "toy" / "sub").mkdir(parents=True)
    (toy / "toy" / "hello.txt").write_text("by hand")
    assert (get_dataset("toy", "full") / "hello.txt").read_text() == "by hand"
    assert server.requests == []


def test_an_archive_with_an_unexpected_layout_installs_nothing(toy, server):
    server.serve("toy.tgz", toy_archive({"toy/readme.md": b"moved things around"}))
    with pytest.raises(DatasetError, match=re.escape("hello.txt, sub missing; they hold ['readme.md']")):
        get_dataset("toy", "full")
    assert not (toy / "toy").exists() and not list(toy.glob(".toy*"))


def test_status_goes_from_absent_to_partial_to_complete(toy):
    assert dataset_status("toy") == "absent"
    (toy / "downloads").mkdir(parents=True)
    (toy / "downloads" / "toy.tgz.part").write_bytes(b"half")
    assert dataset_status("toy") == "partial"
    (toy / "downloads" / "toy.tgz.part").unlink()
    get_dataset("toy", "full")
    assert dataset_status("toy") == "complete"


def test_the_data_dir_is_under_home_never_the_working_directory(toy, tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert data_dir() == tmp_path / "home" / ".course_utils" / "data"
    assert get_dataset("toy", "full") == tmp_path / "home" / ".course_utils" / "data" / "toy"
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_weights_are_installed_in_the_models_dir(server, tmp_path, monkeypatch):
    url = server.serve("lm.tgz", toy_archive({"lm/lm.pth": b"w", "lm/itos.pkl": b"v"}))
    monkeypatch.setitem(DATASETS, "lm", Dataset(sources=(Source(url),), folder="lm", expect=("*.pth", "*.pkl"),
                                                weights=True))
    monkeypatch.setenv("COURSE_MODELS", str(tmp_path / "models"))
    assert download_dataset("lm") == tmp_path / "models" / "lm"
    assert os.path.isfile(tmp_path / "models" / "lm" / "lm.pth")


def test_a_different_size_after_a_recorded_install_is_called_a_different_file(toy, server):
    """A complete archive of another size is 'a different file', not a download that stopped short."""
    get_dataset("toy", "full")
    shutil.rmtree(toy / "toy")
    (toy / "downloads" / "toy.tgz").unlink()
    server.serve("toy.tgz", toy_archive({"toy/hello.txt": b"hello, longer", "toy/sub/x.txt": b"x"}))
    with pytest.raises(ChecksumError, match=r"expected [\d,]+: it is a different file from the expected one \(another "
                                            r"version on the server\), not one cut short\. It was discarded"):
        get_dataset("toy", "full")
    assert list((toy / "downloads").iterdir()) == []


def test_a_server_that_goes_silent_after_the_headers_is_given_up_quickly(server, tmp_path, delays):
    """Headers, then silence: two short tries (not six long ones), and a line saying the server is stuck."""
    url = server.serve("data.bin", PAYLOAD)
    server.plans["data.bin"] = ["silent"] * 6
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"failed 2 times in a row \(timed out\)\. The server accepted the "
                                            r"connection but then said nothing for 0\.3 s: it is stuck or overloaded"):
        fetch(url, tmp_path / "data.bin", delays, timeout=0.3)
    assert time.monotonic() - start < 2 and delays == [0.5] and len(server.requests) == 2


def test_a_trickling_server_is_given_up_below_the_minimum_rate(server, tmp_path, delays):
    """Bytes that arrive slower than min_rate over slow_window end the download, keeping what arrived."""
    url = server.serve("data.bin", PAYLOAD)
    server.plans["data.bin"] = ["trickle:0.05"]
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"is too slow: \d+ bytes arrived in the last 1 s, under the minimum of "
                                            r"1,000 bytes a second\. What arrived is kept in .*data\.bin\.part: run "
                                            r"again later to resume"):
        fetch(url, tmp_path / "data.bin", delays, min_rate=1000, slow_window=0.6)
    assert time.monotonic() - start < 3 and (tmp_path / "data.bin.part").stat().st_size > 0


def test_one_extraction_budget_covers_all_of_a_datasets_files(server, tmp_path, monkeypatch):
    """Two archives each under the ratio floor, together a bomb: refused, nothing installed."""
    import course_utils.archives as archives

    monkeypatch.setattr(archives, "RATIO_FLOOR", 1 << 20)
    zeros = b"\0" * (700 << 10)  # 700 KiB each, ~1 KiB packed: under the (lowered) floor alone, over it together
    sources = tuple(Source(server.serve(f"part{i}.tgz", toy_archive({f"p{i}/zeros.bin": zeros}))) for i in (1, 2))
    monkeypatch.setitem(DATASETS, "two", Dataset(sources=sources, folder="two", expect=("zeros.bin",)))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    with pytest.raises(DatasetError, match=r"Refusing to extract .*part2\.tgz: it would expand to at least 1\.4 MiB"):
        get_dataset("two", "full")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["downloads"]
