"""Get a succeeded prediction for a request, paying for it at most once.

"Succeeded" includes "still processing but every output file is already published": the
download starts then, and `finalize` waits for the final state before the manifest is written.

Under the request's key lock: a cache hit (manifest still in the archive, and every file it
lists there with its size: `intact`) ends here; a recorded prediction that can still deliver is
resumed (so a damaged archive is restored from its own prediction, or the run fails naming the
file: never a new prediction for it); otherwise an intent record is written, the
prediction is created, and its id is recorded before the lock is released. Right before each
create POST the lock is checked to be still ours (a fencing check: see `locks`). Waiting happens
outside the lock. If we are interrupted, time out or get cancelled while a prediction we created
is running, it is cancelled on Replicate.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from .cache import CacheRecord, PredictionCache
from .errors import InvalidRequest, PredictionCanceled
from .intact import Damage, damaged_error, damaged_files
from .iothreads import run_io
from .locks import FileKeyLock, Lease, RedisKeyLock
from .manifest import Manifest
from .prediction import Prediction, PredictionRequest
from .replicate_api import ReplicateAPI, ensure_succeeded
from .storage import Destination

CANCEL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Cached:
    """`generate` found the request archived in this dest: nothing to pay, fetch or write."""

    record: CacheRecord
    manifest: Manifest


@dataclass(frozen=True)
class Ready:
    """`generate` has a prediction whose outputs can be downloaded now.

    `prediction` succeeded, or is still processing with every output file already published
    (`finalize` waits for its final state before anything is archived). `created`: a new
    prediction was paid for in this call.
    """

    record: CacheRecord
    prediction: Prediction
    created: bool = False
    ahead: bool = False  # created by this process before the run got here (`create_ahead`)


Generated = Cached | Ready
"""The outcome of `generate`: a cache hit, or a prediction ready to download."""


async def generate(
    request: PredictionRequest,
    *,
    api: ReplicateAPI,
    cache: PredictionCache,
    lock: FileKeyLock | RedisKeyLock,
    dest: Destination,
    refresh: bool = False,
    timeout: float = 3600,
) -> Cached | Ready:
    """A cache hit or a succeeded prediction for `request` (see the module docstring)."""
    key = request.cache_key
    if _ahead and key not in _ahead:  # never pay twice for a request whose key came out different
        raise RuntimeError("a prediction is created ahead for another request than this run's")
    async with lock.hold(key) as lease:
        # Settled by now: `create_ahead` holds this lock until it is. Kept until this call
        # returns, so a retry of the step takes it again and `cancel_unclaimed` finds it if
        # the step fails for good.
        ahead = _ahead.get(key)
        if isinstance(ahead, BaseException):
            _ahead.pop(key, None)
            raise ahead  # the create this run would have made failed so, moments ago
        # Store I/O (fsynced writes) in worker threads: hundreds of runs share one event loop.
        record, intent = await run_io(_look_up, cache, request, refresh and ahead is None)
        if isinstance(ahead, Prediction) and (record is None or record.prediction_id != ahead.id):
            # Another process moved the record on meanwhile: ours is no one's; stop paying.
            _ahead.pop(key, None)
            await _cancel(api, ahead.id)
            ahead = None
        if isinstance(ahead, Prediction) and record is not None:
            prediction, created = ahead, True  # this process's own create, made before the run
        elif intent is None and record is not None:
            manifest, damage = await run_io(_archived, cache, record, dest)
            if manifest is not None and not damage:
                return Cached(record=record, manifest=manifest)
            found = await _resumable(api, request, record)
            if manifest is not None and found is None:
                # a file of the archive is gone: only its own prediction may restore it
                raise damaged_error(manifest, damage)
            if found is not None:
                prediction = found
                if record.prediction_id != prediction.id:  # found after a lost create: record it
                    # (never rewrite an unchanged record: a run archiving this prediction right
                    # now, under its prediction lock, may be marking it archived)
                    record = cache.put(record.model_copy(update={"prediction_id": prediction.id}))
                created = False
            else:
                record, prediction = await _create(api, cache, request, record, lease)
                created = True
        else:
            record, prediction = await _create(api, cache, request, record, lease, intent)
            created = True
    prediction = await _wait(api, prediction, timeout=timeout, cancel_on_exit=created, early=True)
    if not prediction.files_ready_early:
        ensure_succeeded(prediction)
    _ahead.pop(key, None)  # taken: from here on the run owns it
    took = isinstance(ahead, Prediction)
    return Ready(record=record, prediction=prediction, created=created, ahead=took)


# Creates this process makes for a request before the run that archives it gets there
# (`create_ahead`), by cache key: None while it runs, then the prediction or the error. That
# run's `generate` takes the prediction as its own create, or raises the error as its own.
_ahead: dict[str, Prediction | BaseException | None] = {}


def expect_ahead(request: PredictionRequest) -> None:
    """Announce `create_ahead(request)` before it starts (any thread): a run of another
    request then refuses to create rather than risk paying twice."""
    _ahead.setdefault(request.cache_key, None)


def unclaimed(request: PredictionRequest) -> bool:
    """Whether `create_ahead(request)` made a prediction that no run has taken (yet)."""
    return isinstance(_ahead.get(request.cache_key), Prediction)


def forget_ahead(request: PredictionRequest) -> None:
    """Forget `create_ahead(request)` and what it made (nothing to cancel)."""
    _ahead.pop(request.cache_key, None)


async def cancel_unclaimed(request: PredictionRequest, *, api: ReplicateAPI) -> Prediction | None:
    """Forget `create_ahead(request)`; if no run took the prediction it made, cancel it if it
    still runs (as a run's clean-up would). That prediction as it is now (canceled, or already
    ended: a succeeded one is recorded for the request, so the next run archives it), or None."""
    found = _ahead.pop(request.cache_key, None)
    if not isinstance(found, Prediction):
        return None
    now = await api.get(found.id)
    if not now.terminal:
        now = await api.cancel(found.id)
    return now


async def create_ahead(
    request: PredictionRequest,
    *,
    api: ReplicateAPI,
    cache: PredictionCache,
    lock: FileKeyLock | RedisKeyLock,
) -> Prediction | None:
    """Create the prediction for `request` now if `generate` would create one (nothing is
    recorded for it), for the run this process starts next: the CLI's `run` pays for the
    model's time while Prefect loads. Under the same key lock, intent and records as
    `generate`, whose call for the request takes the outcome as its own: the prediction (to
    cancel if that run is cancelled) or the error. None when anything is recorded for the
    request (or a run got the lock first): the run decides, as ever."""
    key = request.cache_key
    expect_ahead(request)
    try:
        async with lock.hold(key) as lease:
            if key not in _ahead or await run_io(cache.get, key) is not None:
                _ahead.pop(key, None)
                return None
            try:
                _, prediction = await _create(api, cache, request, None, lease)
            except BaseException as exc:
                _ahead[key] = exc
                raise
            _ahead[key] = prediction
            return prediction
    except BaseException:
        if _ahead.get(key, False) is None:  # failed before its create: the run creates
            _ahead.pop(key, None)
        raise


async def finalize(api: ReplicateAPI, prediction: Prediction, *, timeout: float) -> Prediction:
    """The prediction's final, succeeded state (files may have been fetched before it ended)."""
    if not prediction.terminal:
        prediction = await _wait(api, prediction, timeout=timeout, cancel_on_exit=False)
    return ensure_succeeded(prediction)


async def _resumable(
    api: ReplicateAPI, request: PredictionRequest, record: CacheRecord
) -> Prediction | None:
    """The recorded prediction, if it may still deliver outputs without paying again."""
    prediction: Prediction | None = None
    if record.prediction_id:
        try:
            prediction = await api.get(record.prediction_id)
        except InvalidRequest:  # 404: unknown to this account (deleted, or another token)
            return None
    elif record.state == "creating":
        # A run died between intent and answer: the prediction may exist. Find it, don't pay.
        prediction = await api.find_created(request, since=record.since)
    if prediction is None or prediction.status in ("failed", "canceled", "aborted"):
        return None
    if prediction.status == "succeeded" and not prediction.outputs_available:
        return None  # outputs removed: only a new prediction can restore the archive
    return prediction


def _archived(
    cache: PredictionCache, record: CacheRecord, dest: Destination
) -> tuple[Manifest | None, list[Damage]]:
    """The record's manifest in `dest` (if any) and its files that are not there as it says."""
    manifest = cache.archived_manifest(record, dest)
    return manifest, [] if manifest is None else damaged_files(dest, manifest)


def _look_up(
    cache: PredictionCache, request: PredictionRequest, refresh: bool
) -> tuple[CacheRecord | None, CacheRecord | None]:
    """The request's cache record, and the `creating` intent if a prediction is to be created
    anyway (no record, or `refresh`), written in the same trip to an I/O thread."""
    record = cache.get(request.cache_key)
    if record is not None and not refresh:
        return record, None
    return record, cache.put(_intent(request, record))


def _intent(request: PredictionRequest, record: CacheRecord | None) -> CacheRecord:
    return CacheRecord(
        key=request.cache_key,
        model=str(request.model),
        state="creating",
        archives=record.archives if record else {},
    )


async def _create(
    api: ReplicateAPI,
    cache: PredictionCache,
    request: PredictionRequest,
    record: CacheRecord | None,
    lease: Lease,
    intent: CacheRecord | None = None,
) -> tuple[CacheRecord, Prediction]:
    """Create the prediction after its intent is durable (`intent`, if already written)."""
    if intent is None:
        intent = await run_io(cache.put, _intent(request, record))
    try:
        prediction = await api.create(request, fence=lease.ensure_held)
    except (asyncio.CancelledError, KeyboardInterrupt):
        await _cancel_lost_create(api, request, intent.since)
        raise
    pending = intent.model_copy(update={"state": "pending", "prediction_id": prediction.id})
    try:
        record = await run_io(cache.put, pending)
    except (asyncio.CancelledError, KeyboardInterrupt):
        await _cancel(api, prediction.id)  # as an interrupted wait would
        raise
    return record, prediction


async def _wait(
    api: ReplicateAPI,
    prediction: Prediction,
    *,
    timeout: float,
    cancel_on_exit: bool,
    early: bool = False,
) -> Prediction:
    try:
        return await api.wait(prediction, timeout=timeout, early=early)
    except TimeoutError as exc:
        if cancel_on_exit:
            await _cancel(api, prediction.id)
        raise PredictionCanceled(
            f"prediction {prediction.id} did not finish within {timeout:g}s and was canceled"
        ) from exc
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        if cancel_on_exit:
            await _cancel(api, prediction.id)
        raise


async def _cancel(api: ReplicateAPI, prediction_id: str) -> None:
    """Cancel on Replicate, even while our own task is being cancelled."""
    try:
        await asyncio.wait_for(asyncio.shield(api.cancel(prediction_id)), CANCEL_TIMEOUT)
    except BaseException:  # noqa: BLE001, S110 - best effort: already on an error path
        pass


async def _cancel_lost_create(
    api: ReplicateAPI, request: PredictionRequest, since: datetime
) -> None:
    async def find_and_cancel() -> None:
        found = await api.find_created(request, since=since)
        if found is not None and not found.terminal:
            await api.cancel(found.id)

    try:
        await asyncio.wait_for(asyncio.shield(find_and_cancel()), CANCEL_TIMEOUT)
    except BaseException:  # noqa: BLE001, S110 - best effort: already on an error path
        pass


async def cancel_recorded(
    request: PredictionRequest, *, api: ReplicateAPI, cache: PredictionCache
) -> Prediction | None:
    """Cancel the prediction recorded for `request` if it is still running (for cleanup hooks)."""
    record = cache.get(request.cache_key)
    if record is None or record.state == "archived":
        return None
    prediction: Prediction | None
    if record.prediction_id:
        prediction = await api.get(record.prediction_id)
    else:
        prediction = await api.find_created(request, since=record.since)
    if prediction is None or prediction.terminal:
        return None
    return await api.cancel(prediction.id)
