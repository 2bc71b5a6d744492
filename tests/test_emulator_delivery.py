"""Signed, expiring delivery URLs: expiry, tampering, removal, hostile names, download faults."""

from __future__ import annotations

import math
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from emulator import HOSTILE_NAMES, Emulator
from emulator.clock import ManualClock
from tests.conftest import AUTH, TEST_MODELS
from tests.waiting import wait_until


def run(api: httpx.Client, model: str = "acme/demo", **input_) -> dict:
    response = api.post(
        f"/v1/models/{model}/predictions", json={"input": input_}, headers={"Prefer": "wait"}
    )
    assert response.status_code == 201, response.text
    return response.json()


def with_query(url: str, **changes: str) -> str:
    base, _, query = url.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&"))
    params.update(changes)
    return base + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def test_download_has_length_type_and_body(http, api):
    """A delivery URL serves the file with Content-Length and Content-Type."""
    url = run(api)["output"][0]
    response = http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert int(response.headers["content-length"]) == len(response.content) > 0


def test_url_shape_is_signed_and_expiring():
    """Output URLs are {base}/delivery/{id}/{index}/{name}?expires=<now+TTL>&sig=<HMAC of both>."""
    clock = ManualClock(start=1_700_000_000.25)
    with (
        Emulator(
            models=TEST_MODELS, clock=clock, processing_seconds=0, url_ttl_seconds=3600
        ) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as client,
    ):
        body = run(client, num_outputs=2)
        signer = emu._backend.signer
    urls = [urlsplit(url) for url in body["output"]]
    queries = [dict(p.split("=") for p in parts.query.split("&")) for parts in urls]
    assert {f"{parts.scheme}://{parts.netloc}" for parts in urls} == {emu.base_url}
    assert [parts.path for parts in urls] == [
        f"/delivery/{body['id']}/{index}/out-{index}.png" for index in (0, 1)
    ]
    for parts, query in zip(urls, queries, strict=True):
        assert set(query) == {"expires", "sig"}
        assert int(query["expires"]) == math.ceil(clock.now() + 3600)
        assert query["sig"] == signer.signature(parts.path, int(query["expires"]))
        assert query["sig"] != signer.signature(parts.path, int(query["expires"]) + 1)
    assert queries[0]["sig"] != queries[1]["sig"], "the path is part of what is signed"


def test_every_read_signs_fresh_urls():
    """Each serialisation of a prediction re-signs its URLs with a later expiry."""
    clock = ManualClock()
    with (
        Emulator(models=TEST_MODELS, clock=clock, processing_seconds=0) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as client,
    ):
        body = run(client)
        first = body["output"][0]
        clock.advance(1)
        second = client.get(f"/v1/predictions/{body['id']}").json()["output"][0]
    assert first.split("?")[0] == second.split("?")[0]
    expiries = [int(url.split("expires=")[1].split("&")[0]) for url in (first, second)]
    assert expiries[1] == expiries[0] + 1 and first != second


def test_expired_url_is_403(http):
    """A URL past its expiry answers 403; re-reading the prediction gives a working URL."""
    clock = ManualClock()
    with (
        Emulator(models=TEST_MODELS, clock=clock, processing_seconds=0, url_ttl_seconds=60) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as client,
    ):
        body = run(client)
        url = body["output"][0]
        clock.advance(60)  # the expiry itself (rounded up to a whole second) still serves
        assert http.get(url).status_code == 200
        clock.advance(1.01)
        assert http.get(url).status_code == 403
        fresh = client.get(f"/v1/predictions/{body['id']}").json()["output"][0]
        assert http.get(fresh).status_code == 200


def test_tampered_urls_are_403(http, api):
    """Changing the signature, the expiry or the path of a signed URL gives 403."""
    url = run(api, num_outputs=2)["output"][0]
    query = dict(p.split("=") for p in url.split("?")[1].split("&"))
    bad_sig = with_query(url, sig=("0" if query["sig"][0] != "0" else "1") + query["sig"][1:])
    later = with_query(url, expires=str(int(query["expires"]) + 1000))
    other_path = url.replace("/0/out-0.png", "/1/out-0.png")
    other_name = url.replace("/0/out-0.png", "/0/out-1.png")
    for tampered in (bad_sig, later, other_path, other_name, url.split("?")[0]):
        assert http.get(tampered).status_code == 403, tampered


def test_first_urls_expired_only_first_hand_out(http, emulator, api):
    """first_urls_expired signs the first hand-out already expired; the next read is valid."""
    emulator.set_faults(first_urls_expired=True)
    body = run(api)
    assert http.get(body["output"][0]).status_code == 403
    again = api.get(f"/v1/predictions/{body['id']}").json()["output"][0]
    assert http.get(again).status_code == 200


def test_first_urls_expired_applies_to_list_responses(http, emulator, api):
    """When the first hand-out is a list page, that page carries the expired URLs."""
    emulator.set_faults(first_urls_expired=True, processing_seconds=0.05)
    created = api.post("/v1/models/a/b/predictions", json={"input": {}}).json()
    listed = wait_until(  # the first page showing outputs is their first hand-out
        lambda: [p for p in api.get("/v1/predictions").json()["results"] if p["output"]],
        what="a list page with the prediction's outputs",
    )[0]
    assert listed["id"] == created["id"]
    assert http.get(listed["output"][0]).status_code == 403
    got = api.get(f"/v1/predictions/{created['id']}").json()
    assert http.get(got["output"][0]).status_code == 200


def test_remove_data_after_success(http, emulator, api):
    """remove_data_after_success: the first succeeded response has URLs, then data is gone (404)."""
    emulator.set_faults(remove_data_after_success=1)
    body = run(api)
    assert body["status"] == "succeeded" and body["output"] and body["data_removed"] is False
    assert http.get(body["output"][0]).status_code == 404
    later = api.get(f"/v1/predictions/{body['id']}").json()
    assert later["data_removed"] is True and later["output"] is None
    assert run(api)["output"] and emulator.faults.remove_data_after_success == 0


def test_hostile_filenames_are_served_at_encoded_urls(http, emulator, api):
    """With hostile_filenames each hostile name is one encoded path segment that serves its PNG."""
    emulator.set_faults(hostile_filenames=True)
    body = run(api, num_outputs=len(HOSTILE_NAMES))
    seen = []
    for index, url in enumerate(body["output"]):
        raw_path = url.split("?")[0].split(f"/delivery/{body['id']}/", 1)[1]
        position, encoded = raw_path.split("/")
        assert int(position) == index
        seen.append(unquote(encoded))
        response = http.get(url)
        assert response.status_code == 200, url
        assert response.content.startswith(b"\x89PNG")
        assert emulator.stats().downloads[-1]["path"].endswith(f"/{index}/{encoded}")
    assert seen == list(HOSTILE_NAMES)
    assert any(name.startswith("../") for name in seen) and seen.count("dup.png") == 2
    assert any(len(name) >= 300 for name in seen) and any(not n.isascii() for n in seen)
    assert any("\n" in n or "\x00" in n for n in seen) and ".." in seen


def test_authorization_header_is_recorded_on_delivery(http, api, emulator):
    """Delivery requests record the Authorization header they carried (or None)."""
    url = run(api)["output"][0]
    http.get(url)
    http.get(url, headers={"Authorization": "Bearer leaked"})
    stats = emulator.stats()
    assert [d["authorization"] for d in stats.downloads] == [None, "Bearer leaked"]
    assert stats.delivery_authorization_headers == ["Bearer leaked"]
    assert stats.downloads[0]["status"] == 200 and stats.downloads[0]["bytes_sent"] > 0


def test_output_host_changes_url_host(http, emulator, api):
    """output_host puts another host:port in URLs; the Host header seen is recorded."""
    emulator.set_faults(output_host=f"localhost:{emulator.port}")
    url = run(api)["output"][0]
    assert url.startswith(f"http://localhost:{emulator.port}/delivery/")
    assert http.get(url).status_code == 200
    assert emulator.stats().downloads[-1]["host"] == f"localhost:{emulator.port}"


def test_fail_downloads_answers_503_n_times(http, emulator, api):
    """fail_downloads=2 makes the next two delivery requests 503, then downloads work."""
    url = run(api)["output"][0]
    emulator.set_faults(fail_downloads=2)
    assert [http.get(url).status_code for _ in range(3)] == [503, 503, 200]


def test_drop_downloads_cuts_connection_mid_body(http, emulator, api):
    """drop_downloads sends headers and about half the body, then resets the connection."""
    url = run(api, "emulator/large-file", size_bytes=4_000_000)["output"][0]
    emulator.set_faults(drop_downloads=1)
    received = 0
    with pytest.raises(httpx.TransportError), http.stream("GET", url) as response:
        assert response.headers["content-length"] == "4000000"
        for chunk in response.iter_bytes():
            received += len(chunk)
    assert 0 < received <= 2_000_000
    assert emulator.stats().downloads[-1]["bytes_sent"] == 2_000_000
    assert len(http.get(url).content) == 4_000_000


def test_truncate_downloads_ends_body_early(http, emulator, api):
    """truncate_downloads declares the full length but the body ends after half of it."""
    url = run(api)["output"][0]
    full = http.get(url).content
    emulator.set_faults(truncate_downloads=1)
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|complete message body"):
        http.get(url)
    assert emulator.stats().downloads[-1]["bytes_sent"] == len(full) // 2
    assert http.get(url).content == full


def test_range_and_head_requests(http, api):
    """Single byte ranges answer 206 with Content-Range; HEAD gives headers only; bad ranges 416."""
    url = run(api)["output"][0]
    full = http.get(url).content
    part = http.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == full[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(full)}"
    assert http.get(url, headers={"Range": "bytes=-5"}).content == full[-5:]
    assert http.get(url, headers={"Range": f"bytes={len(full)}-"}).status_code == 416
    head = http.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(full))


def test_unknown_delivery_paths(http, api, emulator):
    """A signed URL for an unknown prediction is 404; other methods are 405."""
    url = run(api)["output"][0]
    assert httpx.post(url).status_code == 405
    signer = emulator._backend.signer
    forged = signer.sign("/delivery/nosuchprediction/0/out-0.png", 60)
    assert http.get(emulator.base_url + forged).status_code == 404
