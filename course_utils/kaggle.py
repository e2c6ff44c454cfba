"""Kaggle competition files (the Planet lesson's data) through the official `kaggle` client.

The client's own failures are terse (a help text and SystemExit without credentials, a bare
"403 Forbidden" before the rules are accepted, "404" after a file moved), so each is turned into
a message saying what to do. No message ever contains the API key.
"""
from __future__ import annotations

import contextlib
import io
import os
import stat
import warnings
from pathlib import Path
from typing import Sequence

from .persist import commit_file

__all__ = ["KaggleError"]

SETTINGS_URL = "https://www.kaggle.com/settings"
STAGING = ".kaggle"  # the client writes (and resumes) here; finished files move out, so none looks complete early


class KaggleError(RuntimeError):
    """Kaggle refused or could not serve a file; the message says what to do."""


def download_competition_file(competition: str, names: Sequence[str], folder: Path,
                              unpacked: str | None = None) -> Path:
    """Download a file of a Kaggle competition into `folder` and return its path.

    `names[0]` is the file's name; the others are names Kaggle has used for it before (competition
    files get renamed). The client may save it zipped (`train_v2.csv.zip`). A partial download
    stays in `folder/.kaggle/`, where the next call resumes it. `unpacked` names the folder the file
    unpacks to, which the caller also accepts in `folder` (the 404 message says so).
    """
    api = _authenticated_api()
    staging = Path(folder) / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            api.competition_download_file(competition, name, path=str(staging), quiet=False)
        except Exception as e:  # kaggle 2.x raises requests' HTTPError; older clients an ApiException
            status = _http_status(e)
            if status == 404:
                continue
            if status is None and isinstance(e, OSError):  # requests' ConnectionError, Timeout: no answer at all
                raise KaggleError(f"Could not reach Kaggle to download {name} ({type(e).__name__}). Check the internet "
                                  f"connection and run again, or download the file by hand from "
                                  f"https://www.kaggle.com/c/{competition}/data into {folder}/.") from None
            if status is None:
                raise
            raise KaggleError(_refusal_message(status, competition, name, api)) from None
        return _move_out(staging, name, Path(folder))
    raise KaggleError(_not_found_message(api, competition, names, Path(folder), unpacked))


def _authenticated_api():
    """The official client, signed in. Its help text (printed on stdout) is replaced by our message."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # `import kaggle` tries to sign in and prints help
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError as e:
        raise KaggleError(f"Downloading from Kaggle needs the `kaggle` package ({e}). Install the course's "
                          "pinned requirements: pip install -r requirements.txt") from None
    except SystemExit:  # some kaggle versions exit at import when no credentials are found
        raise KaggleError(_credentials_message(Path("~/.kaggle/kaggle.json").expanduser())) from None
    api = KaggleApi()
    _warn_if_readable_by_others(Path(api.config))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            api.authenticate()
    except SystemExit:
        raise KaggleError(_credentials_message(Path(api.config))) from None
    return api


def _credentials_message(config: Path) -> str:
    return (
        "Kaggle needs your API credentials to download the competition's data, and none were found.\n"
        f"  1. Sign in to Kaggle, open {SETTINGS_URL} -> API -> \"Create New Token\".\n"
        f"  2. Save the kaggle.json it gives you as {config} and make it private:\n"
        f"       mkdir -p {config.parent} && mv ~/Downloads/kaggle.json {config} && chmod 600 {config}\n"
        "     (or save the token as ~/.kaggle/access_token, chmod 600; or set KAGGLE_USERNAME and KAGGLE_KEY,\n"
        "     or KAGGLE_API_TOKEN, in the environment).\n"
        "  3. Run this again.")


def _warn_if_readable_by_others(config: Path) -> None:
    if os.name != "nt" and config.is_file() and config.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(f"{config} holds your Kaggle key and other users of this machine can read it: "
                      f"run  chmod 600 {config}", stacklevel=3)


def _http_status(error: Exception) -> int | None:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None) or getattr(error, "status", None)
    return int(status) if isinstance(status, int) else None


def _refusal_message(status: int, competition: str, name: str, api) -> str:
    if status == 403:
        return (f"Kaggle refused to send {name} from the competition '{competition}' (HTTP 403 Forbidden): "
                "Kaggle only lets you download a competition's data after you accept its rules.\n"
                f"  Open https://www.kaggle.com/c/{competition}/rules , sign in with the account your token "
                "belongs to, click \"I Understand and Accept\", then run this again.")
    if status == 401:
        return (f"Kaggle rejected your credentials (HTTP 401 Unauthorized) while downloading {name}: the token "
                f"in {api.config} (or in ~/.kaggle/access_token or the KAGGLE_* environment variables) is wrong "
                f"or expired. Create a new one at {SETTINGS_URL} -> API -> \"Create New Token\", replace the old "
                "one, and run this again.")
    return (f"Kaggle answered HTTP {status} for {name} from the competition '{competition}'. "
            "If Kaggle is having trouble, wait a little and run this again.")


def _not_found_message(api, competition: str, names: Sequence[str], folder: Path, unpacked: str | None = None) -> str:
    tried = ", ".join(repr(n) for n in names)
    by_hand = f"\n(Already unpacked it? Put the folder there as {folder / unpacked}/ instead.)" if unpacked else ""
    return (f"Kaggle has no file {tried} in the competition '{competition}' (HTTP 404): it was renamed or "
            f"removed. {_listing(api, competition)}\n"
            f"Download the file by hand from https://www.kaggle.com/c/{competition}/data and put it in "
            f"{folder}/ (zipped or not); the next run uses it as it is. Please report the new name too.{by_hand}")


def _listing(api, competition: str) -> str:
    try:
        files = api.competition_list_files(competition, page_size=200).files
    except Exception as e:  # the listing only helps the message; its own failure must not hide the 404
        return f"(Listing the competition's files failed too: {type(e).__name__}.)"
    return "The competition has these files now: " + ", ".join(sorted(f.name for f in files)) + "."


def _move_out(staging: Path, name: str, folder: Path) -> Path:
    """Move the finished download (named after the file, maybe with .zip added) from staging to folder."""
    base = name.rsplit("/", 1)[-1]
    for candidate in (base, base + ".zip"):
        if (staging / candidate).is_file():
            return commit_file(staging / candidate, folder / candidate)
    raise KaggleError(f"The Kaggle client reported success for {name} but wrote no {base} or {base}.zip "
                      f"in {staging}. Run this again; if it persists, download the file by hand into {folder}/.")
