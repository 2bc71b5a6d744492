"""Where downloads may go and what they may be called: allow-list, hostile names, the token."""

import pytest

from archiver.errors import HostNotAllowed

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
