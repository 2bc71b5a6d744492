"""The Replicate API layer: create (paying at most once), get, cancel, wait, find a lost create.

It talks to the API through an `httpx.AsyncClient` it is given (base URL, bearer token and
User-Agent set, no transport retries: see `archiver.runtime`), parses answers itself (the
replicate client cannot parse an `aborted` prediction and has no `Cancel-After`), and retries
each request with its policy from `archiver.retry`, once. Every foreign error is translated
here, once, into `archiver.errors`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from .errors import (
    ArchiverError,
    InvalidRequest,
    PredictionAborted,
    PredictionCanceled,
    PredictionFailed,
    ServiceUnavailable,
    api_error,
    from_httpx,
)
from .prediction import Prediction, PredictionRequest
from .retry import RetryPolicies, Sleep, retry_call

# Transport errors after which the server may or may not have acted on a POST.
_UNCERTAIN = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.RemoteProtocolError,
    httpx.WriteError,
    httpx.WriteTimeout,
)


class ReplicateAPI:
    """Replicate predictions through an `httpx.AsyncClient` on the API (built once, passed in)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        wait_seconds: int = 60,
        poll_interval: float = 0.5,
        policies: RetryPolicies | None = None,
        sleep: Sleep = asyncio.sleep,
        before_create: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.http = http
        self.before_create = before_create  # the create rate limiter, awaited before each POST
        self.wait_seconds = wait_seconds
        self.poll_interval = poll_interval
        self.policies = policies or RetryPolicies()
        self._sleep = sleep

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- raw calls ----------------------------------------------------------------------------

    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """One HTTP request, no retry; errors translated."""
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise from_httpx(exc, f"{method} {url}") from exc
        if response.status_code >= 400:
            raise api_error(response.status_code, _detail(response), response.headers)
        try:
            return response.json()
        except ValueError as exc:
            raise ServiceUnavailable(f"{method} {url}: answer is not JSON") from exc

    async def _read(self, method: str, url: str) -> dict[str, Any]:
        """An idempotent request, retried with the `api_get` policy."""
        return await retry_call(
            self.policies.api_get,
            lambda: self._call(method, url),
            what=f"{method} {url}",
            sleep=self._sleep,
        )

    async def get(self, prediction_id: str) -> Prediction:
        return Prediction.model_validate(
            await self._read("GET", f"/v1/predictions/{prediction_id}")
        )

    async def get_file(self, url: str) -> dict[str, Any]:
        """A Files API file object by its `urls.get` (on this client's API host: the token
        goes nowhere else; the caller checks the host)."""
        return await self._read("GET", url)

    async def upload_file(
        self,
        path: Path,
        *,
        content_type: str,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`POST /v1/files` (multipart `content` with filename and type, and `metadata`): the
        file object, whose `urls.get` a prediction input may name. Retried with the `upload`
        policy (an upload that went through twice costs a duplicate file, never a payment);
        the file is read again from disk for each attempt."""

        async def attempt() -> dict[str, Any]:
            with path.open("rb") as content:
                return await self._call(
                    "POST",
                    "/v1/files",
                    files={"content": (path.name, content, content_type)},
                    data={"metadata": json.dumps(metadata or {})},
                    timeout=httpx.Timeout(60.0, connect=10.0),
                )

        return await retry_call(self.policies.upload, attempt, sleep=self._sleep)

    async def cancel(self, prediction_id: str) -> Prediction:
        path = f"/v1/predictions/{prediction_id}/cancel"
        return Prediction.model_validate(await self._read("POST", path))

    # -- create -------------------------------------------------------------------------------

    async def create(
        self, request: PredictionRequest, *, fence: Callable[[], Awaitable[None]] | None = None
    ) -> Prediction:
        """Create the prediction, paying at most once.

        A 429 waits as the API asks and tries again (nothing was created). A lost answer
        (connection dropped after sending, 5xx) looks for the prediction among recent ones
        before trying again, so one request never becomes two predictions; if that lookup
        gives up, so does the create. `fence` (the key lock's check that we still hold it) is
        awaited right before each POST.
        """
        path, body = _create_target(request)
        headers = {"Prefer": f"wait={self.wait_seconds}"}
        if request.deadline:
            headers["Cancel-After"] = f"{request.deadline:g}s"
        timeout = httpx.Timeout(10.0, read=self.wait_seconds + 10.0)

        async def attempt() -> Prediction:
            if self.before_create is not None:
                await self.before_create()
            if fence is not None:
                await fence()
            sent_at = datetime.now(UTC)
            try:
                data = await self._post_create(path, body, headers, timeout)
            except _LostAnswer as lost:
                found = await self.find_created(request, since=sent_at)
                if found is not None:
                    return found
                raise lost.error from lost
            return Prediction.model_validate(data)

        return await retry_call(
            self.policies.create, attempt, what=f"POST {path}", sleep=self._sleep
        )

    async def _post_create(
        self, path: str, body: dict[str, Any], headers: dict[str, str], timeout: httpx.Timeout
    ) -> dict[str, Any]:
        try:
            response = await self.http.post(path, json=body, headers=headers, timeout=timeout)
        except _UNCERTAIN as exc:
            raise _LostAnswer(from_httpx(exc, f"POST {path}")) from exc
        except httpx.HTTPError as exc:
            raise from_httpx(exc, f"POST {path}") from exc
        if response.status_code >= 500:
            raise _LostAnswer(api_error(response.status_code, _detail(response)))
        if response.status_code >= 400:
            raise api_error(response.status_code, _detail(response), response.headers)
        return response.json()

    async def find_created(
        self, request: PredictionRequest, since: datetime, *, slack: float = 30.0
    ) -> Prediction | None:
        """The most recent prediction created from `request` at or after `since`, if any."""
        cutoff = since - timedelta(seconds=slack)
        url: str | None = "/v1/predictions"
        while url:
            page = await self._read("GET", url)
            for item in page.get("results", []):
                prediction = Prediction.model_validate(item)
                if prediction.created_at and prediction.created_at < cutoff:
                    return None
                if request.matches(prediction):
                    return prediction
            url = page.get("next")
        return None

    # -- waiting ------------------------------------------------------------------------------

    async def wait(
        self, prediction: Prediction, *, timeout: float, early: bool = False
    ) -> Prediction:
        """Poll until the prediction is terminal (or, with `early`, its files are all out).

        `TimeoutError` after `timeout` seconds; the last error after `wait_poll.attempts`
        consecutive failed polls.
        """
        give_up = time.monotonic() + timeout
        path = f"/v1/predictions/{prediction.id}"
        while not (prediction.terminal or (early and prediction.files_ready_early)):
            if time.monotonic() >= give_up:
                raise TimeoutError(f"prediction {prediction.id} still {prediction.status}")
            await self._sleep(self.poll_interval)
            data = await retry_call(
                self.policies.wait_poll,
                lambda: self._call("GET", path),
                what=f"GET {path}",
                sleep=self._sleep,
            )
            prediction = Prediction.model_validate(data)
        return prediction

    # -- account-wide listing and webhooks (archive what other clients created) -----------------

    async def list_page(self, url: str) -> dict[str, Any]:
        """One page of `GET /v1/predictions...` (`url` relative, or a `next` link), retried
        with the `list_page` policy: its attempts, and a budget for all its waits."""
        return await retry_call(
            self.policies.list_page,
            lambda: self._call("GET", url),
            what=f"GET {url}",
            sleep=self._sleep,
        )

    async def webhook_secret(self) -> str:
        """The account's `whsec_` webhook signing secret (`GET /v1/webhooks/default/secret`)."""
        data = await self._call("GET", "/v1/webhooks/default/secret")
        key = data.get("key")
        if not isinstance(key, str) or not key:
            raise ServiceUnavailable("GET /v1/webhooks/default/secret: no key in the answer")
        return key


class _LostAnswer(Exception):
    """A create whose outcome is unknown: the request may have created a prediction."""

    def __init__(self, error: ArchiverError) -> None:
        super().__init__(str(error))
        self.error = error


def _create_target(request: PredictionRequest) -> tuple[str, dict[str, Any]]:
    path, body = _create_path_body(request)
    if request.webhook:
        body = {**body, "webhook": request.webhook, "webhook_events_filter": ["completed"]}
    return path, body


def _create_path_body(request: PredictionRequest) -> tuple[str, dict[str, Any]]:
    ref = request.model
    if ref.deployment:
        return f"/v1/deployments/{ref.owner}/{ref.name}/predictions", {"input": request.input}
    if ref.version:
        return "/v1/predictions", {"version": f"{ref.slug}:{ref.version}", "input": request.input}
    return f"/v1/models/{ref.owner}/{ref.name}/predictions", {"input": request.input}


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)
    return str(body)[:200]


def ensure_succeeded(prediction: Prediction) -> Prediction:
    """Return a succeeded prediction; raise the matching permanent error otherwise."""
    where = f"prediction {prediction.id} ({prediction.model})"
    if prediction.status == "failed":
        raise PredictionFailed(f"{where} failed: {prediction.error or 'no error text'}")
    if prediction.status == "canceled":
        raise PredictionCanceled(f"{where} was canceled before it finished")
    if prediction.status == "aborted":
        raise PredictionAborted(f"{where} was aborted before it started (deadline reached?)")
    if prediction.status != "succeeded":
        raise InvalidRequest(f"{where} is {prediction.status}, not finished")
    return prediction
