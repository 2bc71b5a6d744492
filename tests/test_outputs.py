"""File outputs: finding them in output trees, naming them safely, and the delivery allow-list."""

import pytest

from archiver.errors import HostNotAllowed
from archiver.manifest import ArchivedFile
from archiver.outputs import (
    HostAllowList,
    file_outputs,
    public_url,
    replace_files,
    safe_name,
    url_at,
)

D = "https://replicate.delivery/xezq/abc"


def test_files_found_anywhere_in_the_output_tree():
    """URLs in lists and nested objects are files; text stays non-file output."""
    output = {"image": f"{D}/a.png", "caption": "hello", "files": [f"{D}/b.png", f"{D}/c.png"]}
    files = file_outputs(output)
    assert [(f.pointer, f.name) for f in files] == [
        ("/image", "a.png"),
        ("/files/0", "b.png"),
        ("/files/1", "c.png"),
    ]
    assert url_at(output, "/files/1") == f"{D}/c.png"


def test_single_string_output_is_one_file_and_text_lists_are_none():
    """A bare URL string is one file at the root; a list of words has no files."""
    assert [(f.pointer, f.name) for f in file_outputs(f"{D}/out.webp")] == [("", "out.webp")]
    assert file_outputs(["Hello", " world"]) == []


@pytest.mark.parametrize(
    "raw",
    [
        "../../etc/passwd.png",
        "a/b\\c.png",
        "evil\nname.png",
        "nul\x00.png",
        "..",
        ".",
        "",
        "manifest.json",
        ".hidden",
    ],
)
def test_hostile_names_cannot_escape_or_collide(raw):
    """No separators, control characters, dot-names, or our own reserved names survive."""
    name = safe_name(raw, fallback="output-0")
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    assert all(ord(c) >= 32 for c in name) and name not in ("manifest.json", "")


def test_names_are_unique_and_bounded():
    """Duplicates get -2, -3 suffixes; 300-character names are cut to 200 bytes, extension kept."""
    long = "x" * 300 + ".png"
    files = file_outputs([f"{D}/out.png", f"{D}/OUT.png", f"{D}/{long}", f"{D}/%2E%2E"])
    names = [f.name for f in files]
    assert names[:2] == ["out.png", "OUT-2.png"]
    assert names[2].endswith(".png") and len(names[2].encode()) <= 200
    assert names[3] == "output-3"


def test_manifest_output_replaces_urls_with_archived_paths():
    """The manifest keeps non-file output and points file positions at archived paths."""
    output = {"image": f"{D}/a.png", "caption": "hi"}
    assert replace_files(output, {"/image": "x/a.png"}) == {
        "image": {"file": "x/a.png"},
        "caption": "hi",
    }


def test_allow_list_defaults_to_replicate_delivery_https():
    """replicate.delivery and its subdomains over https pass; other hosts and http do not."""
    allow = HostAllowList("replicate.delivery,*.replicate.delivery")
    allow.check("https://replicate.delivery/x/a.png")
    allow.check("https://pbxt.replicate.delivery/x/a.png")
    for url in (
        "https://evil.example/a.png",
        "http://replicate.delivery/a.png",
        "https://replicate.delivery.evil.example/a.png",
    ):
        with pytest.raises(HostNotAllowed):
            allow.check(url)


def test_plain_http_only_for_listed_loopback_hosts():
    """http is accepted for an explicitly listed loopback host, never for others."""
    allow = HostAllowList("127.0.0.1,example.com")
    allow.check("http://127.0.0.1:8080/delivery/a.png")
    with pytest.raises(HostNotAllowed):
        allow.check("http://example.com/a.png")
    with pytest.raises(HostNotAllowed):
        allow.check("http://localhost:8080/a.png")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://replicate.delivery/x/a.png?sig=abc",
        "file:///etc/passwd",
        "s3://bucket/key.png",
        "FTP://host/a.png",
    ],
)
def test_urls_of_other_schemes_are_refused_not_kept_as_text(url):
    """A scheme:// string other than http(s) is a file position that the allow-list refuses,
    in one line naming the scheme and without the URL's query string."""
    allow = HostAllowList("replicate.delivery")
    files = file_outputs({"image": url, "caption": "a cat"})
    assert [f.pointer for f in files] == ["/image"]
    with pytest.raises(HostNotAllowed, match=url.split(":")[0].lower() + "://") as caught:
        allow.check(files[0].url)
    assert "sig=" not in str(caught.value) and "\n" not in str(caught.value)


def test_plain_text_and_captions_stay_text():
    """Words, captions, sentences holding a URL and 'data: x' captions are not files."""
    output = ["Hello", "see https://example.com/a.png here", "data: 3, 4", "ratio 16:9", "a://"]
    assert file_outputs(output) == []


def test_urls_with_credentials_are_refused_without_showing_them():
    """user:pass@ in an output URL is refused even on an allowed host; the error omits it."""
    allow = HostAllowList("replicate.delivery,127.0.0.1")
    for url in ("https://alice:s3cr3t@replicate.delivery/a.png", "http://alice@127.0.0.1:9/a.png"):
        with pytest.raises(HostNotAllowed, match="credentials") as caught:
            allow.check(url)
        assert "alice" not in str(caught.value) and "s3cr3t" not in str(caught.value)


def test_recorded_urls_carry_no_userinfo_query_or_payload():
    """public_url and the manifest drop user:pass@, ?sig=... and a data: URI's payload."""
    assert public_url("https://u:p@replicate.delivery:443/x/a.png?sig=1#f") == (
        "https://replicate.delivery:443/x/a.png"
    )
    assert public_url("data:image/png;base64,iVBORw0KGgo=") == "data:image/png;base64"
    item = ArchivedFile(
        name="a.png",
        path="d/a.png",
        size=1,
        sha256="0" * 64,
        source_url="http://user:pass@127.0.0.1:8080/a.png?sig=secret",
        pointer="",
    )
    assert item.source_url == "http://127.0.0.1:8080/a.png"


def test_data_uri_outputs_are_files_named_by_type():
    """data: URIs are files named output-N.<ext> from their media type, counted in order."""
    png = "data:image/png;base64,iVBORw0KGgo="
    files = file_outputs([f"{D}/a.png", png, "data:,hello", png])
    assert [f.name for f in files] == ["a.png", "output-1.png", "output-2.txt", "output-3.png"]
    assert url_at([f"{D}/a.png", png], "/1") == png
