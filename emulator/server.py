"""``Emulator``: the app served by uvicorn in a background thread, as a context manager."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn

from emulator.app import Backend, build_app
from emulator.clock import Clock, SystemClock
from emulator.faults import FaultBox, Faults
from emulator.models import ModelRegistry
from emulator.stats import Stats

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def public_host(host: str) -> str:
    """The host clients should use for a bind address (wildcards become loopback)."""
    return _WILDCARDS.get(host, host)


def url_host(host: str) -> str:
    """``host`` as it appears in a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host else host


class _ThreadServer(uvicorn.Server):
    """uvicorn's Server whose main loop wakes up at once when asked to exit."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.1)
            except TimeoutError:
                pass

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown without its fixed 0.1 s pause (it adds up over a test suite)."""
        self._on_shutdown()
        state = getattr(self, "server_state", None)
        if state is None or not hasattr(self, "servers"):  # a uvicorn we do not know
            return await super().shutdown(sockets)
        for server in self.servers:
            server.close()
        for connection in list(state.connections):
            connection.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.timeout_graceful_shutdown or 0)
        while state.connections and loop.time() < deadline:
            await asyncio.sleep(0.005)
        for task in list(state.tasks):
            task.cancel()
        for server in self.servers:
            await server.wait_closed()
        return None

    def request_exit(self) -> None:
        """Thread-safe: make the server shut down now rather than at its next tick."""
        self.should_exit = True
        if self._loop is not None and self._wake is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # loop already closed
                pass


class Emulator:
    """A Replicate-compatible API emulator on a real loopback port.

    ``Emulator(processing_seconds=0.05, first_urls_expired=True)`` — any :class:`Faults`
    field may be passed as a keyword, on top of ``faults``.  Use as a context manager, or
    call :meth:`start` / :meth:`stop`.  ``clock`` (e.g. a :class:`~emulator.clock.ManualClock`)
    drives every time the emulator measures; ``webhook_secret`` fixes the ``whsec_`` key.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        *,
        clock: Clock | None = None,
        webhook_secret: str | None = None,
        models: tuple[str, ...] | list[str] = (),
        any_model: bool = False,
        **fault_overrides: Any,
    ) -> None:
        self.host = host
        self.port = port
        # Which owner/name exist: built-ins, well-known names, `models`; every name if any_model.
        self.models = ModelRegistry(models, any_model=any_model)
        self.clock: Clock = clock or SystemClock()
        self._webhook_secret = webhook_secret
        self._box = FaultBox((faults or Faults()).replace(**fault_overrides))
        self._backend: Backend | None = None
        self._server: _ThreadServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> Self:
        """Bind the port, start uvicorn in a daemon thread and wait until it serves."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(
            family, socket.SOCK_STREAM, socket.IPPROTO_TCP
        )  # proto: asyncio sets TCP_NODELAY
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._backend = Backend(
            self.base_url, self._box, self.clock, self._webhook_secret, self.models
        )
        config = uvicorn.Config(
            build_app(self._backend),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=30,
        )
        self._server = _ThreadServer(config, on_shutdown=self._backend.release_waiters)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"replicate-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the emulator failed to start")
            time.sleep(0.005)
        return self  # the listening socket now belongs to uvicorn, which closes it on exit

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread (idempotent)."""
        if self._server is not None and self._thread is not None:
            self._server.request_exit()
            self._thread.join(timeout=10)
        self._thread = None
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------
    @property
    def delivery_host(self) -> str:
        """The host name output URLs use (for ``REPLICATE_DELIVERY_HOSTS``)."""
        return public_host(self.host)

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``: what to set as ``REPLICATE_BASE_URL`` (no ``/v1``)."""
        return f"http://{url_host(self.delivery_host)}:{self.port}"

    def env(self) -> dict[str, str]:
        """``REPLICATE_BASE_URL`` and ``REPLICATE_DELIVERY_HOSTS`` for this emulator."""
        return {"REPLICATE_BASE_URL": self.base_url, "REPLICATE_DELIVERY_HOSTS": self.delivery_host}

    # -- webhooks and predictions made elsewhere ---------------------------------------------
    @property
    def webhook_secret(self) -> str:
        """The ``whsec_`` key webhook deliveries are signed with (once started)."""
        if self._backend is None:
            raise RuntimeError("the emulator is not started")
        return self._backend.webhooks.secret

    @property
    def pending_webhooks(self) -> int:
        """Webhook deliveries still being sent or waiting for a retry."""
        return 0 if self._backend is None else self._backend.webhooks.pending

    def add_prediction(self, **fields: Any) -> dict[str, Any]:
        """Add a prediction "made elsewhere" (``POST /_emulator/predictions``); its JSON.

        ``model``, ``input``, ``status`` (a final status, or ``starting``), ``source``
        (``api``/``web``), ``age_seconds`` (how long ago it was created), ``error``.
        """
        response = httpx.post(f"{self.base_url}/_emulator/predictions", json=fields, timeout=30)
        if response.status_code != 201:
            raise ValueError(f"add_prediction: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def register_models(self, *names: str) -> None:
        """Make models ``owner/name`` exist (they run the demo image model)."""
        self.models.register(*names)

    def upload_file(
        self,
        data: bytes,
        filename: str = "file.bin",
        content_type: str = "application/octet-stream",
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Upload through ``POST /v1/files`` (as another client of the account would); the file
        object, whose ``urls.get`` a prediction input may name."""
        response = httpx.post(
            f"{self.base_url}/v1/files",
            files={"content": (filename, data, content_type)},
            data={"metadata": json.dumps(metadata or {})},
            headers={"Authorization": "Bearer emulator"},
            timeout=30,
        )
        if response.status_code != 201:
            raise ValueError(f"upload_file: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def delete_file(self, file_id: str) -> None:
        """Delete an uploaded file (``DELETE /v1/files/{id}``), as retention would."""
        httpx.delete(
            f"{self.base_url}/v1/files/{file_id}",
            headers={"Authorization": "Bearer emulator"},
            timeout=30,
        )

    # -- faults and stats ----------------------------------------------------------------
    @property
    def faults(self) -> Faults:
        """The current faults (counters show what is left)."""
        return self._box.get()

    def set_faults(self, **changes: Any) -> Faults:
        """Change faults at runtime; giving a counter re-arms it to that value."""
        return self._box.update(**changes)

    def stats(self) -> Stats:
        """A snapshot of the request counters."""
        if self._backend is None:
            return Stats()
        return self._backend.snapshot()

    def reset_stats(self) -> None:
        """Zero the request counters (faults unchanged)."""
        if self._backend is not None:
            self._backend.stats.reset()

    def reset(self) -> None:
        """Zero the counters and disarm every count-based fault (``POST /_emulator/reset``)."""
        if self._backend is not None:
            self._backend.reset()
        else:
            self._box.reset_counters()
