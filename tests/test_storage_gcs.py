"""Google Cloud Storage (gs://) on a real gcp-storage-emulator: whole objects or none, outages,
bad input in one line before anything is paid, and no credential look-up stalling a run."""

from __future__ import annotations

import hashlib
import json
import uuid
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from archiver import errors, storage
from archiver.manifest import Manifest
from tests.blob_runs import assert_identical_runs_archive_once
from tests.blobservers import EmulatorUnavailable, GcsEmulator, assert_read_back_catches_corruption
from tests.failing_hosts import down_for_good, url_of
from tests.loopback import serving
from tests.s3servers import unused_endpoint

pytestmark = pytest.mark.cloud

MODEL = "black-forest-labs/flux-schnell"
PART = 5 * 2**20


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """One emulator for this file, its data on disk (a restart keeps it), on a free port."""
    server = GcsEmulator(tmp_path_factory.mktemp("gcs"))
    try:
        server.start()
    except EmulatorUnavailable as exc:  # a dev dependency: a broken install fails, never skips
        pytest.fail(str(exc))
    yield server
    server.stop()


@pytest.fixture
def bucket(gcs, monkeypatch) -> str:
    """A fresh bucket, the emulator up, and no Google credentials from the environment."""
    gcs.start()
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "ARCHIVER_CACHE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.host)
    return gcs.make_bucket(f"t-{uuid.uuid4().hex[:12]}")


def _check_archived(gcs, bucket: str, prefix: str, summary) -> Manifest:
    """manifest.json and every file it lists are in the bucket, byte-exact."""
    key = summary.manifest_url.removeprefix(f"gs://{bucket}/")
    manifest = Manifest.from_json(gcs.read(bucket, key))
    assert manifest.files
    for item in manifest.files:
        data = gcs.read(bucket, f"{prefix}/{item.path}")
        assert len(data) == item.size and hashlib.sha256(data).hexdigest() == item.sha256
    return manifest


def test_run_archives_byte_exact_objects_and_a_rerun_is_cached(
    run_flow, emulator, gcs, bucket, archive_env
):
    """A flow run to gs:// lands every file and the manifest byte-exact, the cache (and its
    records) in the bucket; the rerun is a cache hit; no temp object is left anywhere."""
    dest = f"gs://{bucket}/runs"
    input = {"prompt": "a lighthouse", "num_outputs": 2, "seed": 3}
    first = run_flow(MODEL, input, dest=dest)
    assert first.manifest_url.startswith(f"{dest}/")
    _check_archived(gcs, bucket, "runs", first)
    names = gcs.objects(bucket)
    assert not [n for n in names if ".tmp-" in n]
    [record] = [n for n in names if n.startswith("runs/.archiver/cache/")]
    assert json.loads(gcs.read(bucket, record))["state"] == "archived"
    again = run_flow(MODEL, input, dest=dest)
    assert again.cached and emulator.stats().creates_accepted == 1


def test_identical_runs_started_together_archive_once(emulator, archive_env, gcs, bucket):
    """Two processes of one input released together to gs://: one create (the request's lock
    holds the other off while the first waits out a 429), one manifest, the cache in the bucket."""
    [summary, _] = assert_identical_runs_archive_once(
        emulator, f"gs://{bucket}/twice", lambda: gcs.objects(bucket), lambda n: gcs.read(bucket, n)
    )
    _check_archived(gcs, bucket, "twice", summary)


def test_a_stream_broken_mid_file_leaves_no_object(bucket, gcs, tmp_path, fail_source_after):
    """A source failing mid-way through a resumable upload leaves nothing at the final key (the
    session is never finalized); the next put stores the whole file."""
    dest = storage.open_destination(f"gs://{bucket}/p")
    data = hashlib.shake_256(b"gcs").digest(3 * PART // 2)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    fail_source_after(PART + 1000)
    with pytest.raises(errors.StorageError, match="injected failure"):
        storage.put_file_atomic(dest, src, dest.path("big.bin"), part_size=2**20)
    assert gcs.objects(bucket) == {}
    storage.put_file_atomic(dest, src, dest.path("big.bin"), part_size=2**20)
    assert gcs.read(bucket, "p/big.bin") == data


def test_outage_mid_upload_then_a_rerun_pays_nothing_more(
    run_flow, emulator, gcs, bucket, archive_env, fail_source_after, monkeypatch
):
    """The emulator stops mid-upload: the run fails with StorageUnavailable in one line and
    leaves no object at the final key; restarted on the same data, a rerun archives the staged
    file with no new prediction and no new download."""
    monkeypatch.setenv("ARCHIVER_PART_SIZE", str(PART))
    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "0")
    dest = f"gs://{bucket}/big"
    input = {"size_bytes": 3 * PART - 1000}
    fired = fail_source_after(PART + 1000, action=gcs.stop)
    try:
        with pytest.raises(errors.StorageUnavailable) as failure:
            run_flow("emulator/large-file", input, dest=dest)
    finally:
        gcs.start()
    assert fired and fired[0].fired and "\n" not in str(failure.value)
    assert not [n for n in gcs.objects(bucket) if n.endswith(".bin") or "manifest" in n]
    downloads = len(emulator.stats().downloads)
    summary = run_flow("emulator/large-file", input, dest=dest)
    stats = emulator.stats()
    assert stats.creates_accepted == 1 and len(stats.downloads) == downloads == 1
    _check_archived(gcs, bucket, "big", summary)


def test_a_missing_bucket_is_one_line_before_anything_is_paid(cli, emulator, bucket):
    """`python -m flows run` to a bucket that does not exist: exit 1 with one line naming the
    destination and the settings to check; no prediction created."""
    dest = f"gs://no-{bucket}/x"
    done = cli("run", MODEL, "-i", "prompt=x", "--dest", dest)
    assert done.returncode == 1, done.stderr[-2000:]
    [line] = [ln for ln in done.stderr.splitlines() if f"no-{bucket}" in ln]
    assert "STORAGE_EMULATOR_HOST" in line
    assert emulator.stats().creates_accepted == 0


def test_an_emulator_that_is_down_fails_in_one_line_before_anything_is_paid(
    run_flow, emulator, bucket, monkeypatch
):
    """STORAGE_EMULATOR_HOST pointing where nothing listens: one line naming the destination and
    the setting, in seconds (no credential look-up, no gcsfs retries); no prediction created."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", unused_endpoint())
    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "0")
    dest = f"gs://{bucket}/x"
    with pytest.raises(errors.StorageUnavailable) as failure:
        run_flow(MODEL, {"prompt": "x"}, dest=dest)
    message = str(failure.value)
    assert "\n" not in message and dest in message and "STORAGE_EMULATOR_HOST" in message
    assert emulator.stats().creates_accepted == 0


def test_signed_links_with_a_service_account_key_and_none_without(bucket, gcs):
    """ARCHIVER_PRESIGN_SECONDS on gs://: a service-account key (generated here, never used to
    ask for a token) signs V4 links the emulator serves; anonymous access gives no link and no
    error."""

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    anon = storage.open_destination(f"gs://{bucket}/p")
    storage.write_bytes_atomic(anon, anon.path("x.bin"), b"signed bytes")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "archiver-signing-test-project",  # registered as a secret: unique
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "archiver@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{unused_endpoint()}/token",  # loopback: nothing may leave the machine
    }
    signer = storage.open_destination(f"gs://{bucket}/p", {"token": account})
    urls = [f"gs://{bucket}/p/x.bin"]
    [link] = signer.signed_links(urls, 60).values()
    assert link.startswith(f"{gcs.host}/{bucket}/p/x.bin?") and "X-Goog-Signature=" in link
    assert httpx.get(link).content == b"signed bytes"
    assert anon.signed_links(urls, 60) == {}


def _service_account(token_uri: str) -> dict[str, str]:
    """A service-account key generated here whose token requests go to `token_uri`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": f"archiver-wrong-{uuid.uuid4().hex[:8]}",
        "private_key_id": "wrong-key-id",
        "private_key": pem,
        "client_email": "archiver-wrong@test.iam.gserviceaccount.com",
        "client_id": "123456789",
        "token_uri": token_uri,
    }


class _Refuses401(BaseHTTPRequestHandler):
    """A token endpoint that refuses every key: 401 invalid_grant."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = b'{"error": "invalid_grant", "error_description": "wrong key (test)"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("token_endpoint", ["refuses-connections", "answers-401"])
def test_wrong_credentials_fail_in_one_line_before_anything_is_paid(
    run_flow, emulator, bucket, tmp_path, monkeypatch, token_endpoint
):
    """A service-account key file (given as this process's `token` option, as the CLI hands
    over a secret --storage-option) whose token request is refused or answered 401: one line
    naming the destination and the settings; no prediction created."""
    from contextlib import nullcontext

    from flows import settings as flow_settings

    monkeypatch.setenv("ARCHIVER_TASK_RETRIES", "0")
    with serving(_Refuses401) if token_endpoint == "answers-401" else nullcontext() as server:
        token_uri = f"{url_of(server) if server else unused_endpoint()}/token"
        keyfile = tmp_path / "wrong-key.json"
        keyfile.write_text(json.dumps(_service_account(token_uri)))
        monkeypatch.setattr(flow_settings, "_process_options", {"token": str(keyfile)})
        dest = f"gs://{bucket}/x"
        with pytest.raises(errors.ArchiverError) as failure:
            run_flow(MODEL, {"prompt": "x"}, dest=dest)
    message = str(failure.value)
    assert "\n" not in message and dest in message and message.count("`token`") == 1, message
    assert emulator.stats().creates_accepted == 0


def test_the_emulator_path_never_asks_the_metadata_server(
    run_flow, emulator, gcs, bucket, archive_env, monkeypatch
):
    """With STORAGE_EMULATOR_HOST and no `token` option, a whole run makes no request to the
    GCE metadata server (pointed at a loopback server counting requests), so no credential
    look-up can stall it."""
    from google.auth.compute_engine import _metadata

    with down_for_good() as metadata:
        host = url_of(metadata).removeprefix("http://")
        monkeypatch.setenv("GCE_METADATA_HOST", host)
        monkeypatch.setenv("GCE_METADATA_IP", host)
        monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", host)  # read once, at import
        summary = run_flow(MODEL, {"prompt": "metadata", "seed": 11}, dest=f"gs://{bucket}/m")
        _check_archived(gcs, bucket, "m", summary)
        assert sum(metadata.requests.values()) == 0, metadata.requests


def test_verify_read_back_catches_same_size_corruption(bucket, gcs, tmp_path):
    """Size-only verification passes a same-size corrupted object; read_back=True catches it."""
    dest = storage.open_destination(f"gs://{bucket}")

    def overwrite(garbage: bytes) -> None:
        httpx.post(
            f"{gcs.host}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": "f.bin"},
            content=garbage,
        ).raise_for_status()

    assert_read_back_catches_corruption(dest, tmp_path, overwrite)
