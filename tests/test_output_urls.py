"""One rule for what is a file: every output string that is a URL is downloaded or refused."""

import pytest

from archiver.errors import HostNotAllowed
from archiver.manifest import Manifest
from archiver.outputs import HostAllowList, file_outputs, output_url, replace_files, scrub_text

ALLOW = HostAllowList("replicate.delivery,127.0.0.1")


@pytest.mark.parametrize(
    "value",
    [
        "HTTP://replicate.delivery/x/a.png",
        "https:/replicate.delivery/x/a.png",
        "https:replicate.delivery/x/a.png",
        "file:/etc/passwd",
        "FILE:///etc/passwd",
        "ftp:/host/a.png",
        "s3://bucket/key.png",
        "gs:/bucket/key.png",
        "custom+scheme://anything/at/all",
        "  https://replicate.delivery/x/a.png\n",
        "https://replicate.delivery",
    ],
)
def test_urls_with_a_scheme_are_files_never_text(value):
    """Upper-case schemes, one slash or none, other schemes, padding: a file position."""
    assert output_url(value) == value.strip()
    assert [f.url for f in file_outputs({"out": value, "caption": "a cat"})] == [value.strip()]


@pytest.mark.parametrize(
    "value",
    [
        "note: this is fine",
        "a:b",
        "a://",
        "http:",
        "http://",
        "ratio 16:9",
        "see https://example.com/a.png here",
        "mailto:bob@example.com",
        "urn:isbn:0451450523",
        "C:\\temp\\out.png",
        "12:30/45",
        "",
    ],
)
def test_text_that_is_not_a_url_stays_text(value):
    """Prose, ratios, `scheme:` without a slash (mailto:, urn:), bare schemes: text."""
    assert output_url(value) is None
    assert file_outputs([value]) == []


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("https:/replicate.delivery/x/a.png?sig=abc", "names no host"),
        ("file:/etc/passwd", "file:/etc/passwd"),
        ("ftp:/host/a.png?sig=abc", "ftp:/host/a.png"),
        ("s3://bucket/key.png?X-Amz-Signature=abc", "s3://bucket/key.png"),
        ("HTTPS://evil.example/a.png?sig=abc", "https://evil.example"),
    ],
)
def test_refused_urls_get_one_line_naming_them_without_secrets(url, needle):
    """Every URL that may not be fetched is refused in one line naming it, query dropped."""
    (item,) = file_outputs([url])
    with pytest.raises(HostNotAllowed) as caught:
        ALLOW.check(item.url)
    message = str(caught.value)
    assert needle in message and "\n" not in message
    assert "sig=" not in message and "Signature" not in message


def test_upper_case_http_on_an_allowed_host_is_fetched():
    """`HTTP://` is http: an allowed (loopback) host passes the check."""
    ALLOW.check("HTTP://127.0.0.1:9/x/a.png")


def test_text_outputs_keep_no_url_userinfo_query_or_fragment():
    """A URL inside a text output loses user:pass@, ?query and #fragment in the manifest."""
    text = "see https://bob:pw@h.example/a.png?sig=SECRET#x, or ftp:/h/b?t=SECRET. ok"
    assert scrub_text(text) == "see https://h.example/a.png or ftp:/h/b ok"
    output = {"image": "https://replicate.delivery/a.png?sig=S", "caption": text, "n": 3}
    manifest = Manifest(
        prediction_id="p",
        model="o/n",
        status="succeeded",
        input={},
        output=replace_files(output, {"/image": "d/a.png"}),
        cache_key="k",
        directory="d",
    )
    data = manifest.to_json().decode()
    assert "SECRET" not in data and "pw" not in data and "sig=" not in data
    assert manifest.output["image"] == {"file": "d/a.png"} and manifest.output["n"] == 3
