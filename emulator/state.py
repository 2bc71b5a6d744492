"""The predictions store and the lifecycle runner (asyncio tasks in the server's loop).

A prediction goes ``starting`` -> ``processing`` -> ``succeeded | failed | canceled``, or
``aborted`` when its ``Cancel-After`` deadline passes before it starts processing.  All
mutation happens on the server's event loop; only :class:`FaultBox` and the stats recorder
are shared with other threads.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

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
    deadline_handle: asyncio.TimerHandle | None = None

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

    def expire(self, retention_seconds: float) -> None:
        """Remove the data if ``retention_seconds`` have passed since completion."""
        completed = self.completed_at
        if (
            completed is not None
            and not self.data_removed
            and time.time() - completed >= retention_seconds
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

    def __init__(self, faults: FaultBox) -> None:
        self.faults = faults
        self.predictions: dict[str, Prediction] = {}
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
            pred.expire(self.faults.get().retention_seconds)
        return pred

    def sweep(self) -> None:
        """Apply retention to every prediction."""
        retention = self.faults.get().retention_seconds
        for pred in self.predictions.values():
            pred.expire(retention)

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
    ) -> Prediction:
        """Register a prediction and start its lifecycle task (call on the server loop).

        ``input_`` is the input as sent; ``params`` is it validated, with defaults applied.
        """
        self.sweep()
        self._seq += 1
        pred_id = new_prediction_id()
        while pred_id in self.predictions:
            pred_id = new_prediction_id()
        pred = Prediction(pred_id, self._seq, model, version, input_, spec, params, deployment)
        pred.force_fail = self.faults.take("fail_predictions")
        pred.log(f"Queued {model} on the emulator")
        self.predictions[pred_id] = pred
        loop = asyncio.get_running_loop()
        if cancel_after is not None:
            pred.deadline = pred.created_at + cancel_after
            pred.deadline_handle = loop.call_later(cancel_after, self._deadline_passed, pred)
        pred.task = loop.create_task(self._run(pred))
        return pred

    def cancel(self, pred: Prediction) -> None:
        """Cancel a running prediction; terminal ones are left unchanged."""
        self.finish(pred, "canceled")

    def finish(self, pred: Prediction, status: str, error: str | None = None) -> None:
        """Move ``pred`` to terminal ``status`` (no-op when already terminal)."""
        if pred.terminal:
            return
        pred.status = status
        pred.completed_at = time.time()
        if status == "failed":
            pred.error = error or self.faults.get().error_text
            pred.log(f"Traceback (most recent call last):\nRuntimeError: {pred.error}")
        elif status == "aborted":
            pred.log("Prediction aborted: deadline reached before it started")
        elif status == "canceled":
            pred.log("Prediction canceled")
        else:
            pred.log("Prediction succeeded")
        if pred.deadline_handle is not None:
            pred.deadline_handle.cancel()
        pred.done.set()
        if pred.task is not None and pred.task is not asyncio.current_task():
            pred.task.cancel()

    def _deadline_passed(self, pred: Prediction) -> None:
        self.finish(pred, "aborted" if pred.status == "starting" else "canceled")

    async def _run(self, pred: Prediction) -> None:
        try:
            await asyncio.sleep(self.faults.get().starting_seconds)
            faults = self.faults.get()
            if faults.final_status == "aborted" and not pred.force_fail:
                self.finish(pred, "aborted")
                return
            pred.status, pred.started_at = "processing", time.time()
            pred.log(f"Running {pred.model} (version {pred.version[:12]})")
            for step in range(1, PROGRESS_STEPS + 1):
                await asyncio.sleep(faults.processing_seconds / PROGRESS_STEPS)
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
                if faults.finalize_seconds:
                    pred.log("Outputs uploaded; finalizing")
                    await asyncio.sleep(faults.finalize_seconds)
                pred.remove_after_show = self.faults.take("remove_data_after_success")
            self.finish(pred, outcome)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # noqa: BLE001 - a model bug becomes a failed prediction
            self.finish(pred, "failed", error=f"{type(exc).__name__}: {exc}")

    def page(
        self, cursor: str | None, size: int
    ) -> tuple[list[Prediction], str | None, str | None]:
        """One page, most recent first, plus the next/previous cursors (None at the ends)."""
        self.sweep()
        items = sorted(self.predictions.values(), key=lambda p: p.seq, reverse=True)
        if cursor is None:
            window = items[:size]
        else:
            kind, seq = _decode_cursor(cursor)
            if kind == "b":
                window = [p for p in items if p.seq < seq][:size]
            else:
                window = [p for p in items if p.seq > seq][-size:]
        if not window:
            return [], None, None
        oldest, newest = window[-1].seq, window[0].seq
        has_older = any(p.seq < oldest for p in items)
        has_newer = any(p.seq > newest for p in items)
        return (
            window,
            _encode_cursor("b", oldest) if has_older else None,
            _encode_cursor("a", newest) if has_newer else None,
        )
