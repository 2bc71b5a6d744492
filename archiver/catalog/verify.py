"""Re-read every archived file and compare it with its manifest: ok, corrupt or missing; a
manifest that cannot be read or is not ours is unreadable.

Streaming and flat in memory: a file is hashed one chunk at a time into a buffer its worker
thread reuses; manifests are read a batch at a time and at most `2 x workers` files are queued.
Files are checked concurrently (hashlib releases the GIL on large updates), streamed by the
backend (`Backend.stream_to`): on local disk with plain `readinto` (no Python-level copies), on
other stores through `fs.open` without caching.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel

from archiver import errors
from archiver.storage import Destination

from .records import ForeignManifest, StoredFile, entry_of
from .scan import fetch

CHUNK = 1 << 20  # bytes per read on local disk
REMOTE_CHUNK = 8 << 20  # bytes per ranged GET on object stores
MANIFEST_BATCH = 128

Outcome = Literal["corrupt", "missing", "unreadable"]


class Problem(BaseModel):
    prediction_id: str | None
    path: str  # relative to dest (the manifest's own path when it is unreadable)
    outcome: Outcome
    detail: str


class VerifyReport(BaseModel):
    dest: str
    manifests: int = 0
    files: int = 0
    bytes: int = 0
    ok: int = 0
    problems: list[Problem] = []

    @property
    def clean(self) -> bool:
        return not self.problems

    def headline(self) -> str:
        counts: dict[str, int] = {}
        for problem in self.problems:
            counts[problem.outcome] = counts.get(problem.outcome, 0) + 1
        bad = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no problems"
        return (
            f"{self.manifests} manifest(s), {self.files} file(s), {self.bytes:,} bytes checked: "
            f"{self.ok} ok, {bad}"
        )


Progress = Callable[[int, int], None]  # (files checked, bytes read) so far


def verify(
    dest: Destination,
    manifests: Iterable[tuple[str, str | None]],
    *,
    workers: int = 4,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every file of every manifest (`(path, prediction id)`, paths relative to dest)."""
    report = VerifyReport(dest=dest.url)
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(2 * workers)
    local = threading.local()

    def check(prediction_id: str, item: StoredFile) -> None:
        try:
            outcome, detail, size = _check(dest, item, local)
        finally:
            slots.release()
        with lock:
            report.files += 1
            report.bytes += size
            if outcome is None:
                report.ok += 1
            else:
                report.problems.append(
                    Problem(
                        prediction_id=prediction_id, path=item.path, outcome=outcome, detail=detail
                    )
                )
            if progress is not None:
                progress(report.files, report.bytes)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        futures: list[Future[None]] = []
        for batch in _batches(list(manifests), MANIFEST_BATCH):
            for (path, known_id), data in zip(
                batch, _read_manifests(dest, [p for p, _ in batch]), strict=True
            ):
                report.manifests += 1
                try:
                    if isinstance(data, BaseException):
                        raise ForeignManifest(f"cannot be read ({type(data).__name__}: {data})")
                    entry = entry_of(data)
                except ForeignManifest as exc:
                    with lock:
                        report.problems.append(
                            Problem(
                                prediction_id=known_id,
                                path=path,
                                outcome="unreadable",
                                detail=str(exc),
                            )
                        )
                    continue
                for item in entry.files:
                    slots.acquire()
                    futures.append(pool.submit(check, entry.prediction_id, item))
                for future in [f for f in futures if f.done()]:
                    future.result()  # a store outage ends the check: raised, not "missing"
                futures = [f for f in futures if not f.done()]
        for future in futures:
            future.result()
    report.problems.sort(key=lambda p: (p.path, p.outcome))
    return report


def _read_manifests(dest: Destination, paths: list[str]) -> list[bytes | BaseException]:
    """Each manifest's bytes, or the error reading it (missing: FileNotFoundError)."""
    full = [dest.path(p) for p in paths]
    result: list[bytes | BaseException] = []
    if not dest.backend.concurrent_requests:  # local disk: one read after the other
        for path in full:
            try:
                result.append(dest.backend.read_bytes(path))
            except OSError as exc:
                result.append(exc)
        return result
    data = fetch(dest, full)
    result = [data.get(p, FileNotFoundError(p)) for p in full]
    for path, value in zip(full, result, strict=True):
        if isinstance(value, Exception) and not isinstance(value, FileNotFoundError):
            error = dest.backend.translate(value, f"reading {dest.url_for(path)}")
            if isinstance(error, errors.TransientError):  # the store is down: stop, say so
                raise error from value
    return result


def _check(
    dest: Destination, item: StoredFile, local: threading.local
) -> tuple[Outcome | None, str, int]:
    """`(None, "", size)` when the stored file matches, else the outcome and why."""
    digest = hashlib.sha256()
    size = 0
    try:
        path = dest.path(item.path)
    except ValueError as exc:
        return "corrupt", str(exc), 0
    try:
        buffer = getattr(local, "buffer", None)
        if buffer is None:
            buffer = local.buffer = bytearray(CHUNK)

        def consume(chunk: bytes | memoryview) -> None:
            nonlocal size
            digest.update(chunk)
            size += len(chunk)

        dest.backend.stream_to(path, consume, REMOTE_CHUNK, buffer)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "missing", "not in the store", 0
    except Exception as exc:  # noqa: BLE001 - a file that cannot be read back is not kept
        error = dest.backend.translate(exc, f"reading {dest.url_for(path)}")
        if isinstance(error, errors.TransientError):  # the store is down: no verdict on files
            raise error from exc
        return "missing", f"cannot be read: {error}", size
    if size != item.size:
        return "corrupt", f"holds {size} bytes, the manifest says {item.size}", size
    if digest.hexdigest() != item.sha256:
        return "corrupt", f"sha256 {digest.hexdigest()}, the manifest says {item.sha256}", size
    return None, "", size


def _batches(
    items: list[tuple[str, str | None]], size: int
) -> Iterable[list[tuple[str, str | None]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
