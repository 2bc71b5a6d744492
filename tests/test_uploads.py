"""`run -i key=@file` over 256 KB uploads through the Files API: flow parameters hold the URL,
the cache key hashes the content (the same file twice uploads once), bad files fail in one line."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from archiver.errors import ConfigurationError
from archiver.manifest import Manifest
from archiver.prediction import ModelRef
from archiver.runtime import Runtime
from archiver.settings import Settings
from archiver.uploads import LocalFile, local_input, resolve_uploads

MODEL = "black-forest-labs/flux-schnell"


def big_file(tmp_path, size: int = 600 * 1024, name: str = "photo.jpg"):
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * (size // 256))
    return path


def flow_run_parameters(api_url: str, image_url: str) -> dict:
    """The parameters Prefect stored for the flow run whose input names `image_url`."""
    runs = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 200}).json()
    (run,) = [r for r in runs if (r["parameters"].get("input") or {}).get("image") == image_url]
    return run["parameters"]


def test_a_600_kb_file_is_uploaded_and_the_same_file_again_uploads_nothing(
    cli, emulator, archive_env, tmp_path, prefect_harness
):
    """The issue's 600 KB `@file`: uploaded once (multipart, counted by the emulator), the input
    is its Files API URL in the flow run's parameters, the archive keeps it byte-exact; a second
    run of the same file is a cache hit that uploads and creates nothing."""
    photo = big_file(tmp_path)
    args = (
        "run",
        MODEL,
        "-i",
        f"image=@{photo}",
        "-i",
        "prompt=upload",
        "--dest",
        str(archive_env),
    )
    first = cli(*args, "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    manifest = Manifest.from_json(open(summary["manifest_url"], "rb").read())
    url = manifest.input["image"]
    assert url.startswith(f"{emulator.base_url}/v1/files/")
    (entry,) = manifest.input_files
    assert (
        entry.status == "archived" and (archive_env / entry.path).read_bytes() == photo.read_bytes()
    )
    parameters = flow_run_parameters(prefect_harness, url)
    assert "data:" not in json.dumps(parameters)
    assert parameters["file_digests"] == {url: LocalFile_sha(photo)}
    assert emulator.stats().uploads == 1 and emulator.stats().creates_accepted == 1
    second = cli(*args, "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["cached"] is True
    assert emulator.stats().uploads == 1 and emulator.stats().creates_accepted == 1


def LocalFile_sha(path) -> str:  # noqa: N802 - reads as what it is
    measured = local_input(path)
    assert isinstance(measured, LocalFile)
    return measured.sha256


def test_bad_files_fail_in_one_line_and_pay_for_nothing(cli, emulator, tmp_path):
    """A missing file, and an upload the API refuses: exit 1, one line naming the path."""
    missing = cli("run", MODEL, "-i", f"image=@{tmp_path / 'nope.jpg'}")
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "nope.jpg" in missing.stderr
    photo = big_file(tmp_path)
    emulator.set_faults(refuse_uploads=1)
    refused = cli("run", MODEL, "-i", f"image=@{photo}")
    assert refused.returncode == 1, refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line and str(photo) in line and "upload refused" in line
    assert emulator.stats().creates_accepted == 0


def test_uploads_retry_like_the_other_api_calls(archive_env, emulator, tmp_path, monkeypatch):
    """Two 503s on POST /v1/files are retried (the upload policy); one file ends up stored."""
    monkeypatch.setenv("ARCHIVER_RETRY_DELAY", "0.01")
    emulator.set_faults(fail_uploads=2)
    photo = local_input(big_file(tmp_path))

    async def go():
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            return await resolve_uploads(runtime, ModelRef.parse(MODEL), {"image": photo})
        finally:
            await runtime.aclose()

    input, digests = asyncio.run(go())
    assert emulator.stats().uploads == 1
    assert digests == {input["image"]: photo.sha256}
    with pytest.raises(ConfigurationError, match="over the Files API's 100 MiB limit"):
        huge = tmp_path / "huge.bin"
        with huge.open("wb") as out:
            out.truncate(100 * 2**20 + 1)
        local_input(huge)
