"""Is an archived prediction still whole? Every file its manifest lists, there with its size.

A manifest is the claim "archived"; before a run, `archive ID` or a sweep reports `cached` on
its word, each listed file is looked up (one stat on local disk, one HEAD on S3: fsspec `info`),
many at once on a remote store. A missing or wrong-sized file makes the archive damaged: the
caller restores it from Replicate (the same prediction, re-fetched for fresh URLs) while the
outputs exist, else fails with `damaged_error`, one line naming the file and the prediction.
Full sha256 re-checks are the `verify` command's (reading every byte back is not cheap).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .errors import OutputsRemoved
from .manifest import Manifest
from .storage import Destination, stored_size

#: Lookups in flight at once on a remote store (HEAD requests; local disk stats in one thread).
LOOKUPS = 16


@dataclass(frozen=True)
class Damage:
    """One file of a manifest that is not in the archive as the manifest says."""

    url: str  # where it should be (no credentials: `Destination.url_for`)
    expected: int
    actual: int | None  # None: missing

    def __str__(self) -> str:
        if self.actual is None:
            return f"{self.url} is missing"
        return f"{self.url} holds {self.actual} bytes, expected {self.expected}"


def damaged_files(dest: Destination, manifest: Manifest) -> list[Damage]:
    """The manifest's files that are missing or have another size in `dest`, in its order."""
    paths = [dest.path(f.path) for f in manifest.files]
    if not dest.backend.concurrent_requests or len(paths) < 2:
        sizes = [stored_size(dest, path) for path in paths]
    else:
        with ThreadPoolExecutor(min(LOOKUPS, len(paths)), "archive-check") as pool:
            sizes = list(pool.map(lambda path: stored_size(dest, path), paths))
    return [
        Damage(dest.url_for(path), item.size, size)
        for path, item, size in zip(paths, manifest.files, sizes, strict=True)
        if size != item.size
    ]


class DamagedArchive(OutputsRemoved):
    """A file of an archived prediction is gone, and so are its outputs on Replicate."""

    prediction_id: str = ""
    model: str = ""


def damaged_error(manifest: Manifest, damage: list[Damage]) -> DamagedArchive:
    """The one-line error of a damaged archive Replicate can no longer restore."""
    more = f" (and {len(damage) - 1} more file(s))" if len(damage) > 1 else ""
    error = DamagedArchive(
        f"archive of prediction {manifest.prediction_id} ({manifest.model}) is damaged: "
        f"{damage[0]}{more}, and Replicate no longer has its outputs to restore it"
    )
    error.prediction_id, error.model = manifest.prediction_id, manifest.model
    return error
