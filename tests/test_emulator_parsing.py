"""Header and reference parsing: Prefer, Cancel-After durations, version strings, URL names."""

from __future__ import annotations

import pytest

from emulator.parsing import parse_duration, parse_prefer_wait, split_version
from emulator.signing import UrlSigner, quote_name


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30),
        ("30s", 30),
        ("0.2s", 0.2),
        ("1.5", 1.5),
        ("5m", 300),
        ("2h", 7200),
        ("1h30m45s", 5445),
        ("250ms", 0.25),
        ("1m30s", 90),
    ],
)
def test_cancel_after_durations(text, seconds):
    """Cancel-After accepts bare seconds and h/m/s/ms combinations, fractional values too."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0", "0s", "-5", "5x", "m5", "1.2.3s", "soon", "5 m"])
def test_cancel_after_rejects_garbage(text):
    """Zero, negative and malformed durations are rejected."""
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("wait", 60),
        ("wait=1", 1),
        ("wait=60", 60),
        ("respond-async, wait=5", 5),
        (None, None),
        ("", None),
        ("wait=0", None),
        ("wait=61", None),
        ("waiting", None),
    ],
)
def test_prefer_wait(header, seconds):
    """Prefer: wait means 60 s, wait=N means N in 1..60; anything else means no waiting."""
    assert parse_prefer_wait(header) == seconds


def test_split_version_forms():
    """Versions may be owner/name:id, owner/name or a bare 64-hex id."""
    vid = "a" * 64
    assert split_version(f"o/n:{vid}") == ("o/n", vid)
    assert split_version("o/n") == ("o/n", None)
    assert split_version(vid) == (None, vid)
    for bad in ("nothing", "o/n/x:1", ":abc", "A" * 64, "o/n:"):
        with pytest.raises(ValueError):
            split_version(bad)


def test_quote_name_keeps_names_in_one_segment():
    """Encoded names contain no '/', and dot-only names are fully encoded."""
    assert quote_name("a/b\\c.png") == "a%2Fb%5Cc.png"
    assert quote_name("..") == "%2E%2E" and quote_name(".") == "%2E"
    assert quote_name("x\n\x00.png") == "x%0A%00.png"
    assert quote_name("../x") == "..%2Fx"


def test_signer_round_trip_and_tamper():
    """A signature verifies for its path and expiry only; different secrets disagree."""
    signer = UrlSigner(b"k" * 32)
    signed = signer.sign("/delivery/p/0/a.png", 60)
    path, _, query = signed.partition("?")
    params = dict(p.split("=") for p in query.split("&"))
    assert signer.verify(path, params["expires"], params["sig"])
    assert not signer.verify(path + "x", params["expires"], params["sig"])
    assert not signer.verify(path, str(int(params["expires"]) + 1), params["sig"])
    assert not UrlSigner(b"z" * 32).verify(path, params["expires"], params["sig"])
    assert not signer.verify(path, None, params["sig"]) and not signer.verify(path, "x", "y")
    assert not signer.expired(params["expires"])
    expired = dict(
        p.split("=") for p in signer.sign(path, 60, expired=True).split("?")[1].split("&")
    )
    assert signer.expired(expired["expires"])
