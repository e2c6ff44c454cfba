"""Round two of the hostile-input trial (issue 16), more of the WEAK table cases: a zip with a symbolic link
and a file written through it (D13), a truncated or corrupt archive (D14), a server announcing a Content-Length
smaller than the body (D3), an empty body (D4), a float image with NaN pixels (I19), and rows without tags in a
multi-label CSV (C7)."""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import zipfile

import numpy as np
import py7zr
import pytest
from http_server import TOY
from PIL import Image

from course_utils.download import (
    ChecksumError,
    DatasetError,
    DownloadError,
    UnsafeArchiveError,
    download_url,
    extract_archive,
    get_dataset,
)
from course_utils.vision import ImageList
from course_utils.vision.image import open_image


def _contents(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


# --- D13: a zip symlink entry, and a file written through it -------------------------------------------------
def _zip_with_link(path, target):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/fine.txt", b"ok")
        link = zipfile.ZipInfo("data/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16  # how zip (Info-ZIP, Python) marks a symbolic link
        zf.writestr(link, target)
        zf.writestr("data/link/written_through.txt", b"evil")
    return path


@pytest.mark.parametrize("target", ["../../outside", "/tmp", "fine.txt"])
def test_a_symbolic_link_in_a_zip_is_refused_by_name(tmp_path, target):
    (tmp_path / "outside").mkdir()
    archive = _zip_with_link(tmp_path / "links.zip", target)
    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, tmp_path / "out")
    assert str(err.value) == (f"Refusing to extract {archive}: its member 'data/link' is a symbolic link (not "
                              "accepted in .zip archives). Nothing was extracted. The archive is damaged or "
                              "hostile: delete it.")
    assert _contents(tmp_path) == ["links.zip", "outside"] and not any((tmp_path / "outside").iterdir())


def test_a_zip_without_links_still_extracts(tmp_path):
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as zf:
        info = zipfile.ZipInfo("data/run.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16  # unix modes on ordinary files are no links
        zf.writestr(info, b"#!/bin/sh\n")
        zf.writestr("data/sub/", b"")
    out = extract_archive(tmp_path / "plain.zip", tmp_path / "out")
    assert (out / "data" / "run.sh").read_bytes() == b"#!/bin/sh\n" and (out / "data" / "sub").is_dir()


# --- D14: a truncated or corrupt archive -----------------------------------------------------------------------
PAYLOAD = {f"data/f{i}.bin": os.urandom(40_000) for i in range(4)}  # random bytes: compression cannot shrink them


def _tar(mode):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in PAYLOAD.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip_with_bad_crc():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in PAYLOAD.items():
            zf.writestr(name, data)
    raw = bytearray(buf.getvalue())
    raw[100] ^= 0xFF  # one flipped byte inside the first member's data: the zip still opens, the member is bad
    return bytes(raw)


def _7z(tmp_path):
    with py7zr.SevenZipFile(tmp_path / "whole.7z", "w") as z:
        for name, data in PAYLOAD.items():
            z.writestr(data, name)
    data = (tmp_path / "whole.7z").read_bytes()
    (tmp_path / "whole.7z").unlink()
    return data


DAMAGED = {
    "cut.tgz": lambda tmp: _tar("w:gz")[:60_000],
    "cut.tar.xz": lambda tmp: _tar("w:xz")[:60_000],
    "cut.tar": lambda tmp: _tar("w")[:60_000],
    "badcrc.zip": lambda tmp: _zip_with_bad_crc(),
    "flipped.7z": lambda tmp: (lambda d: d[:200] + bytes(b ^ 0xFF for b in d[200:400]) + d[400:])(_7z(tmp)),
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_archive_is_named_and_leaves_nothing(tmp_path, name):
    archive = tmp_path / name
    archive.write_bytes(DAMAGED[name](tmp_path))
    with pytest.raises(DatasetError) as err:
        extract_archive(archive, tmp_path / "out")
    msg = str(err.value)
    assert msg.startswith(f"{archive} is truncated or damaged (")
    assert msg.endswith("). Nothing was extracted: delete it and download it again.")
    assert _contents(tmp_path) == [name], "no folder, finished or half-made, is left beside it"


# --- D3: a Content-Length smaller than the body; D4: an empty body ---------------------------------------------
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


# --- I19: a float TIFF with NaN or infinite pixels ---------------------------------------------------------------
def _float_tiff(path, values):
    Image.fromarray(np.asarray(values, dtype=np.float32), mode="F").save(path)
    return path


@pytest.mark.parametrize("values, bad", [(np.full((8, 8), np.nan), 64), ([[0.5, np.inf], [0.1, 0.2]], 1),
                                         ([[-np.inf, 0.5], [np.nan, 0.2]], 2)])
def test_a_float_image_with_nan_or_inf_is_refused_where_it_is_read(tmp_path, values, bad):
    f = _float_tiff(tmp_path / "nan.tif", values)
    size = np.asarray(values).size
    with pytest.raises(ValueError) as err:
        open_image(f)
    assert str(err.value) == (f"Image {f} has NaN or infinite pixel values ({bad} of {size} pixels); re-export it "
                              "as 8-bit, or replace the NaNs (numpy.nan_to_num) and save it again.")


def test_a_finite_float_image_still_opens(tmp_path):
    f = _float_tiff(tmp_path / "ok.tif", [[0.0, 0.5], [1.0, 0.25]])
    assert np.asarray(open_image(f))[..., 0].tolist() == [[0, 128], [255, 64]]


@pytest.fixture
def tiffs(tmp_path):
    """Two classes of float TIFFs, one of them all NaN."""
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            _float_tiff(tmp_path / cls / f"{cls}{i}.tif", np.full((8, 8), 0.2 if cls == "a" else 0.8))
    _float_tiff(tmp_path / "b" / "b3.tif", np.full((8, 8), np.nan))
    return tmp_path


def test_check_lists_an_image_of_nans_with_what_to_do(tiffs, capsys):
    problems = ImageList.from_folder(tiffs).check()
    assert problems == [(tiffs / "b" / "b3.tif", f"Image {tiffs / 'b' / 'b3.tif'} has NaN or infinite pixel values "
                                                 "(64 of 64 pixels); re-export it as 8-bit, or replace the NaNs "
                                                 "(numpy.nan_to_num) and save it again.")]
    assert "1 of 8 images cannot be read" in capsys.readouterr().out


def test_an_image_of_nans_stops_the_databunch_before_training(tiffs):
    src = ImageList.from_folder(tiffs).split_by_rand_pct(0.25, seed=0).label_from_folder().transform(size=8)
    with pytest.raises(ValueError, match=r"1 of 8 items cannot be used for training:\n  - Image .*b3\.tif has NaN "
                                         r"or infinite pixel values"):
        src.databunch(bs=2, num_workers=0)


# --- C7: an empty tag cell in a multi-label CSV ------------------------------------------------------------------
def _tagged(root, tags):
    (root / "imgs").mkdir(parents=True)
    for i in range(len(tags)):
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(root / "imgs" / f"img_{i}.jpg")
    (root / "labels.csv").write_text("image_name,tags\n" + "".join(f"img_{i},{t}\n" for i, t in enumerate(tags)))
    return ImageList.from_csv(root, "labels.csv", folder="imgs", suffix=".jpg").split_by_idx([10, 11])


def test_rows_without_tags_are_named_in_a_warning_and_trained_as_no_tag(tmp_path):
    tags = ["a b"] * 12
    tags[3], tags[7], tags[11] = "", "  ", '" "'  # empty, spaces only, a quoted delimiter: no tag in any
    src = _tagged(tmp_path, tags)
    with pytest.warns(UserWarning) as record:
        lls = src.label_from_df(label_delim=" ")
    [w] = [w for w in record if "no tags" in str(w.message)]
    assert str(w.message) == (
        "3 row(s) of the table have no tags in column 'tags' (the rows of imgs/img_3.jpg, imgs/img_7.jpg, "
        "imgs/img_11.jpg): they are trained as 'no tag applies' (a target of all zeros). If those rows should not "
        "be there, delete them from the CSV, or read it with pandas and pass df.dropna(subset=['tags']) to "
        "ImageList.from_df.")
    assert w.filename == __file__, "the warning points at the caller's line"
    assert lls.train.y.get(3).tolist() == [0.0, 0.0] and lls.valid.y.get(1).tolist() == [0.0, 0.0]
    assert lls.train.y.get(0).tolist() == [1.0, 1.0]


def test_many_rows_without_tags_show_the_first_five_and_the_count(tmp_path):
    src = _tagged(tmp_path, ["", "a", "b"] * 4)
    with pytest.warns(UserWarning, match=r"^4 row\(s\) .* \(the rows of imgs/img_0\.jpg, imgs/img_3\.jpg, "
                                         r"imgs/img_6\.jpg, imgs/img_9\.jpg\)"):
        src.label_from_df(label_delim=" ")
    src = _tagged(tmp_path / "more", ["", "a"] * 6)
    with pytest.warns(UserWarning, match=r"^6 row\(s\) .*img_8\.jpg, \.\.\.\): they are trained"):
        src.label_from_df(label_delim=" ")


def test_a_fully_tagged_table_gives_no_such_warning(planet_path, recwarn):
    lls = (ImageList.from_csv(planet_path, "train_v2.csv", folder="train-jpg", suffix=".jpg")
           .split_by_rand_pct(0.25, seed=42).label_from_df(label_delim=" "))
    assert len(lls.train) == 18 and not [w for w in recwarn if "no tags" in str(w.message)]
