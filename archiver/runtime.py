"""Everything a run talks to, built once from settings: API, delivery HTTP, archive, cache, lock."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import replicate

from . import __version__
from .cache import PredictionCache
from .download import DownloadOptions
from .errors import register_secret
from .locks import FileKeyLock, RedisKeyLock, key_lock
from .outputs import HostAllowList
from .progress import NullProgress, ProgressSink
from .replicate_api import ReplicateAPI
from .settings import Settings
from .storage import Destination, open_destination

USER_AGENT = f"replicate-archiver/{__version__}"
_SECRET_OPTION_WORDS = ("secret", "password", "token", "key", "credential", "session")


@dataclass
class Runtime:
    """The clients of one run. Build with `Runtime.build`, close with `await runtime.aclose()`."""

    settings: Settings
    api: ReplicateAPI
    http: httpx.AsyncClient
    dest: Destination
    cache: PredictionCache
    lock: FileKeyLock | RedisKeyLock
    staging: Path
    allow: HostAllowList
    progress: ProgressSink = field(default_factory=NullProgress)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        dest: str | None = None,
        storage_options: dict[str, Any] | None = None,
        progress: ProgressSink | None = None,
    ) -> Runtime:
        token = settings.token()
        register_secret(token)
        options = {**settings.storage_options, **(storage_options or {})}
        for name, value in options.items():
            if any(word in name.lower() for word in _SECRET_OPTION_WORDS):
                register_secret(str(value))
        destination = open_destination(dest or settings.dest, options)
        cache_store = (
            open_destination(settings.cache_url, options)
            if settings.cache_url
            else open_destination(destination.url_for(destination.path(".archiver/cache")), options)
        )
        staging = Path(settings.staging_dir).expanduser() if settings.staging_dir else (
            Path(destination.path(".archiver/staging"))
            if destination.is_local
            else Path.home() / ".cache/replicate-archiver/staging"
        )
        client = replicate.Client(api_token=token, base_url=settings.base_url)
        return cls(
            settings=settings,
            api=ReplicateAPI(
                client,
                wait_seconds=settings.wait_seconds,
                poll_interval=settings.poll_interval,
                create_attempts=settings.create_attempts,
                max_rate_limit_wait=settings.max_rate_limit_wait,
            ),
            http=httpx.AsyncClient(
                headers={"User-Agent": USER_AGENT},
                timeout=httpx.Timeout(settings.http_timeout, connect=10.0),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            ),
            dest=destination,
            cache=PredictionCache(cache_store),
            lock=key_lock(settings.lock_url, staging.parent / "locks"),
            staging=staging,
            allow=HostAllowList(settings.delivery_hosts),
            progress=progress or NullProgress(),
        )

    def download_options(self) -> DownloadOptions:
        s = self.settings
        return DownloadOptions(
            concurrency=s.download_concurrency,
            attempts=s.download_attempts,
            chunk_size=s.chunk_size,
            progress=self.progress,
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.api.client._async_client.aclose()
