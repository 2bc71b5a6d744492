"""A single-prediction flow run publishes its summary and gallery artifacts (in-process flow on
the session's Prefect API, real moto S3): full s3:// locations, thumbnails from the staged bytes,
optional presigned links, and a cached rerun that downloads nothing for its gallery."""

from __future__ import annotations

import asyncio
import json
import re

import httpx

MODEL = "black-forest-labs/flux-schnell"


def _artifacts(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )

    return {a.key: a.data for a in asyncio.run(read())}


def test_s3_run_shows_s3_locations_thumbnails_and_presigned_links(
    run_flow, emulator, moto_s3, moto_bucket, monkeypatch
):
    """To S3 with ARCHIVER_PRESIGN_SECONDS: every file as s3://bucket/key with a working
    presigned link, a thumbnail per image; the cached rerun lists the files, no thumbnails."""
    options = {"key": moto_s3.key, "secret": moto_s3.secret, "region": moto_s3.region}
    monkeypatch.setenv("ARCHIVER_STORAGE_OPTIONS", json.dumps(options))
    monkeypatch.setenv("ARCHIVER_PRESIGN_SECONDS", "600")
    dest = f"s3://{moto_bucket}/archive"
    value = {"prompt": "artifacts on s3", "num_outputs": 2}
    storage = {"endpoint_url": moto_s3.endpoint_url}
    state = run_flow(MODEL, value, dest=dest, storage_options=storage, return_state=True)
    summary = state.result()
    artifacts = _artifacts(state.state_details.flow_run_id)
    markdown = artifacts["archive-prediction-summary"]
    assert len(summary.files) == 2
    for f in summary.files:
        assert f.url.startswith(f"s3://{moto_bucket}/archive/")
        [link] = re.findall(
            rf"location: `{re.escape(f.url)}` \(\[download\]\(([^)]+)\)\)", markdown
        )
        assert httpx.get(link).content == _object(moto_s3, f.url)
        assert f"sha256: `{f.sha256}`" in markdown
    assert moto_s3.secret not in markdown
    assert artifacts["archive-prediction-gallery"].count('src="data:image/jpeg;base64,') == 2

    again = run_flow(MODEL, value, dest=dest, storage_options=storage, return_state=True)
    gallery = _artifacts(again.state_details.flow_run_id)["archive-prediction-gallery"]
    assert again.result().cached and "data:image" not in gallery
    assert all(
        f"| {f.name} | image/png | {f.size:,} B | archived earlier" in gallery
        for f in summary.files
    )


def _object(server, url: str) -> bytes:
    bucket, key = url.removeprefix("s3://").split("/", 1)
    return server.client().get_object(Bucket=bucket, Key=key)["Body"].read()
