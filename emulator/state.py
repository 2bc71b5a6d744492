"""The predictions store and the lifecycle runner (asyncio tasks in the server's loop).

A prediction goes ``starting`` -> ``processing`` -> ``succeeded | failed | canceled``, or
``aborted`` when its ``Cancel-After`` deadline passes before it starts processing.  All
mutation happens on the server's event loop; only :class:`FaultBox` and the stats recorder
are shared with other threads.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import secrets
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.clock import Clock, SystemClock
from emulator.faults import FaultBox
from emulator.files import OutputFile
from emulator.models import BUILTIN_MODELS, ModelSpec, version_id

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
PROGRESS_STEPS = 4


def new_prediction_id() -> str:
    """A random 26-character lowercase base32 id, like the real API's."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(26))


@dataclass(eq=False)
class Prediction:
    """One emulated prediction and everything needed to serve it."""

    id: str
    seq: int
    model: str
    version: str
    input: dict[str, Any]
    spec: ModelSpec
    params: dict[str, Any] = field(default_factory=dict)
    deployment: str | None = None
    created_at: float = field(default_factory=time.time)
    deadline: float | None = None
    status: str = "starting"
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None
    log_lines: list[str] = field(default_factory=list)
    template: Any = None
    files: list[OutputFile] = field(default_factory=list)
    data_removed: bool = False
    urls_handed_out: bool = False
    remove_after_show: bool = False
    force_fail: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    deadline_handle: asyncio.Task[None] | None = None
    source: str = "api"
    webhook: str | None = None
    webhook_events: frozenset[str] = frozenset()

    @property
    def terminal(self) -> bool:
        """True once the prediction has reached a final status."""
        return self.status in TERMINAL

    def log(self, line: str) -> None:
        """Append a log line."""
        self.log_lines.append(line)

    def remove_data(self) -> None:
        """Drop the output (as Replicate does after retention): output null, files gone."""
        self.data_removed = True
        self.template = None
        self.files = []

    def expire(self, retention_seconds: float, now: float) -> None:
        """Remove an API prediction's data once it is finished and ``retention_seconds`` old.

        As on Replicate, predictions made on the website keep their data.
        """
        if (
            self.source == "api"
            and self.completed_at is not None
            and not self.data_removed
            and now - self.created_at >= retention_seconds
        ):
            self.remove_data()


def _encode_cursor(kind: str, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    """Parse a page cursor; raise ValueError when it is not one of ours."""
    try:
        kind, _, seq = (
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        )
        if kind not in ("a", "b"):
            raise ValueError(kind)
        return kind, int(seq)
    except Exception as exc:
        raise ValueError(f"invalid cursor {cursor!r}") from exc


class Store:
    """All predictions of one emulator, plus the versions it has seen."""

    def __init__(self, faults: FaultBox, clock: Clock | None = None) -> None:
        self.faults = faults
        self.clock: Clock = clock or SystemClock()
        #: Called with ``(prediction, event)`` for webhook events (``start``, ``output``,
        #: ``completed``); set by the backend.
        self.on_event: Callable[[Prediction, str], None] = lambda pred, event: None
        self.predictions: dict[str, Prediction] = {}
        # Every prediction most recent first, with ascending negated (created_at, seq) keys,
        # re-sorted only after a prediction was added (created_at is set before it is stored).
        self._listing: tuple[list[Prediction], list[tuple[float, int]]] = ([], [])
        self._by_seq: dict[int, Prediction] = {}
        # API predictions by creation time, until retention has applied to them (`sweep`).
        self._retained: list[tuple[float, int, Prediction]] = []
        self.versions: dict[str, str] = {version_id(name): name for name in BUILTIN_MODELS}
        self._seq = 0

    def see_model(self, model: str) -> str:
        """Remember ``model`` so its bare version id is accepted later; return the id."""
        vid = version_id(model)
        self.versions.setdefault(vid, model)
        return vid

    def get(self, prediction_id: str) -> Prediction | None:
        """The prediction, with retention applied, or None."""
        pred = self.predictions.get(prediction_id)
        if pred is not None:
            pred.expire(self.faults.get().retention_seconds, self.clock.now())
        return pred

    def sweep(self) -> None:
        """Apply retention to every prediction old enough for it.

        Incremental: the API predictions not yet past retention wait in a heap by creation
        time, and each sweep pops only those now old enough (one that has not finished yet is
        expired by `finish` instead; `get` and listings apply retention to what they show).
        A full pass per create made every create cost O(predictions held)."""
        retention, now = self.faults.get().retention_seconds, self.clock.now()
        while self._retained and now - self._retained[0][0] >= retention:
            _, _, pred = heapq.heappop(self._retained)
            pred.expire(retention, now)

    def create(
        self,
        model: str,
        version: str,
        input_: dict[str, Any],
        spec: ModelSpec,
        params: dict[str, Any],
        *,
        deployment: str | None = None,
        cancel_after: float | None = None,
        webhook: str | None = None,
        webhook_events: frozenset[str] = frozenset(),
        source: str = "api",
        created_at: float | None = None,
    ) -> Prediction:
        """Register a prediction and start its lifecycle task (call on the server loop).

        ``input_`` is the input as sent; ``params`` is it validated, with defaults applied.
        """
        pred = self._register(model, version, input_, spec, params, deployment, source, created_at)
        pred.webhook, pred.webhook_events = webhook, webhook_events
        pred.force_fail = self.faults.take("fail_predictions")
        pred.log(f"Queued {model} on the emulator")
        loop = asyncio.get_running_loop()
        if cancel_after is not None:
            pred.deadline = pred.created_at + cancel_after
            pred.deadline_handle = loop.create_task(self._deadline(pred, cancel_after))
        pred.task = loop.create_task(self._run(pred))
        self.on_event(pred, "start")
        return pred

    def _register(
        self,
        model: str,
        version: str,
        input_: dict[str, Any],
        spec: ModelSpec,
        params: dict[str, Any],
        deployment: str | None,
        source: str,
        created_at: float | None,
    ) -> Prediction:
        self.sweep()
        self._seq += 1
        pred_id = new_prediction_id()
        while pred_id in self.predictions:
            pred_id = new_prediction_id()
        pred = Prediction(pred_id, self._seq, model, version, input_, spec, params, deployment)
        pred.created_at = self.clock.now() if created_at is None else created_at
        pred.source = source
        # What a model prints first: its own id and input, so each prediction's logs differ.
        pred.log(f"Prediction {pred_id}: input {json.dumps(input_, sort_keys=True)[:200]}")
        self.predictions[pred_id] = pred
        if source == "api":
            heapq.heappush(self._retained, (pred.created_at, pred.seq, pred))
        return pred

    async def add_finished(
        self,
        model: str,
        version: str,
        input_: dict[str, Any],
        spec: ModelSpec,
        params: dict[str, Any],
        *,
        status: str,
        source: str,
        created_at: float,
        error: str | None = None,
    ) -> Prediction:
        """A prediction "made elsewhere" that already ended as ``status`` (call on the loop).

        It gets the model's outputs when it succeeded; retention applies as to any other.
        """
        produced = None
        if status == "succeeded":
            produced = await asyncio.to_thread(spec.produce, params, False)
        pred = self._register(model, version, input_, spec, params, None, source, created_at)
        pred.log(f"Queued {model} elsewhere")
        if status != "aborted":
            pred.started_at = created_at
        if produced is not None:
            pred.template, pred.files = produced.template, produced.files
        pred.status = status
        pred.completed_at = min(created_at + self.faults.get().processing_seconds, self.clock.now())
        if status == "failed":
            pred.error = error or self.faults.get().error_text
        pred.done.set()
        pred.expire(self.faults.get().retention_seconds, self.clock.now())
        return pred

    def cancel(self, pred: Prediction) -> None:
        """Cancel a running prediction; terminal ones are left unchanged."""
        self.finish(pred, "canceled")

    def finish(self, pred: Prediction, status: str, error: str | None = None) -> None:
        """Move ``pred`` to terminal ``status`` (no-op when already terminal)."""
        if pred.terminal:
            return
        pred.status = status
        pred.completed_at = self.clock.now()
        if status == "failed":
            pred.error = error or self.faults.get().error_text
            pred.log(f"Traceback (most recent call last):\nRuntimeError: {pred.error}")
        elif status == "aborted":
            pred.log("Prediction aborted: deadline reached before it started")
        elif status == "canceled":
            pred.log("Prediction canceled")
        else:
            pred.log("Prediction succeeded")
        if pred.deadline_handle is not None and pred.deadline_handle is not asyncio.current_task():
            pred.deadline_handle.cancel()
        pred.done.set()
        if pred.task is not None and pred.task is not asyncio.current_task():
            pred.task.cancel()
        self.on_event(pred, "completed")

    async def _deadline(self, pred: Prediction, seconds: float) -> None:
        await self.clock.sleep(seconds)
        self.finish(pred, "aborted" if pred.status == "starting" else "canceled")

    async def _run(self, pred: Prediction) -> None:
        try:
            await self.clock.sleep(self.faults.get().starting_seconds)
            faults = self.faults.get()
            if faults.final_status == "aborted" and not pred.force_fail:
                self.finish(pred, "aborted")
                return
            pred.status, pred.started_at = "processing", self.clock.now()
            pred.log(f"Running {pred.model} (version {pred.version[:12]})")
            for step in range(1, PROGRESS_STEPS + 1):
                await self.clock.sleep(faults.processing_seconds / PROGRESS_STEPS)
                bar = "#" * (10 * step // PROGRESS_STEPS)
                pct = 100 * step // PROGRESS_STEPS
                pred.log(f"{pct:3d}%|{bar:<10}| {step}/{PROGRESS_STEPS}")
            faults = self.faults.get()
            outcome = "failed" if pred.force_fail else faults.final_status
            if outcome == "succeeded":
                produced = await asyncio.to_thread(
                    pred.spec.produce, pred.params, faults.hostile_filenames
                )
                if pred.terminal:
                    return
                pred.template, pred.files = produced.template, produced.files
                self.on_event(pred, "output")
                if faults.finalize_seconds:
                    pred.log("Outputs uploaded; finalizing")
                    await self.clock.sleep(faults.finalize_seconds)
                pred.remove_after_show = self.faults.take("remove_data_after_success")
            self.finish(pred, outcome)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - a model bug becomes a failed prediction
            self.finish(pred, "failed", error=f"{type(exc).__name__}: {exc}")

    def _newest_first(self) -> tuple[list[Prediction], list[tuple[float, int]]]:
        """All predictions, most recent first, and their negated keys (ascending): sorted once
        per new prediction, not once per page (a lookup pages through thousands)."""
        if len(self._listing[0]) != len(self.predictions):
            items = sorted(
                self.predictions.values(), key=lambda p: (p.created_at, p.seq), reverse=True
            )
            self._listing = (items, [(-p.created_at, -p.seq) for p in items])
            self._by_seq = {p.seq: p for p in items}
        return self._listing

    def page(
        self,
        cursor: str | None,
        size: int,
        *,
        created_after: float | None = None,
        created_before: float | None = None,
        source: str | None = None,
    ) -> tuple[list[Prediction], str | None, str | None]:
        """One page, most recent first, plus the next/previous cursors (None at the ends).

        Only predictions created at or after ``created_after``, before ``created_before`` and
        (when given) made from ``source`` are listed.
        """
        everything, negated = self._newest_first()
        # created_before / created_after bound a contiguous run of the newest-first list.
        start = 0 if created_before is None else bisect_right(negated, (-created_before, 0))
        stop = (
            len(everything)
            if created_after is None
            else bisect_right(negated, (-created_after, float("inf")))
        )
        items = everything[start:stop]
        keys = negated[start:stop]
        if source is not None:
            items = [p for p in items if p.source == source]
            keys = [(-p.created_at, -p.seq) for p in items]

        def key(p: Prediction) -> tuple[float, int]:
            return (p.created_at, p.seq)

        if cursor is None:
            window = items[:size]
        else:
            kind, seq = _decode_cursor(cursor)
            anchor = self._by_seq.get(seq)
            if anchor is None:
                raise ValueError(f"invalid cursor {cursor!r}")
            mark = (-anchor.created_at, -anchor.seq)
            if kind == "b":  # older than the anchor: after it, newest first
                window = items[bisect_right(keys, mark) :][:size]
            else:
                window = items[: bisect_left(keys, mark)][-size:]
        if not window:
            return [], None, None
        retention, now = self.faults.get().retention_seconds, self.clock.now()
        for pred in window:  # retention applies to what is shown (as `sweep` would)
            pred.expire(retention, now)
        oldest, newest = window[-1], window[0]
        has_older = key(items[-1]) < key(oldest)  # items: newest first
        has_newer = key(items[0]) > key(newest)
        return (
            window,
            _encode_cursor("b", oldest.seq) if has_older else None,
            _encode_cursor("a", newest.seq) if has_newer else None,
        )
