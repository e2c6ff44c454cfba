"""errors: the exceptions of getting the data, one family, so that catching DatasetError catches them all."""
from __future__ import annotations

import pytest

from course_utils.errors import ChecksumError, DatasetError, DownloadError, UnsafeArchiveError


@pytest.mark.parametrize("cls", [DownloadError, ChecksumError, UnsafeArchiveError])
def test_every_data_error_is_a_dataset_error(cls):
    assert issubclass(cls, DatasetError) and issubclass(cls, RuntimeError)


def test_a_download_error_keeps_the_status_that_refused_it():
    err = DownloadError("Downloading x failed: 404", status=404)
    assert err.status == 404 and str(err) == "Downloading x failed: 404"
    assert ChecksumError("not the expected file").status is None
