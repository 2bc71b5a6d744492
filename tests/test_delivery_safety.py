"""Where downloads may go and what they may be called: allow-list, hostile names, the token."""

import asyncio

import pytest

from archiver.download import download_outputs
from archiver.errors import HostNotAllowed, redact
from archiver.prediction import Prediction
from archiver.runtime import Runtime
from archiver.settings import Settings

MODEL = "black-forest-labs/flux-schnell"


def test_output_on_a_host_not_allowed_gets_no_request(run_flow, emulator):
    """Output URLs on another host fail at once, and that host never sees a request."""
    emulator.set_faults(output_host=f"localhost:{emulator.port}")
    with pytest.raises(HostNotAllowed, match="localhost"):
        run_flow(MODEL, {"prompt": "elsewhere"})
    assert emulator.stats().downloads == []


def test_hostile_file_names_stay_inside_the_prediction_directory(run_flow, archive_env, emulator):
    """Names with ../, separators, control characters and duplicates are archived safely."""
    emulator.set_faults(hostile_filenames=True)
    summary = run_flow(MODEL, {"prompt": "hostile", "num_outputs": 8})
    directory = archive_env / summary.manifest_url.rsplit("/", 1)[0].split(str(archive_env))[1][1:]
    names = [f.name for f in summary.files]
    assert len({n.lower() for n in names}) == len(names)
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert all(ord(c) >= 32 for c in name)
        assert (directory / name).is_file()
    stray = [
        p
        for p in archive_env.rglob("*")
        if p.is_file() and directory not in p.parents and ".archiver" not in p.parts
    ]
    assert stray == []


def test_delivery_requests_never_carry_the_token(run_flow, emulator):
    """The API token goes to the API only: no Authorization header on any delivery request."""
    emulator.set_faults(first_urls_expired=True)
    run_flow(MODEL, {"prompt": "no token on the cdn", "num_outputs": 2})
    stats = emulator.stats()
    assert stats.downloads and stats.delivery_authorization_headers == []


def test_output_url_with_credentials_is_refused_and_never_requested(run_flow, emulator):
    """http://user:pass@allowed-host/... fails at once: no request (no Basic auth sent), and the
    one-line error shows neither user nor password."""
    emulator.set_faults(output_host=f"alice:s3cr3t@127.0.0.1:{emulator.port}")
    with pytest.raises(HostNotAllowed, match="credentials") as caught:
        run_flow(MODEL, {"prompt": "userinfo"})
    assert "s3cr3t" not in str(caught.value) and "alice" not in str(caught.value)
    stats = emulator.stats()
    assert stats.downloads == [] and stats.delivery_authorization_headers == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.png?sig=abc", "file:///a.png?sig=abc"])
def test_output_url_of_another_scheme_fails_the_run(archive_env, tmp_path, url):
    """An ftp:// or file:// output is an error naming the scheme, not 0 files archived as text."""
    prediction = Prediction(id="p1", status="succeeded", output=[url, "a caption"])

    async def go() -> None:
        runtime = Runtime.build(Settings(), dest=str(archive_env))
        try:
            await download_outputs(
                prediction,
                api=runtime.api,
                delivery=runtime.delivery,
                staging_root=tmp_path / "staging",
            )
        finally:
            await runtime.aclose()

    with pytest.raises(HostNotAllowed, match=url.split(":")[0] + "://") as caught:
        asyncio.run(go())
    assert "sig=" not in str(caught.value)


def test_redact_strips_userinfo_query_and_inline_payloads():
    """Any URL in a message loses user:pass@ and its query; a data: URI keeps its header only."""
    text = redact(
        "GET http://alice:s3cr3t@127.0.0.1:8080/a.png?sig=x failed; also redis://:pw@h:6379/0, "
        "ftp://bob@h/f?token=t and data:image/png;base64,iVBORw0KGgo="
    )
    assert text == (
        "GET http://127.0.0.1:8080/a.png failed; also redis://h:6379/0, "
        "ftp://h/f and data:image/png;base64,..."
    )
