"""Kaggle (Planet): each way the official client fails becomes a message saying what to do, never
showing the key. The real `KaggleApi` signs in from files under a temporary HOME (offline); only its
network calls, `competition_download_file` and `competition_list_files`, are replaced here."""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import py7zr
import pytest
import requests

from course_utils.download import DATASETS, dataset_status, get_dataset
from course_utils.kaggle import KaggleError, download_competition_file

PLANET = "planet-understanding-the-amazon-from-space"
SECRET = "0123456789abcdef-not-a-real-key"


@pytest.fixture
def kaggle_api(tmp_path, monkeypatch):
    """The real KaggleApi class, reading its credentials from tmp_path/home/.kaggle only."""
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for key in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(key)
    with contextlib.redirect_stdout(io.StringIO()):  # `import kaggle` prints a sign-in help without credentials
        from kaggle.api.kaggle_api_extended import KaggleApi
    monkeypatch.setattr(KaggleApi, "config", str(home / ".kaggle" / "kaggle.json"))
    return KaggleApi


@pytest.fixture
def signed_in(kaggle_api):
    """A private kaggle.json holding a (fake) key: the client signs in without the network."""
    config = Path(kaggle_api.config)
    config.write_text(json.dumps({"username": "student", "key": SECRET}))
    config.chmod(0o600)
    return kaggle_api


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status} Client Error for url: https://www.kaggle.com/api/v1/...", response=response)


def fake_download(monkeypatch, api, outcomes: dict):
    """Make competition_download_file raise outcomes[name] if it is an error, else write it as that file name.
    Returns the list of names asked for."""
    asked = []

    def download(self, competition, file_name, path=None, force=False, quiet=False):
        asked.append(file_name)
        outcome = outcomes[file_name]
        if isinstance(outcome, Exception):
            raise outcome
        Path(path, outcome[0]).write_bytes(outcome[1])

    monkeypatch.setattr(api, "competition_download_file", download)
    return asked


def test_missing_credentials_say_where_to_get_and_put_the_token(kaggle_api, tmp_path, capsys):
    config = Path(kaggle_api.config)
    with pytest.raises(KaggleError) as err:
        download_competition_file(PLANET, ["train_v2.csv"], tmp_path / "downloads")
    assert str(err.value) == (
        "Kaggle needs your API credentials to download the competition's data, and none were found.\n"
        "  1. Sign in to Kaggle, open https://www.kaggle.com/settings -> API -> \"Create New Token\".\n"
        f"  2. Save the kaggle.json it gives you as {config} and make it private:\n"
        f"       mkdir -p {config.parent} && mv ~/Downloads/kaggle.json {config} && chmod 600 {config}\n"
        "     (or save the token as ~/.kaggle/access_token, chmod 600; or set KAGGLE_USERNAME and KAGGLE_KEY,\n"
        "     or KAGGLE_API_TOKEN, in the environment).\n"
        "  3. Run this again.")
    assert capsys.readouterr().out == ""  # the client's own help text (and SystemExit) are replaced


def test_http_403_says_to_accept_the_competition_rules(signed_in, tmp_path, monkeypatch, capsys):
    fake_download(monkeypatch, signed_in, {"train-jpg.tar.7z": http_error(403)})
    with pytest.raises(KaggleError) as err:
        download_competition_file(PLANET, ["train-jpg.tar.7z"], tmp_path)
    assert str(err.value) == (
        f"Kaggle refused to send train-jpg.tar.7z from the competition '{PLANET}' (HTTP 403 Forbidden): "
        "Kaggle only lets you download a competition's data after you accept its rules.\n"
        f"  Open https://www.kaggle.com/c/{PLANET}/rules , sign in with the account your token belongs to, "
        "click \"I Understand and Accept\", then run this again.")
    assert SECRET not in str(err.value) + "".join(capsys.readouterr())


def test_http_401_says_the_token_is_wrong_without_showing_it(signed_in, tmp_path, monkeypatch, capsys):
    fake_download(monkeypatch, signed_in, {"train_v2.csv": http_error(401)})
    with pytest.raises(KaggleError) as err:
        download_competition_file(PLANET, ["train_v2.csv"], tmp_path)
    assert str(err.value) == (
        f"Kaggle rejected your credentials (HTTP 401 Unauthorized) while downloading train_v2.csv: the token in "
        f"{signed_in.config} (or in ~/.kaggle/access_token or the KAGGLE_* environment variables) is wrong or "
        "expired. Create a new one at https://www.kaggle.com/settings -> API -> \"Create New Token\", replace "
        "the old one, and run this again.")
    assert SECRET not in str(err.value) + "".join(capsys.readouterr())


def test_a_renamed_file_is_fetched_under_its_other_name(signed_in, tmp_path, monkeypatch, fsynced):
    asked = fake_download(monkeypatch, signed_in, {"train_v2.csv": http_error(404),
                                                  "train_v2.csv/train_v2.csv": ("train_v2.csv.zip", b"zip")})
    path = download_competition_file(PLANET, ["train_v2.csv", "train_v2.csv/train_v2.csv"], tmp_path)
    assert asked == ["train_v2.csv", "train_v2.csv/train_v2.csv"]
    assert path == tmp_path / "train_v2.csv.zip" and path.read_bytes() == b"zip"
    assert list((tmp_path / ".kaggle").iterdir()) == []  # nothing half-done left in the staging folder
    assert fsynced(path)  # on the disk before it left the staging folder


def test_a_removed_file_lists_what_the_competition_has(signed_in, tmp_path, monkeypatch):
    fake_download(monkeypatch, signed_in, {"train-jpg.tar.7z": http_error(404)})
    listing = SimpleNamespace(files=[SimpleNamespace(name=n) for n in ["train_v2.csv", "Kaggle-planet.torrent"]])
    monkeypatch.setattr(signed_in, "competition_list_files", lambda self, competition, page_size=20: listing)
    with pytest.raises(KaggleError) as err:
        download_competition_file(PLANET, ["train-jpg.tar.7z"], tmp_path)
    assert str(err.value) == (
        f"Kaggle has no file 'train-jpg.tar.7z' in the competition '{PLANET}' (HTTP 404): it was renamed or "
        "removed. The competition has these files now: Kaggle-planet.torrent, train_v2.csv.\n"
        f"Download the file by hand from https://www.kaggle.com/c/{PLANET}/data and put it in {tmp_path}/ "
        "(zipped or not); the next run uses it as it is. Please report the new name too.")


def test_a_failing_listing_does_not_hide_the_404(signed_in, tmp_path, monkeypatch):
    fake_download(monkeypatch, signed_in, {"a.csv": http_error(404)})

    def listing_fails(self, competition, page_size=20):
        raise http_error(403)

    monkeypatch.setattr(signed_in, "competition_list_files", listing_fails)
    with pytest.raises(KaggleError, match=r"\(Listing the competition's files failed too: HTTPError.\)"):
        download_competition_file(PLANET, ["a.csv"], tmp_path)


def test_a_key_file_others_can_read_gets_a_chmod_warning(signed_in, tmp_path, monkeypatch):
    Path(signed_in.config).chmod(0o644)
    fake_download(monkeypatch, signed_in, {"a.csv": ("a.csv", b"x")})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        download_competition_file(PLANET, ["a.csv"], tmp_path)
    messages = [str(w.message) for w in caught if "chmod" in str(w.message)]
    assert messages == [f"{signed_in.config} holds your Kaggle key and other users of this machine can read it: "
                        f"run  chmod 600 {signed_in.config}"]


def test_without_the_kaggle_package_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", None)
    with pytest.raises(KaggleError, match=r"needs the `kaggle` package .*pip install -r requirements.txt"):
        download_competition_file(PLANET, ["a.csv"], tmp_path)


def planet_files(folder: Path) -> dict[str, Path]:
    """Planet's two Kaggle files, as Kaggle serves them: train-jpg.tar.7z and a zipped train_v2.csv."""
    tar = folder / "train-jpg.tar"
    with tarfile.open(tar, "w") as t:
        for i in range(3):
            info = tarfile.TarInfo(f"train-jpg/train_{i}.jpg")
            info.size = 4
            t.addfile(info, io.BytesIO(b"jpeg"))
    with py7zr.SevenZipFile(folder / "train-jpg.tar.7z", "w") as z:
        z.write(tar, "train-jpg.tar")
    with zipfile.ZipFile(folder / "train_v2.csv.zip", "w") as zf:
        zf.writestr("train_v2.csv", "image_name,tags\ntrain_0,clear primary\n")
    return {"train-jpg.tar.7z": folder / "train-jpg.tar.7z", "train_v2.csv": folder / "train_v2.csv.zip"}


def test_planet_full_mode_installs_the_lessons_layout(signed_in, tmp_path, monkeypatch):
    (tmp_path / "kaggle_side").mkdir()
    served = planet_files(tmp_path / "kaggle_side")
    fake_download(monkeypatch, signed_in, {name: (p.name, p.read_bytes()) for name, p in served.items()})
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))

    path = get_dataset("planet", "full")

    assert path == tmp_path / "data" / "planet"
    assert (path / "train_v2.csv").read_text().startswith("image_name,tags")
    assert sorted(p.name for p in (path / "train-jpg").iterdir()) == ["train_0.jpg", "train_1.jpg", "train_2.jpg"]
    assert not list(path.rglob("*.tar"))  # the tar inside the 7z is gone once extracted
    records = json.loads((tmp_path / "data" / "checksums.json").read_text())
    assert sorted(records) == [s.url for s in DATASETS["planet"].sources]
    assert dataset_status("planet") == "complete"


def test_planet_by_hand_the_404_names_the_downloads_folder_and_the_unpacked_folder(signed_in, tmp_path, monkeypatch):
    fake_download(monkeypatch, signed_in, {"train-jpg.tar.7z": http_error(404)})
    monkeypatch.setattr(signed_in, "competition_list_files",
                        lambda self, competition, page_size=20: (_ for _ in ()).throw(http_error(500)))
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    with pytest.raises(KaggleError) as err:
        get_dataset("planet", "full")
    downloads = tmp_path / "data" / "downloads"
    assert f"and put it in {downloads}/ (zipped or not)" in str(err.value)
    assert f"Put the folder there as {downloads / 'train-jpg'}/ instead." in str(err.value)


def test_no_network_says_to_check_the_connection_not_a_traceback(signed_in, tmp_path, monkeypatch):
    fake_download(monkeypatch, signed_in,
                  {"train_v2.csv": requests.ConnectionError("Failed to resolve 'api.kaggle.com'")})
    with pytest.raises(KaggleError, match=r"Could not reach Kaggle to download train_v2.csv \(ConnectionError\)\. "
                                          r"Check the internet connection"):
        download_competition_file(PLANET, ["train_v2.csv"], tmp_path)
