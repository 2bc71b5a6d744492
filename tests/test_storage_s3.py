"""archiver.storage on real S3 servers (moto in-process, SeaweedFS as a process) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from archiver import errors, storage
from archiver.storage import open_destination
from tests.s3servers import unused_endpoint

pytestmark = pytest.mark.s3

MiB = 2**20
PART = 5 * MiB  # S3's minimum part size


def _file(path: Path, size: int, seed: int = 1) -> tuple[Path, str]:
    """Write `size` pseudo-random bytes to `path`; return it with its sha256."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _get(server, bucket: str, key: str) -> bytes:
    """The object's bytes, read with boto3 directly."""
    return server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def test_s3_options_are_coerced_and_bounded(aws_env):
    """String storage options are coerced, secrets kept verbatim, client limits short by default."""
    dest = open_destination(
        "s3://bucket/prefix/",
        {
            "key": "AK",
            "secret": "0123",
            "region": "eu-west-3",
            "anon": "false",
            "connect_timeout": "7",
        },
    )
    fs = dest.fs
    assert (dest.root, dest.url) == ("bucket/prefix", "s3://bucket/prefix")
    assert dest.url_for(dest.path("a", "b.png")) == "s3://bucket/prefix/a/b.png"
    assert fs.secret == "0123" and fs.anon is False
    assert fs.client_kwargs["region_name"] == "eu-west-3"
    assert fs.config_kwargs["connect_timeout"] == 7 and fs.config_kwargs["read_timeout"] == 30
    assert fs.config_kwargs["retries"] == {"total_max_attempts": 1, "mode": "standard"}
    assert fs.retries == 1
    custom = open_destination(
        "s3://bucket", {"retries": "2", "config_kwargs.retries": '{"max_attempts": 0}'}
    )
    assert custom.fs.retries == 2
    assert custom.fs.config_kwargs["retries"] == {"max_attempts": 0, "mode": "standard"}


def test_s3_multipart_put_lands_whole(moto_s3, moto_bucket, tmp_path):
    """A 3-part upload (5 MiB parts) lands as one complete object and leaves no upload open."""
    src, digest = _file(tmp_path / "big.bin", 2 * PART + 12345)
    dest = open_destination(f"s3://{moto_bucket}/archive", moto_s3.storage_options())
    target = dest.path("pred", "big.bin")
    storage.put_file_atomic(dest, src, target, part_size=PART)
    assert _get(moto_s3, moto_bucket, "archive/pred/big.bin") == src.read_bytes()
    head = moto_s3.client().head_object(Bucket=moto_bucket, Key="archive/pred/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # really three parts
    assert moto_s3.multipart_uploads(moto_bucket) == []
    storage.verify_stored(dest, target, size=src.stat().st_size, sha256=digest, read_back=True)
    assert src.exists()


def test_s3_failure_mid_upload_leaves_nothing(moto_s3, moto_bucket, tmp_path, fail_source_after):
    """A source failing after the 2nd part leaves no object at the key and no multipart upload."""
    src, _ = _file(tmp_path / "big.bin", 3 * PART)
    dest = open_destination(f"s3://{moto_bucket}", moto_s3.storage_options())
    target = dest.path("big.bin")
    fail_source_after(2 * PART)
    with pytest.raises(errors.StorageError, match="injected failure"):
        storage.put_file_atomic(dest, src, target, part_size=PART, move=True)
    assert moto_s3.keys(moto_bucket) == []
    assert moto_s3.multipart_uploads(moto_bucket) == []
    assert not storage.exists(dest, target)
    assert src.exists()


def test_s3_put_aborts_stale_upload_of_same_key_only(moto_s3, moto_bucket, tmp_path):
    """A multipart put first aborts uploads of its own key left by a crashed attempt, not others."""
    client = moto_s3.client()
    client.create_multipart_upload(Bucket=moto_bucket, Key="big.bin")
    other = client.create_multipart_upload(Bucket=moto_bucket, Key="big.bin.other")["UploadId"]
    src, digest = _file(tmp_path / "big.bin", PART + 1)
    dest = open_destination(f"s3://{moto_bucket}", moto_s3.storage_options())
    storage.put_file_atomic(dest, src, dest.path("big.bin"), part_size=PART)
    storage.verify_stored(dest, dest.path("big.bin"), size=PART + 1, sha256=digest, read_back=True)
    assert [u["UploadId"] for u in moto_s3.multipart_uploads(moto_bucket)] == [other]


def test_s3_small_files_exists_and_remove_are_fresh(moto_s3, moto_bucket):
    """exists/read/size see a write and a delete at once, even after a listing of the prefix."""
    dest = open_destination(f"s3://{moto_bucket}/p", moto_s3.storage_options())
    path = dest.path("cache", "rec.json")
    assert storage.read_bytes(dest, path) is None
    assert not storage.exists(dest, path)
    dest.fs.ls(f"{moto_bucket}")  # a listing must not be served stale afterwards
    storage.write_bytes_atomic(dest, path, b'{"ok": true}')
    assert storage.exists(dest, path)
    assert storage.stored_size(dest, path) == 12
    assert storage.read_bytes(dest, path) == b'{"ok": true}'
    assert not storage.exists(dest, dest.path("cache"))  # a prefix is not a stored file
    storage.remove(dest, path)
    assert not storage.exists(dest, path)
    assert storage.read_bytes(dest, path) is None
    storage.remove(dest, path)


def test_s3_verify_read_back_catches_same_size_corruption(moto_s3, moto_bucket, tmp_path):
    """Size-only verification passes a same-size corrupted object; read_back=True catches it."""
    src, digest = _file(tmp_path / "f.bin", PART + 1)
    dest = open_destination(f"s3://{moto_bucket}", moto_s3.storage_options())
    target = dest.path("f.bin")
    storage.put_file_atomic(dest, src, target, part_size=PART)
    storage.verify_stored(dest, target, size=PART + 1, sha256=digest, read_back=True)
    moto_s3.client().put_object(Bucket=moto_bucket, Key="f.bin", Body=b"x" * (PART + 1))
    storage.verify_stored(dest, target, size=PART + 1, sha256=digest)
    with pytest.raises(errors.IntegrityError, match="sha256"):
        storage.verify_stored(dest, target, size=PART + 1, sha256=digest, read_back=True)
    with pytest.raises(errors.IntegrityError, match="expected 7"):
        storage.verify_stored(dest, target, size=7, sha256=digest)


def test_s3_missing_bucket_is_permanent(moto_s3, aws_env, tmp_path):
    """A bucket that does not exist is a StorageError for puts, reads and checks alike."""
    src, _ = _file(tmp_path / "f.bin", 10)
    dest = open_destination("s3://no-such-bucket-here/x", moto_s3.storage_options())
    path = dest.path("f.bin")
    for call in (
        lambda: storage.put_file_atomic(dest, src, path),
        lambda: storage.write_bytes_atomic(dest, path, b"x"),
        lambda: storage.read_bytes(dest, path),
        lambda: storage.exists(dest, path),
    ):
        with pytest.raises(errors.StorageError) as caught:
            call()
        assert "bucket" in str(caught.value).lower()


def test_s3_endpoint_down_is_transient_and_quick(aws_env, tmp_path):
    """An endpoint with nothing listening raises StorageUnavailable within seconds."""
    src, _ = _file(tmp_path / "f.bin", 6 * MiB)
    dest = open_destination(
        "s3://bucket", {"endpoint_url": unused_endpoint(), "key": "k", "secret": "s"}
    )
    for call in (
        lambda: storage.put_file_atomic(dest, src, dest.path("f.bin"), part_size=PART),
        lambda: storage.exists(dest, dest.path("f.bin")),
    ):
        started = time.monotonic()
        with pytest.raises(errors.StorageUnavailable):
            call()
        assert time.monotonic() - started < 10


def test_s3_env_credentials_and_endpoint(seaweedfs_s3, seaweedfs_bucket, aws_env):
    """AWS_ACCESS_KEY_ID/SECRET and AWS_ENDPOINT_URL_S3 alone reach a signature-checking store."""
    aws_env.setenv("AWS_ACCESS_KEY_ID", seaweedfs_s3.key)
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs_s3.secret)
    aws_env.setenv("AWS_ENDPOINT_URL_S3", seaweedfs_s3.endpoint_url)
    aws_env.setenv("AWS_DEFAULT_REGION", seaweedfs_s3.region)
    dest = open_destination(f"s3://{seaweedfs_bucket}/env")
    storage.write_bytes_atomic(dest, dest.path("a.txt"), b"from env")
    assert _get(seaweedfs_s3, seaweedfs_bucket, "env/a.txt") == b"from env"

    wrong = open_destination(
        f"s3://{seaweedfs_bucket}/env", {"key": seaweedfs_s3.key, "secret": "not-the-secret"}
    )
    with pytest.raises(errors.StorageError, match="signature"):
        storage.read_bytes(wrong, wrong.path("a.txt"))


def test_s3_missing_credentials_is_configuration_error(moto_s3, moto_bucket):
    """No credentials anywhere (or only half of them) is a ConfigurationError, not an outage."""
    for options in (
        {"endpoint_url": moto_s3.endpoint_url},
        {"endpoint_url": moto_s3.endpoint_url, "secret": "s"},
    ):
        dest = open_destination(f"s3://{moto_bucket}", options)
        with pytest.raises(errors.ConfigurationError, match="[Cc]redentials"):
            storage.exists(dest, dest.path("a.txt"))


def test_s3_storage_options_override_env(seaweedfs_s3, seaweedfs_bucket, aws_env):
    """Storage options win over AWS env vars pointing at a dead endpoint with bad keys."""
    aws_env.setenv("AWS_ACCESS_KEY_ID", "bad-key")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "bad-secret")
    aws_env.setenv("AWS_ENDPOINT_URL_S3", unused_endpoint())
    dest = open_destination(f"s3://{seaweedfs_bucket}/opts", seaweedfs_s3.storage_options())
    storage.write_bytes_atomic(dest, dest.path("a.txt"), b"from options")
    assert storage.read_bytes(dest, dest.path("a.txt")) == b"from options"


def test_seaweedfs_put_and_verify_end_to_end(seaweedfs_s3, seaweedfs_bucket, tmp_path):
    """On SeaweedFS a 3-part file is stored whole, verifies by read-back, and no upload is left."""
    src, digest = _file(tmp_path / "big.bin", 2 * PART + 777, seed=7)
    dest = open_destination(f"s3://{seaweedfs_bucket}/runs/r1", seaweedfs_s3.storage_options())
    target = dest.path("out", "big.bin")
    storage.put_file_atomic(dest, src, target, part_size=PART, move=True)
    assert not src.exists()
    storage.verify_stored(dest, target, size=2 * PART + 777, sha256=digest, read_back=True)
    assert (
        hashlib.sha256(_get(seaweedfs_s3, seaweedfs_bucket, "runs/r1/out/big.bin")).hexdigest()
        == digest
    )
    assert seaweedfs_s3.multipart_uploads(seaweedfs_bucket) == []


def test_seaweedfs_outage_mid_upload_then_recovery(
    seaweedfs_s3, seaweedfs_bucket, tmp_path, fail_source_after
):
    """The store dying mid-upload is StorageUnavailable in seconds with no object; the retry after
    it returns stores the file whole and clears the upload that could not be aborted."""
    src, digest = _file(tmp_path / "big.bin", 3 * PART, seed=9)
    dest = open_destination(f"s3://{seaweedfs_bucket}", seaweedfs_s3.storage_options())
    target = dest.path("big.bin")
    fail_source_after(2 * PART, action=seaweedfs_s3.stop)
    started = time.monotonic()
    try:
        with pytest.raises(errors.StorageUnavailable):
            storage.put_file_atomic(dest, src, target, part_size=PART)
        assert time.monotonic() - started < 20
        with pytest.raises(errors.StorageUnavailable):
            storage.exists(dest, target)
    finally:
        seaweedfs_s3.start()
    assert seaweedfs_s3.keys(seaweedfs_bucket) == []
    assert not storage.exists(dest, target)

    storage.put_file_atomic(dest, src, target, part_size=PART)  # plain retry, as a task would
    storage.verify_stored(dest, target, size=3 * PART, sha256=digest, read_back=True)
    assert seaweedfs_s3.multipart_uploads(seaweedfs_bucket) == []
    assert seaweedfs_s3.keys(seaweedfs_bucket) == ["big.bin"]
