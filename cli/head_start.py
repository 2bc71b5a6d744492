"""`run`'s prediction, created while Prefect loads (`archiver.generate.create_ahead`).

A `run` spends a second or more importing Prefect and starting its flow run before the flow's
`generate` would create the prediction; the model's own time need not wait for that. Once the
Prefect API is known to answer (so the flow run can follow), `HeadStart.begin` creates the
prediction on a thread, under the key lock and cache records `generate` uses. The flow run
starts meanwhile, as before; its `generate` waits for that lock and takes the outcome as its
own: the prediction (cancelled if the run is) or the create's error. Only the create moved.

Nothing is created ahead for `--refresh` or `@file` uploads (the flow run does those as before),
where the token or storage credentials come from Prefect blocks (`possible`), or for a request
the cache knows (the run decides: a hit, a resume). Ctrl-C cancels the create and what it made
(`cli.interrupts`); a command that ends before its run took the prediction cancels it
(`close`), as a crashed run's clean-up does, or says how to archive it if it already succeeded.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import TYPE_CHECKING, Any

from archiver.prediction import Prediction, PredictionRequest
from cli import interrupts

if TYPE_CHECKING:
    from archiver.settings import Settings


def possible(settings: Settings) -> bool:
    """Whether the create can be made before Prefect loads: the token and storage credentials
    come from the environment, not from Prefect blocks (which only the flow run reads)."""
    token_in_block = settings.api_token is None and bool(settings.token_secret_block)
    return not token_in_block and not settings.aws_credentials_block


class HeadStart:
    """The create of one request's prediction on a thread of its own, begun at most once."""

    def __init__(
        self, request: PredictionRequest, dest: str | None, storage_options: dict[str, Any]
    ) -> None:
        self.request = request
        self.dest = dest
        self.storage_options = storage_options
        self._state = threading.Lock()
        self._begun = False
        self._done = threading.Event()

    def begin(self) -> None:
        """Announce the create and start it on a thread (any thread; later calls do nothing)."""
        from archiver.generate import expect_ahead

        with self._state:
            if self._begun:
                return
            self._begun = True
            try:
                expect_ahead(self.request)  # before any run of this process reaches `generate`
                threading.Thread(target=self._run, name="head-start", daemon=True).start()
            except BaseException:  # e.g. Ctrl-C right here: nothing runs, `close` must not wait
                self._done.set()
                raise

    def _run(self) -> None:
        try:
            interrupts.run(self._create())
        except BaseException:  # noqa: BLE001, S110 - the run's `generate` takes the error
            pass
        finally:
            self._done.set()

    async def _create(self) -> None:
        from archiver.generate import create_ahead

        runtime = self._runtime()
        try:
            await create_ahead(
                self.request, api=runtime.api, cache=runtime.cache, lock=runtime.lock
            )
        finally:
            await runtime.aclose()

    def _runtime(self) -> Any:
        from archiver.runtime import Runtime
        from archiver.settings import Settings

        return Runtime.build(Settings(), dest=self.dest, storage_options=self.storage_options)

    def close(self) -> None:
        """After the command's run: no create begins any more; one that began is waited for
        (Ctrl-C's timer bounds it), and a prediction no run took is cancelled."""
        with self._state:
            began, self._begun = self._begun, True
        if not began:
            return
        from archiver.generate import forget_ahead, unclaimed

        with interrupts.deferred():  # a Ctrl-C now must not cut the cancel short
            self._done.wait()
            if unclaimed(self.request):
                left = asyncio.run(self._cancel_unclaimed())
                if left is not None and left.status == "succeeded":
                    sys.stderr.write(
                        f"note: prediction {left.id} succeeded before this command failed; "
                        "the same command again archives it (Replicate keeps its outputs "
                        "for an hour)\n"
                    )
            forget_ahead(self.request)

    async def _cancel_unclaimed(self) -> Prediction | None:
        from archiver.generate import cancel_unclaimed

        runtime = self._runtime()
        try:
            return await cancel_unclaimed(self.request, api=runtime.api)
        finally:
            await runtime.aclose()
