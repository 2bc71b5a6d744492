"""Expired URLs, broken streams and removed outputs: re-fetch, retry, or a clear stop."""

import pytest

from archiver.errors import OutputsRemoved

MODEL = "black-forest-labs/flux-schnell"


def test_expired_first_urls_are_recovered_by_a_refetch(run_flow, emulator):
    """403 on the first URLs re-fetches the prediction (a GET) and downloads from fresh URLs."""
    emulator.set_faults(first_urls_expired=True)
    summary = run_flow(MODEL, {"prompt": "expired", "num_outputs": 3})
    stats = emulator.stats()
    assert summary.refetches == 1, "one shared re-fetch serves all three files"
    assert sorted(d["status"] for d in stats.downloads) == [200] * 3 + [403] * 3
    assert stats.creates_accepted == 1 and len(summary.files) == 3


def test_connection_dropped_mid_stream_is_retried(run_flow, emulator):
    """A stream cut off halfway is discarded and fetched again, whole."""
    emulator.set_faults(drop_downloads=1)
    summary = run_flow("emulator/large-file", {"size_bytes": 3_000_000})
    assert summary.files[0].size == 3_000_000 and summary.refetches >= 1


def test_truncated_then_expired_download(run_flow, emulator):
    """A body shorter than Content-Length is retried; the stale URL is replaced, not reused."""
    emulator.set_faults(truncate_downloads=1, url_ttl_seconds=0.5)
    summary = run_flow("emulator/large-file", {"size_bytes": 2_000_000, "seed": 5})
    import hashlib

    from emulator import large_file_chunks

    expected = hashlib.sha256(b"".join(large_file_chunks(5, 0, 2_000_000))).hexdigest()
    assert summary.files[0].sha256 == expected and summary.refetches >= 1


def test_outputs_removed_fails_clearly(run_flow, emulator):
    """Data removed before download: one clear error naming the cause, and no second payment."""
    emulator.set_faults(remove_data_after_success=1)
    with pytest.raises(OutputsRemoved, match="removed by Replicate"):
        run_flow(MODEL, {"prompt": "too late"})
    assert emulator.stats().creates_accepted == 1


def test_outputs_removed_with_rerun_pays_once_more(run_flow, emulator):
    """--on-data-removed rerun creates exactly one new prediction and archives it."""
    emulator.set_faults(remove_data_after_success=1)
    summary = run_flow(MODEL, {"prompt": "rerun me"}, on_data_removed="rerun")
    assert summary.predictions_created == 2 and emulator.stats().creates_accepted == 2


def test_delivery_5xx_is_retried(run_flow, emulator):
    """503s from the delivery host are transient: retried until the file arrives."""
    emulator.set_faults(fail_downloads=2)
    summary = run_flow(MODEL, {"prompt": "flaky cdn"})
    assert len(summary.files) == 1
