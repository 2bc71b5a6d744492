"""Everything a run talks to, built once from settings: API, delivery HTTP, archive, cache, lock."""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import __version__
from .cache import PredictionCache
from .delivery import Delivery
from .download import DownloadOptions
from .errors import register_secret
from .locks import FileKeyLock, RedisKeyLock, key_lock
from .outputs import HostAllowList
from .progress import NullProgress, ProgressSink
from .ratelimit import CreateLimiter, LimitedTransport, TokenBucket
from .replicate_api import ReplicateAPI
from .retry import RetryPolicies
from .settings import Settings
from .storage import Destination, StorageOptions, open_destination, refuse_credentials

USER_AGENT = f"replicate-archiver/{__version__}"
API_CONNECTIONS = 1024  # API requests open at once (creates hold theirs during Prefer: wait)
DELIVERY_STREAMS = 8  # delivery downloads open at once (worker threads), over all predictions


def check_store_urls(settings: Settings, dest: str | None, *, dest_setting: str = "dest") -> None:
    """Refuse user:password@ in the destination (`dest`, else ARCHIVER_DEST) and the cache URL,
    naming the setting (see `refuse_credentials`)."""
    refuse_credentials(dest, setting=dest_setting)
    refuse_credentials(settings.dest, setting="ARCHIVER_DEST")
    refuse_credentials(settings.cache_url, setting="ARCHIVER_CACHE_URL")


@dataclass
class Runtime:
    """The clients of one run. Build with `Runtime.build`, close with `await runtime.aclose()`."""

    settings: Settings
    api: ReplicateAPI
    delivery: Delivery
    dest: Destination
    cache: PredictionCache
    lock: FileKeyLock | RedisKeyLock
    staging: Path
    progress: ProgressSink = field(default_factory=NullProgress)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        dest: str | None = None,
        storage_options: dict[str, Any] | None = None,
        progress: ProgressSink | None = None,
        before_create: CreateLimiter | None = None,
    ) -> Runtime:
        """`before_create` is awaited before every create request (the rate limit); default:
        an in-process token bucket at `settings.create_rate_per_minute`."""
        check_store_urls(settings, dest)  # before anything (a prediction) is paid
        token = settings.token()
        register_secret(token)
        # Parsed once (their secrets registered for redaction), then shared by both stores.
        options = StorageOptions.parse({**settings.storage_options, **(storage_options or {})})
        destination = open_destination(dest or settings.dest, options)
        cache_store = (
            open_destination(settings.cache_url, options)
            if settings.cache_url
            else open_destination(destination.url_for(destination.path(".archiver/cache")), options)
        )
        for store in (destination, cache_store):  # bad bucket / credentials: before any create
            store.backend.check(store.root, store.url)
        staging = (
            Path(settings.staging_dir).expanduser()
            if settings.staging_dir
            else (
                Path(destination.path(".archiver/staging"))
                if destination.is_local
                else Path.home() / ".cache/replicate-archiver/staging"
            )
        )
        return cls(
            settings=settings,
            api=ReplicateAPI(
                api_client(settings, token),
                wait_seconds=settings.wait_seconds,
                poll_interval=settings.poll_interval,
                policies=RetryPolicies.from_settings(settings),
                before_create=before_create
                or TokenBucket.per_minute(
                    settings.create_rate_per_minute, settings.create_burst_size
                ),
            ),
            delivery=Delivery(
                streams=DELIVERY_STREAMS,
                timeout=settings.http_timeout,
                user_agent=USER_AGENT,
                allow=HostAllowList(settings.delivery_hosts),
                ssl_context=_tls_context(),
            ),
            dest=destination,
            cache=PredictionCache(cache_store),
            lock=key_lock(settings.lock_url, staging.parent / "locks", ttl=settings.lock_ttl),
            staging=staging,
            progress=progress or NullProgress(),
        )

    @property
    def on_local_disk(self) -> bool:
        """Whether the archive and the cache are both on local disk (staging always is)."""
        return self.dest.is_local and self.cache.store.is_local

    def download_options(self) -> DownloadOptions:
        s = self.settings
        return DownloadOptions(
            concurrency=s.download_concurrency,
            attempts=s.download_attempts,
            policy=RetryPolicies.from_settings(s).download_file,
            chunk_size=s.chunk_size,
            max_data_uri_bytes=s.max_data_uri_bytes,
            progress=self.progress,
        )

    async def aclose(self) -> None:
        self.delivery.close()
        await self.api.aclose()
        if isinstance(self.lock, FileKeyLock):
            self.lock.close()


def api_client(settings: Settings, token: str | None) -> httpx.AsyncClient:
    """The HTTP client for the Replicate API: the replicate client's conventions (base URL
    without /v1, `Authorization: Bearer <token>`), our User-Agent, and no transport retries
    (every retry is `archiver.retry`'s). The token is sent to `base_url` only."""
    headers = {"User-Agent": USER_AGENT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(
        base_url=settings.base_url,
        headers=headers,
        timeout=httpx.Timeout(settings.http_timeout, connect=10.0, pool=None),
        follow_redirects=False,
        # httpx's default pool (100 connections, 10 s pool timeout) would queue, then fail,
        # creates beyond 100 in flight: each one holds its connection for `Prefer: wait`.
        # Spread over 16 small pools: httpcore's upkeep per request grows with a pool's size.
        transport=LimitedTransport(_api_pool, API_CONNECTIONS, shards=16),
    )


def _api_pool(connections: int) -> httpx.AsyncHTTPTransport:
    # Few idle connections: httpcore asks each idle one's socket for news on every request.
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=4)
    return httpx.AsyncHTTPTransport(verify=_tls_context(), limits=limits, retries=0)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context (CA bundle loaded once) for every client of the process."""
    return httpx.create_ssl_context()
