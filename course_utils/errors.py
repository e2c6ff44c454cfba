"""The errors of getting the data (download.py, fetch.py, archives.py, mirror.py): each message says what to do."""
from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(RuntimeError):
    """A dataset could not be installed; the message says what to do."""


class DownloadError(DatasetError):
    """A download failed for good: the server refused it, or it kept failing after the retries."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # the HTTP status that refused it, if that was the reason


class ChecksumError(DownloadError):
    """A file is not the expected one (its sha256 differs)."""


class UnsafeArchiveError(DatasetError):
    """An archive member would land outside the extraction folder."""
