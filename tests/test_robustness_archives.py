"""Round two of the hostile-input trial (issue 16), downloads and archives: an archive that would expand to
an implausible size (a zip bomb), or more than the disk holds, is refused before anything is written; a web
page or an empty body where an archive was expected is refused and not kept."""
from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

import course_utils.archives as archives
from course_utils.download import DatasetError, DownloadError, download_url, extract_archive

ZEROS = b"\0" * (8 << 20)  # 8 MB that deflate to ~8 KB: a ratio of ~1000, like the trial's 1 MB -> 1.1 GB


def _zip_bomb(path, copies=2):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(copies):
            zf.writestr(f"bomb/zeros_{i}.bin", ZEROS)
    return path


def _tgz_bomb(path, copies=2):
    with tarfile.open(path, "w:gz") as tar:
        for i in range(copies):
            info = tarfile.TarInfo(f"bomb/zeros_{i}.bin")
            info.size = len(ZEROS)
            tar.addfile(info, io.BytesIO(ZEROS))
    return path


@pytest.fixture
def small_floor(monkeypatch):
    """The ratio check only matters above a size a disk notices; lowered here so the bombs stay small."""
    monkeypatch.setattr(archives, "RATIO_FLOOR", 1 << 20)


def _nothing_left(tmp_path, archive):
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


@pytest.mark.parametrize("make", [_zip_bomb, _tgz_bomb])
def test_an_archive_with_an_implausible_ratio_is_refused(tmp_path, small_floor, make):
    archive = make(tmp_path / ("bomb.zip" if make is _zip_bomb else "bomb.tgz"))
    with pytest.raises(DatasetError, match=r"would expand .* times its own size.*max_ratio=None"):
        extract_archive(archive, tmp_path / "out")
    _nothing_left(tmp_path, archive)
    assert extract_archive(archive, tmp_path / "out", max_ratio=None).is_dir(), "a trusted archive can be let through"


def test_an_archive_over_the_size_cap_is_refused(tmp_path):
    archive = _zip_bomb(tmp_path / "big.zip", copies=1)
    with pytest.raises(DatasetError, match=r"8\.0 MiB.*more than the limit of 1\.0 MiB.*max_size="):
        extract_archive(archive, tmp_path / "out", max_size=1 << 20, max_ratio=None)
    _nothing_left(tmp_path, archive)


def test_an_archive_larger_than_the_free_disk_is_refused(tmp_path, monkeypatch):
    archive = _zip_bomb(tmp_path / "big.zip", copies=1)
    monkeypatch.setattr(archives, "_free_bytes", lambda folder: 1 << 20)
    with pytest.raises(DatasetError, match=r"only 1\.0 MiB free"):
        extract_archive(archive, tmp_path / "out", max_ratio=None)
    _nothing_left(tmp_path, archive)


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
