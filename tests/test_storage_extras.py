"""A backend whose filesystem package is not installed: one line naming the extra to install."""

from __future__ import annotations

import sys

import pytest

from archiver import errors, storage


@pytest.mark.parametrize(
    ("url", "package", "module", "extra"),
    [
        ("gs://some-bucket/x", "gcsfs", "gcs", "gcs"),
        ("az://some-container/x", "adlfs", "azure", "azure"),
    ],
)
def test_without_its_package_a_destination_names_the_extra(
    monkeypatch, url, package, module, extra
):
    """gcsfs / adlfs not importable: opening gs:// / az:// fails in one line naming
    `pip install 'replicate-archiver[EXTRA]'`."""
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules, f"archiver.storage.backends.{module}", raising=False)
    with pytest.raises(errors.ConfigurationError) as failure:
        storage.open_destination(url)
    message = str(failure.value)
    assert "\n" not in message and f"pip install 'replicate-archiver[{extra}]'" in message
