"""Azure Blob Storage (az://) on a real Azurite: whole blobs or none, outages, SAS links, bad
input in one line before anything is paid, credentials from the environment only."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid

import httpx
import pytest

from archiver import errors, storage
from archiver.manifest import Manifest
from tests.blob_runs import assert_identical_runs_archive_once
from tests.blobservers import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    AzuriteBlob,
    EmulatorUnavailable,
    assert_read_back_catches_corruption,
)
from tests.s3servers import unused_endpoint

pytestmark = pytest.mark.cloud

MODEL = "black-forest-labs/flux-schnell"
PART = 5 * 2**20


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """One Azurite for this file, its data on disk (a restart keeps it), on a free port."""
    server = AzuriteBlob(tmp_path_factory.mktemp("azurite"))
    try:
        server.start(timeout=60)
    except EmulatorUnavailable as exc:  # `make test` installs it: a broken install fails
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def container(azurite, monkeypatch) -> str:
    """A fresh container, Azurite up, and its connection string the only Azure setting."""
    azurite.start(timeout=60)
    for name in (
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_STORAGE_CLIENT_ID",
        "AZURE_STORAGE_ANON",
        "ARCHIVER_CACHE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return azurite.make_container(f"t-{uuid.uuid4().hex[:12]}")


def _check_archived(azurite, container: str, prefix: str, summary) -> Manifest:
    """manifest.json and every file it lists are in the container, byte-exact."""
    key = summary.manifest_url.removeprefix(f"az://{container}/")
    manifest = Manifest.from_json(azurite.read(container, key))
    assert manifest.files
    for item in manifest.files:
        data = azurite.read(container, f"{prefix}/{item.path}")
        assert len(data) == item.size and hashlib.sha256(data).hexdigest() == item.sha256
    return manifest


def test_run_archives_byte_exact_blobs_signed_links_and_a_cached_rerun(
    run_flow, emulator, azurite, container, archive_env, monkeypatch
):
    """A flow run to az:// lands every file and the manifest byte-exact and the cache in the
    container; ARCHIVER_PRESIGN_SECONDS gives SAS links Azurite serves; the rerun is cached;
    the account key reaches no manifest or cache record."""

    dest = f"az://{container}/runs"
    input = {"prompt": "a lighthouse", "num_outputs": 2, "seed": 3}
    first = run_flow(MODEL, input, dest=dest)
    assert first.manifest_url.startswith(f"{dest}/")
    _check_archived(azurite, container, "runs", first)
    names = azurite.blobs(container)
    assert not [n for n in names if ".tmp-" in n]
    [record] = [n for n in names if n.startswith("runs/.archiver/cache/")]
    assert json.loads(azurite.read(container, record))["state"] == "archived"
    for name in names:
        assert "AccountKey" not in azurite.read(container, name).decode("latin-1")

    links = storage.open_destination(dest).signed_links((f.url for f in first.files), 60)
    assert set(links) == {f.url for f in first.files}
    for f in first.files:
        assert hashlib.sha256(httpx.get(links[f.url]).content).hexdigest() == f.sha256
        assert httpx.get(links[f.url].split("?")[0]).status_code in (401, 403, 404)

    again = run_flow(MODEL, input, dest=dest)
    assert again.cached and emulator.stats().creates_accepted == 1


def test_a_stream_broken_mid_file_leaves_no_blob(container, azurite, tmp_path, fail_source_after):
    """A source failing between staged blocks leaves no blob at the final name (its blocks stay
    uncommitted: Azure has no call to drop them); the next put stores the whole file and its
    commit drops them."""
    dest = storage.open_destination(f"az://{container}/p")
    data = hashlib.shake_256(b"azure").digest(3 * PART // 2)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    fail_source_after(PART + 1000)
    with pytest.raises(errors.StorageError, match="injected failure"):
        storage.put_file_atomic(dest, src, dest.path("big.bin"), part_size=2**20)
    assert azurite.blobs(container) == {}
    blob = azurite.client().get_blob_client(container, "p/big.bin")
    assert not blob.exists()  # its staged blocks stay uncommitted (invisible) until the
    assert _uncommitted(blob)  # next commit to the name, or Azure's 7 days: docs/storage-azure.md
    storage.put_file_atomic(dest, src, dest.path("big.bin"), part_size=2**20)
    assert azurite.read(container, "p/big.bin") == data
    assert _uncommitted(blob) == []


def _uncommitted(blob) -> list:
    """The blob's uncommitted blocks ([] when the name holds none, committed or not)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        return list(blob.get_block_list("uncommitted")[1])
    except ResourceNotFoundError:
        return []


def test_identical_runs_started_together_archive_once(emulator, archive_env, azurite, container):
    """Two processes of one input released together to az://: one create (the request's lock
    holds the other off while the first waits out a 429), one manifest, the cache in the
    container."""
    [summary, _] = assert_identical_runs_archive_once(
        emulator,
        f"az://{container}/twice",
        lambda: azurite.blobs(container),
        lambda n: azurite.read(container, n),
    )
    _check_archived(azurite, container, "twice", summary)


def test_outage_mid_upload_then_a_rerun_pays_nothing_more(
    run_flow, emulator, azurite, container, archive_env, fail_source_after, monkeypatch
):
    """Azurite stops mid-upload: the run fails with StorageUnavailable in one line and leaves no
    blob at the final name; restarted on the same data, a rerun archives the staged file with no
    new prediction and no new download."""
    monkeypatch.setenv("ARCHIVER_PART_SIZE", str(PART))
    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "0")
    dest = f"az://{container}/big"
    input = {"size_bytes": 3 * PART - 1000}
    fired = fail_source_after(PART + 1000, action=azurite.stop)
    try:
        with pytest.raises(errors.StorageUnavailable) as failure:
            run_flow("emulator/large-file", input, dest=dest)
    finally:
        azurite.start(timeout=60)
    assert fired and fired[0].fired and "\n" not in str(failure.value)
    assert not [n for n in azurite.blobs(container) if n.endswith(".bin") or "manifest" in n]
    summary = run_flow("emulator/large-file", input, dest=dest)
    stats = emulator.stats()
    assert stats.creates_accepted == 1 and len(stats.downloads) == 1
    _check_archived(azurite, container, "big", summary)


def test_a_missing_container_is_one_line_before_anything_is_paid(cli, emulator, container):
    """`python -m flows run` to a container that does not exist: exit 1 with one line naming the
    destination and the settings to check; no prediction created."""
    dest = f"az://no-{container}/x"
    done = cli("run", MODEL, "-i", "prompt=x", "--dest", dest)
    assert done.returncode == 1, done.stderr[-2000:]
    [line] = [ln for ln in done.stderr.splitlines() if "AZURE_STORAGE_CONNECTION_STRING" in ln]
    assert f"no-{container}" in line and "AccountKey" not in done.stderr
    assert emulator.stats().creates_accepted == 0


@pytest.mark.parametrize("fault", ["wrong-key", "no-credentials"])
def test_bad_credentials_fail_in_one_line_before_anything_is_paid(
    run_flow, emulator, azurite, container, fault, monkeypatch
):
    """A wrong account key, or no credentials at all: one line naming the destination and the
    settings to check, without the key; no prediction created."""
    if fault == "wrong-key":
        wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
        monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    else:
        monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    dest = f"az://{container}/x"
    with pytest.raises(errors.PermanentError) as failure:
        run_flow(MODEL, {"prompt": "x"}, dest=dest)
    message = str(failure.value)
    assert "\n" not in message and container in message and "AccountKey" not in message
    assert "AZURE_STORAGE_CONNECTION_STRING" in message
    assert emulator.stats().creates_accepted == 0


def test_account_name_and_key_from_the_environment_archive_and_never_show_the_key(
    run_flow, emulator, azurite, container, archive_env, monkeypatch, caplog
):
    """AZURE_STORAGE_ACCOUNT_NAME + AZURE_STORAGE_ACCOUNT_KEY (no connection string), with the
    endpoint as the non-secret `account_url` flow parameter: a run archives byte-exact, and the
    key's value reaches no log record."""
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT)
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY)
    caplog.set_level(logging.DEBUG)
    dest = f"az://{container}/env"
    options = {"account_url": azurite.endpoint}
    summary = run_flow(MODEL, {"prompt": "env key", "seed": 5}, dest=dest, storage_options=options)
    _check_archived(azurite, container, "env", summary)
    assert caplog.records and AZURITE_KEY not in caplog.text


@pytest.mark.parametrize("option", ["account_key", "connection_string", "sas_token", "credential"])
def test_a_secret_in_the_flow_parameter_is_refused_before_anything_is_paid(
    run_flow, emulator, container, monkeypatch, caplog, option
):
    """A secret in a flow's `storage_options` parameter (Prefect stores and shows it): one line
    naming the option and where credentials go, its value in no log; no prediction created."""
    secret = f"archiver-parameter-secret-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(errors.ConfigurationError) as failure:
        run_flow(
            MODEL, {"prompt": "x"}, dest=f"az://{container}/x", storage_options={option: secret}
        )
    message = str(failure.value)
    assert "\n" not in message and option in message and "environment" in message
    assert secret not in message and secret not in caplog.text
    assert emulator.stats().creates_accepted == 0


def test_azurite_down_fails_in_one_line_before_anything_is_paid(
    run_flow, emulator, azurite, container, monkeypatch
):
    """A connection string whose endpoint nothing listens on: one line naming the destination
    and the setting, without the key; no prediction created."""
    down = azurite.connection_string.replace(f"http://127.0.0.1:{azurite.port}", unused_endpoint())
    assert down != azurite.connection_string
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", down)
    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "0")
    dest = f"az://{container}/x"
    with pytest.raises(errors.StorageUnavailable) as failure:
        run_flow(MODEL, {"prompt": "x"}, dest=dest)
    message = str(failure.value)
    assert "\n" not in message and dest in message and "AccountKey" not in message
    assert message.count("AZURE_STORAGE_CONNECTION_STRING") == 1, message
    assert emulator.stats().creates_accepted == 0


def test_verify_read_back_catches_same_size_corruption(container, azurite, tmp_path):
    """Size-only verification passes a same-size corrupted blob; read_back=True catches it."""
    dest = storage.open_destination(f"az://{container}")
    blob = azurite.client().get_blob_client(container, "f.bin")
    assert_read_back_catches_corruption(
        dest, tmp_path, lambda garbage: blob.upload_blob(garbage, overwrite=True)
    )
