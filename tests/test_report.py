"""The report module, without Prefect: thumbnails within their limits, unreadable files listed,
the 24-thumbnail cap, the summary's locations, stable artifact keys, presigned S3 links."""

from __future__ import annotations

import base64
import hashlib
import io
import random

import httpx
import pytest
from PIL import Image

from archiver.batch import BatchSummary, ItemResult
from archiver.pipeline import FileSummary, RunSummary
from archiver.previews import (
    MAX_BYTES,
    MAX_SIDE,
    MAX_THUMBNAILS,
    PreviewBudget,
    local_previews,
    previews_of,
    thumbnail,
)
from archiver.report.render import (
    artifact_key,
    batch_gallery,
    gallery,
    run_gallery,
    run_summary,
)
from archiver.storage import open_destination, write_bytes_atomic


def noise_png(width: int, height: int, mode: str = "RGB", seed: int = 1) -> bytes:
    """An image of random pixels: the worst case for JPEG size."""
    rng = random.Random(seed)
    channels = len(mode)
    data = rng.randbytes(width * height * channels)
    out = io.BytesIO()
    Image.frombytes(mode, (width, height), data).save(out, "PNG")
    return out.getvalue()


def decode(uri: str) -> tuple[bytes, Image.Image]:
    assert uri.startswith("data:image/jpeg;base64,")
    raw = base64.b64decode(uri.split(",", 1)[1])
    return raw, Image.open(io.BytesIO(raw))


def test_thumbnail_of_a_large_noisy_image_fits_the_side_and_byte_limits():
    """A 1200x700 noise PNG becomes a JPEG of longest side 256 px and at most 40 KB."""
    uri, width, height = thumbnail(noise_png(1200, 700))
    raw, image = decode(uri)
    assert image.format == "JPEG" and image.size == (width, height)
    assert max(image.size) <= MAX_SIDE and max(image.size) >= MAX_SIDE * 3 // 4
    assert len(raw) <= MAX_BYTES


def test_transparent_and_palette_images_get_thumbnails(tmp_path):
    """RGBA and palette images are flattened to RGB JPEGs, aspect ratio kept."""
    rgba = tmp_path / "a.png"
    rgba.write_bytes(noise_png(300, 100, "RGBA"))
    palette = tmp_path / "p.gif"
    Image.new("P", (50, 80), 3).save(palette)
    for path, size in ((rgba, (256, 85)), (palette, (50, 80))):
        result = thumbnail(path)
        assert not isinstance(result, str), result
        _, image = decode(result[0])
        assert image.size == size


def test_unreadable_and_non_image_outputs_are_listed_not_fatal(tmp_path):
    """A .png Pillow cannot read and a text output are listed by name, type and size."""
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    text = tmp_path / "out.txt"
    text.write_text("hello")
    good = tmp_path / "good.png"
    good.write_bytes(noise_png(40, 30))
    files = [
        ("broken.png", "image/png", broken.stat().st_size, broken),
        ("out.txt", "text/plain", 5, text),
        ("good.png", "image/png", good.stat().st_size, good),
    ]
    broken_p, text_p, good_p = previews_of(files, PreviewBudget())
    assert broken_p.thumbnail is None and "not readable" in (broken_p.note or "")
    assert text_p.thumbnail is None and text_p.note is None
    assert good_p.thumbnail and (good_p.width, good_p.height) == (40, 30)
    markdown = gallery([(p.name, p) for p in (broken_p, text_p, good_p)])
    assert markdown.count("data:image/jpeg;base64,") == 1
    assert "| broken.png | image/png | 15 B | not readable" in markdown
    assert "| out.txt | text/plain | 5 B |" in markdown


def test_no_budget_makes_no_thumbnails(tmp_path):
    """Without a budget (benchmarks, scripts) nothing is opened or made."""
    path = tmp_path / "x.png"
    path.write_bytes(noise_png(10, 10))
    assert previews_of([("x.png", "image/png", 1, path)], None) == []


def test_a_gallery_shows_at_most_24_thumbnails_and_counts_the_rest(tmp_path):
    """30 images under one budget: 24 thumbnails, 6 counted as not shown, none listed."""
    files = []
    for i in range(30):
        path = tmp_path / f"img-{i}.png"
        path.write_bytes(noise_png(20, 20, seed=i))
        files.append((path.name, "image/png", path.stat().st_size, path))
    budget = PreviewBudget()
    previews = previews_of(files[:20], budget) + previews_of(files[20:], budget)
    assert sum(1 for p in previews if p.thumbnail) == MAX_THUMBNAILS
    markdown = gallery([(p.name, p) for p in previews])
    assert markdown.count('<img src="data:image/jpeg;base64,') == MAX_THUMBNAILS
    assert "30 image(s), 24 shown; 6 more not shown." in markdown
    assert "Other files" not in markdown


def _summary(dest_root: str, *, cached: bool = False, names=("out-0.png",)) -> RunSummary:
    files = [
        FileSummary(
            name=name,
            path=f"m/p/{name}",
            url=f"{dest_root}/m/p/{name}",
            size=1234 + i,
            sha256=hashlib.sha256(name.encode()).hexdigest(),
        )
        for i, name in enumerate(names)
    ]
    return RunSummary(
        model="owner/model",
        cache_key="k",
        prediction_id="pred123",
        cached=cached,
        predictions_created=0 if cached else 1,
        refetches=2,
        manifest_url=f"{dest_root}/m/p/manifest.json",
        files=files,
    )


def test_run_summary_shows_what_and_where(tmp_path):
    """Prediction id, model, input, cached, re-fetches, and each file's full path, size, sha256."""
    summary = _summary(str(tmp_path), names=("out-0.png", "a|b.txt"))
    markdown = run_summary(summary, {"prompt": "a lighthouse", "seed": 7})
    for text in ("`pred123`", "`owner/model`", "**cached**: no", "**re-fetches**: 2"):
        assert text in markdown
    assert '"prompt": "a lighthouse"' in markdown
    for f in summary.files:
        assert f"location: `{f.url}`" in markdown
        assert f"{f.size:,} B" in markdown and f"sha256: `{f.sha256}`" in markdown
    assert "**a\\|b.txt**" in markdown  # markdown characters in a name are escaped


def test_cached_run_gallery_lists_files_and_says_why_there_are_no_thumbnails(tmp_path):
    """A cached prediction's gallery lists its files and explains the missing thumbnails."""
    markdown = run_gallery(_summary(str(tmp_path), cached=True, names=("a.txt",)))
    assert (
        "| a.txt | text/plain | 1,234 B | archived earlier" in markdown
        and "earlier run" in markdown
    )


def test_batch_gallery_captions_name_the_item(tmp_path):
    """A batch gallery captions each thumbnail with its item and file name."""
    path = tmp_path / "x.png"
    path.write_bytes(noise_png(30, 30))
    [preview] = previews_of([("x.png", "image/png", 10, path)], PreviewBudget())
    run = _summary(str(tmp_path), names=("x.png",))
    item = ItemResult(
        index=3,
        line=4,
        model="o/m",
        input={},
        outcome="archived",
        files=run.files,
        previews=[preview],
    )
    markdown = batch_gallery(BatchSummary(file="f", dest=str(tmp_path), items=[item]))
    assert "item 3: x.png" in markdown and markdown.count("data:image/jpeg") == 1
    assert "previews" not in item.model_dump()  # thumbnails stay out of results and --json


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("archive-prediction", "on-demand", "summary"), "archive-prediction-on-demand-summary"),
        (("Archive Batch", "Nightly_2", "gallery"), "archive-batch-nightly-2-gallery"),
        (("archive-batch", "", "files"), "archive-batch-files"),
    ],
)
def test_artifact_keys_are_lowercase_letters_digits_and_dashes(parts, key):
    """Keys are stable per deployment and valid Prefect artifact keys."""
    assert artifact_key(*parts) == key


def test_signed_links_download_the_file_and_are_off_by_default(moto_s3, moto_bucket):
    """With a lifetime set, each S3 file gets a presigned https link that serves its bytes."""
    dest = open_destination(f"s3://{moto_bucket}/archive", moto_s3.storage_options())
    write_bytes_atomic(dest, dest.path("m/p/out-0.png"), b"png bytes")
    summary = _summary(f"s3://{moto_bucket}/archive")
    urls = [f.url for f in summary.files]
    assert dest.signed_links(urls, 0) == {}
    [(url, link)] = dest.signed_links(urls, 600).items()
    assert url == f"s3://{moto_bucket}/archive/m/p/out-0.png"
    assert "Signature=" in link or "X-Amz-Signature=" in link
    assert httpx.get(link).content == b"png bytes"
    assert "download" in run_summary(summary, {}, links={url: link})


def test_a_cached_run_on_a_local_archive_gets_thumbnails_from_the_archived_files(tmp_path):
    """Nothing staged (archived earlier): thumbnails are read from the local archive's files."""
    dest = open_destination(str(tmp_path))
    summary = _summary(dest.root, cached=True, names=("out-0.png", "notes.txt"))
    (tmp_path / "m/p").mkdir(parents=True)
    (tmp_path / "m/p/out-0.png").write_bytes(noise_png(64, 48))
    (tmp_path / "m/p/notes.txt").write_text("x")
    png, txt = local_previews(summary, dest, PreviewBudget())
    assert png.thumbnail and (png.width, png.height) == (64, 48)
    assert txt.thumbnail is None
    markdown = run_gallery(summary.model_copy(update={"previews": [png, txt]}))
    assert markdown.count("data:image/jpeg") == 1 and "earlier run" not in markdown


def test_batch_summary_lists_every_file_and_every_failed_item(tmp_path):
    """Each archived file with its location, size and sha256; each failed item with its error."""
    from archiver.report.render import batch_summary

    run = _summary(str(tmp_path), names=("a.png", "b.png"))
    items = [
        ItemResult(index=0, line=1, model="o/m", input={}, outcome="archived", files=run.files),
        ItemResult(index=1, line=2, model="o/m", input={}, outcome="failed", error="E: boom"),
    ]
    markdown = batch_summary(BatchSummary(file="p.jsonl", dest=str(tmp_path), items=items))
    for f in run.files:
        assert f"| {f.size:,} B | `{f.sha256}` | `{f.url}` |" in markdown
    assert "| 1 | 2 | E: boom |" in markdown
