"""fetch.download_url: downloads refused when they are not what they claim (web pages, cut or overlong bodies,
empty files), and nothing half-made left behind."""
from __future__ import annotations

import hashlib
import shutil

import pytest
from http_server import TOY

from course_utils.download import (
    ChecksumError,
    DownloadError,
    download_url,
    get_dataset,
)


# --- downloads that are not what they claim -----------------------------------------------------------------
def test_a_web_page_instead_of_an_archive_is_refused_and_not_kept(server, tmp_path):
    url = server.serve("camvid.tgz", b"<!DOCTYPE html>\n<html><body>Please log in to the hotel Wi-Fi</body></html>")
    with pytest.raises(DownloadError, match=r"web page.*camvid\.tgz.*Nothing was kept"):
        download_url(url, tmp_path / "camvid.tgz", sleep=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_response_is_refused_and_not_kept(server, tmp_path):
    url = server.serve("camvid.tgz", b"")
    with pytest.raises(DownloadError, match=r"empty"):
        download_url(url, tmp_path / "camvid.tgz", sleep=lambda s: None)
    assert list(tmp_path.iterdir()) == []


# --- a body longer than its Content-Length, an empty body ---------------------------------------------------
BIG = bytes(range(256)) * 1200  # 300 KB: the end arrives after many reads


@pytest.mark.parametrize("data, announced", [(TOY, len(TOY) // 2), (BIG, len(BIG) - 10), (BIG, 1000)])
def test_a_body_longer_than_its_content_length_is_refused_and_not_kept(server, tmp_path, data, announced):
    url = server.serve("toy.tgz", data)
    server.plans["toy.tgz"] = [f"announce:{announced}"]
    with pytest.raises(DownloadError) as err:
        download_url(url, tmp_path / "toy.tgz", sleep=lambda s: None)
    assert str(err.value) == (f"Downloading {url} failed: the server sent more than the {announced:,} bytes it "
                              "announced (its Content-Length), so a file that ends there would be cut short. "
                              "Nothing was kept. Run again later; if it happens again, the server is misconfigured: "
                              f"download the file some other way (a browser) and put it at {tmp_path / 'toy.tgz'}.")
    assert list(tmp_path.iterdir()) == [] and len(server.requests) == 1  # no retries: it would say the same


def test_a_body_as_long_as_announced_is_still_taken(server, tmp_path):
    url = server.serve("big.bin", BIG)
    assert download_url(url, tmp_path / "big.bin", size=len(BIG)).read_bytes() == BIG


def test_a_download_cut_at_a_short_content_length_fails_the_recorded_size(toy, server):
    get_dataset("toy", "full")  # the first good install records the file's sha256 and size
    shutil.rmtree(toy / "toy")
    (toy / "downloads" / "toy.tgz").unlink()
    server.serve("toy.tgz", TOY[:100])  # announced and sent as 100 bytes: only the record can tell
    with pytest.raises(ChecksumError, match=rf"toy\.tgz is 100 bytes, expected {len(TOY)}: the download stopped "
                                            r"short\. It was discarded\. Run again to retry"):
        get_dataset("toy", "full")
    assert not (toy / "toy").exists() and list((toy / "downloads").iterdir()) == []


def test_a_registry_sha256_refuses_a_cut_download(server, tmp_path):
    url = server.serve("toy.tgz", TOY[:100])
    with pytest.raises(ChecksumError, match=r"not the expected one: its sha256 is .* It was discarded"):
        download_url(url, tmp_path / "toy.tgz", sha256=hashlib.sha256(TOY).hexdigest())
    assert list(tmp_path.iterdir()) == []


def test_an_empty_body_is_refused_whatever_the_file_and_the_kept_copy_stays(server, tmp_path):
    (tmp_path / "train_v2.csv").write_text("image_name,tags\n")
    url = server.serve("train_v2.csv", b"")
    with pytest.raises(DownloadError, match=rf"Downloading {url} gave an empty file.*Nothing was kept\. Run again "
                                            "later; if it stays empty, the address may have changed"):
        download_url(url, tmp_path / "train_v2.csv", sleep=lambda s: None)
    assert [p.name for p in tmp_path.iterdir()] == ["train_v2.csv"]
    assert (tmp_path / "train_v2.csv").read_text() == "image_name,tags\n"
