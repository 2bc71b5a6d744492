"""The ASGI application: Replicate's ``/v1`` API, ``/delivery`` files and ``/_emulator`` control."""

from __future__ import annotations

import asyncio
import html
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from emulator import views
from emulator.clock import Clock, SystemClock
from emulator.delivery import Delivery
from emulator.elsewhere import ForeignPrediction
from emulator.faults import FaultBox
from emulator.files_api import FilesApi
from emulator.models import DEMO_MODEL, InputError, ModelRegistry, resolve_model, version_id
from emulator.parsing import parse_duration, parse_iso_timestamp, parse_prefer_wait, split_version
from emulator.responses import authorized as _authorized
from emulator.responses import input_problem as _input_problem
from emulator.responses import invalid_version as _invalid_version
from emulator.responses import model_not_found as _model_not_found
from emulator.responses import problem_response
from emulator.responses import unauthenticated as _unauthenticated
from emulator.signing import UrlSigner
from emulator.state import Prediction, Store
from emulator.stats import Stats, StatsRecorder
from emulator.webhooks import WebhookSender, new_secret, parse_events

TRANSPORT_KEY = "emulator.transport"


class Backend:
    """The emulator's shared state plus the route handlers that act on it."""

    def __init__(
        self,
        base_url: str,
        faults: FaultBox,
        clock: Clock | None = None,
        webhook_secret: str | None = None,
        models: ModelRegistry | None = None,
    ) -> None:
        self.base_url = base_url
        self.models = models or ModelRegistry()
        self.faults = faults
        self.clock: Clock = clock or SystemClock()
        self.stats = StatsRecorder()
        self.store = Store(faults, self.clock)
        self.signer = UrlSigner(clock=self.clock)
        self.render = views.Renderer(base_url, self.signer, faults, self.clock)
        self.stopping = asyncio.Event()
        self.files = FilesApi(base_url, faults, self.clock, self.stats)
        self.delivery = Delivery(self.store, self.signer, faults, self.stats, self.stopping)
        self.webhooks = WebhookSender(
            webhook_secret or new_secret(), self.clock, faults, self.stats, self.render.prediction
        )
        self.store.on_event = self.webhooks.notify

    def release_waiters(self) -> None:
        """On server shutdown: end ``Prefer: wait`` blocks and running downloads promptly."""
        self.stopping.set()
        self.webhooks.cancel_all()

    def snapshot(self) -> Stats:
        """Current stats, including the number of predictions held."""
        return self.stats.snapshot(predictions=len(self.store.predictions))

    def reset(self) -> None:
        """Reset stats and disarm every count-based fault."""
        self.stats.reset()
        self.faults.reset_counters()

    def _throttled(self) -> Response:
        """Replicate's 429: Retry-After, and the wait in the detail text as well."""
        wait = self.faults.get().retry_after_seconds
        return problem_response(
            429,
            "Request was throttled.",
            f"Request was throttled. Your rate limit resets in ~{wait}s.",
            headers={"Retry-After": str(wait)},
        )

    # -- predictions -----------------------------------------------------------------
    async def create(self, request: Request) -> Response:
        """``POST /v1/predictions``, ``/v1/models/{o}/{n}/predictions``, ``/v1/deployments/...``."""
        if not _authorized(request):
            return _unauthenticated()
        self.stats.create_attempt()
        if self.faults.take("throttle_creates"):
            return self._throttled()
        try:
            body = await request.json()
        except ValueError:
            return _input_problem([("body", "Request body must be a JSON object")])
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            return _input_problem([("input", "Invalid type. Expected: object")])
        webhook = body.get("webhook")
        if webhook is not None and not (
            isinstance(webhook, str) and webhook.startswith(("http://", "https://"))
        ):
            return _input_problem([("webhook", "Must be an HTTP(S) URL")])
        try:
            events = parse_events(body.get("webhook_events_filter"))
        except ValueError as exc:
            return _input_problem([("webhook_events_filter", str(exc))])
        target = self._target(request, body)
        if isinstance(target, Response):
            return target
        model, version, deployment = target
        spec = resolve_model(model)
        try:
            params = spec.validate(body["input"])
        except InputError as exc:
            return _input_problem(exc.problems)
        cancel_after = None
        if request.headers.get("cancel-after"):
            try:
                cancel_after = parse_duration(request.headers["cancel-after"])
            except ValueError as exc:
                return problem_response(422, "Invalid Cancel-After header", str(exc))
        self.store.see_model(model)
        pred = self.store.create(
            model, version, body["input"], spec, params,
            deployment=deployment, cancel_after=cancel_after,
            webhook=webhook, webhook_events=events,
        )  # fmt: skip
        self.stats.create_accepted(pred.id)
        if self.faults.take("drop_create_responses"):
            return await self._drop_connection(request)
        prefer_wait = parse_prefer_wait(request.headers.get("prefer"))
        if prefer_wait is not None:
            await self._wait(pred, prefer_wait)
        return JSONResponse(self.render.prediction(pred), status_code=201)

    def _target(
        self, request: Request, body: dict[str, Any]
    ) -> tuple[str, str, str | None] | Response:
        """``(model, version, deployment)`` the create request asks for, or a 422 response."""
        owner, name = request.path_params.get("owner"), request.path_params.get("name")
        if request.url.path.startswith("/v1/deployments/"):
            return DEMO_MODEL, version_id(DEMO_MODEL), f"{owner}/{name}"
        if owner is not None:
            if not self.models.knows(f"{owner}/{name}"):
                return _model_not_found(f"{owner}/{name}")
            return f"{owner}/{name}", version_id(f"{owner}/{name}"), None
        if not isinstance(body.get("version"), str):
            return _input_problem([("version", "Invalid type. Expected: string")])
        try:
            model, vid = split_version(body["version"])
        except ValueError:
            return _invalid_version()
        if model is not None and not self.models.knows(model):
            return _model_not_found(model)
        if model is not None and vid is not None and not self.models.has_version(model, vid):
            return _invalid_version()
        model = model or self.store.versions.get(vid or "") or self.models.model_of(vid or "")
        if model is None:
            return _invalid_version()
        return model, vid or version_id(model), None

    async def _wait(self, pred: Prediction, seconds: float) -> None:
        """Block until ``pred`` is terminal, ``seconds`` pass or the server stops."""
        if pred.terminal or self.stopping.is_set():
            return
        waiters = [
            asyncio.ensure_future(pred.done.wait()),
            asyncio.ensure_future(self.stopping.wait()),
        ]
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _drop_connection(self, request: Request) -> Response:
        transport = request.scope.get(TRANSPORT_KEY)
        if transport is None:
            raise ConnectionAbortedError("emulator fault: create response dropped")
        transport.close()
        for _ in range(3):  # let uvicorn notice the disconnect; the response goes nowhere
            await asyncio.sleep(0)
        return Response(status_code=204)

    async def get_prediction(self, request: Request) -> Response:
        """``GET /v1/predictions/{id}``."""
        if not _authorized(request):
            return _unauthenticated()
        pred_id = request.path_params["id"]
        self.stats.read(pred_id)
        if self.faults.take("fail_reads"):
            return problem_response(
                503, "Service Unavailable", "Emulated read failure, retry later"
            )
        pred = self.store.get(pred_id)
        if pred is None:
            return problem_response(404, "Not found", "Prediction not found")
        return JSONResponse(self.render.prediction(pred))

    async def cancel(self, request: Request) -> Response:
        """``POST /v1/predictions/{id}/cancel``."""
        if not _authorized(request):
            return _unauthenticated()
        pred_id = request.path_params["id"]
        self.stats.cancel(pred_id)
        pred = self.store.get(pred_id)
        if pred is None:
            return problem_response(404, "Not found", "Prediction not found")
        self.store.cancel(pred)
        return JSONResponse(self.render.prediction(pred))

    async def list_predictions(self, request: Request) -> Response:
        """``GET /v1/predictions?cursor=..``: most recent first."""
        if not _authorized(request):
            return _unauthenticated()
        self.stats.list_call()
        if self.faults.take("throttle_lists"):
            return self._throttled()
        query = request.query_params
        filters = {k: query[k] for k in ("created_after", "created_before", "source") if k in query}
        try:
            after, before = (
                parse_iso_timestamp(query.get(name)) for name in ("created_after", "created_before")
            )
        except ValueError as exc:
            return problem_response(400, "Invalid date-time", str(exc))
        if filters.get("source", "web") != "web":
            return problem_response(400, "Invalid source", "source must be 'web'")
        try:
            items, next_, prev = self.store.page(
                query.get("cursor"),
                self.faults.get().page_size,
                created_after=after,
                created_before=before,
                source=filters.get("source"),
            )
        except ValueError as exc:
            return problem_response(400, "Invalid cursor", str(exc))
        return JSONResponse(self.render.page(items, next_, prev, filters))

    async def webhook_secret(self, request: Request) -> Response:
        """``GET /v1/webhooks/default/secret``: the ``whsec_`` key deliveries are signed with."""
        if not _authorized(request):
            return _unauthenticated()
        return JSONResponse({"key": self.webhooks.secret})

    # -- models and account --------------------------------------------------------
    async def get_model(self, request: Request) -> Response:
        """``GET /v1/models/{owner}/{name}``: a known model (404 for any other name)."""
        if not _authorized(request):
            return _unauthenticated()
        owner, name = request.path_params["owner"], request.path_params["name"]
        model = f"{owner}/{name}"
        if not self.models.knows(model):
            return _model_not_found(model)
        self.store.see_model(model)
        runs = sum(1 for p in self.store.predictions.values() if p.model == model)
        return JSONResponse(views.model(owner, name, resolve_model(model), runs))

    async def get_version(self, request: Request) -> Response:
        """``GET /v1/models/{owner}/{name}/versions/{id}``: only the model's own version id."""
        if not _authorized(request):
            return _unauthenticated()
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        if not self.models.knows(model):
            return _model_not_found(model)
        if not self.models.has_version(model, request.path_params["version"]):
            return problem_response(404, "Not found", "Version not found")
        self.store.see_model(model)
        vid = request.path_params["version"]
        return JSONResponse(views.version(model, resolve_model(model), vid))

    async def account(self, request: Request) -> Response:
        """``GET /v1/account``: a fixed emulator account."""
        if not _authorized(request):
            return _unauthenticated()
        return JSONResponse({"type": "user", "username": "emulator", "name": "Replicate emulator"})

    async def web(self, request: Request) -> Response:
        """``GET /p/{id}``: the ``urls.web`` page, a tiny HTML summary."""
        pred = self.store.get(request.path_params["id"])
        if pred is None:
            return HTMLResponse("<h1>Prediction not found</h1>", status_code=404)
        return HTMLResponse(f"<h1>{html.escape(pred.model)}</h1><p>{pred.id}: {pred.status}</p>")

    # -- control -------------------------------------------------------------------
    async def control_faults(self, request: Request) -> Response:
        """``GET`` / ``PATCH /_emulator/faults`` (partial update, like ``set_faults``)."""
        if request.method == "PATCH":
            try:
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise TypeError("body must be a JSON object")
                self.faults.update(**changes)
            except (TypeError, ValueError) as exc:
                return JSONResponse({"detail": str(exc)}, status_code=422)
        return JSONResponse(self.faults.get().to_dict())

    async def control_add_prediction(self, request: Request) -> Response:
        """``POST /_emulator/predictions``: a prediction "made elsewhere" on the account.

        Body: ``{"model", "input", "status", "source", "age_seconds", "error"}`` (all optional;
        defaults: the demo model, ``succeeded``, ``api``, created now). A ``starting`` one runs
        its lifecycle like any other. Nothing counts as a create in the stats.
        """
        try:
            spec_ = ForeignPrediction.parse(await request.json())
        except (TypeError, ValueError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        self.models.register(spec_.model)  # made elsewhere: the model exists
        spec = resolve_model(spec_.model)
        try:
            params = spec.validate(spec_.input)
        except InputError as exc:
            return _input_problem(exc.problems)
        vid = self.store.see_model(spec_.model)
        created_at = self.clock.now() - spec_.age_seconds
        if spec_.status == "starting":
            pred = self.store.create(
                spec_.model, vid, spec_.input, spec, params,
                source=spec_.source, created_at=created_at,
            )  # fmt: skip
        else:
            pred = await self.store.add_finished(
                spec_.model, vid, spec_.input, spec, params,
                status=spec_.status, source=spec_.source, created_at=created_at,
                error=spec_.error,
            )  # fmt: skip
        return JSONResponse(self.render.prediction(pred), status_code=201)

    async def control_stats(self, request: Request) -> Response:
        """``GET /_emulator/stats``."""
        return JSONResponse(self.snapshot().to_dict())

    async def control_reset(self, request: Request) -> Response:
        """``POST /_emulator/reset``: reset stats and count-based faults."""
        self.reset()
        return JSONResponse(
            {"faults": self.faults.get().to_dict(), "stats": self.snapshot().to_dict()}
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes (404) and wrong methods (405) as problem+json."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    title = exc.detail if isinstance(exc, HTTPException) else "Internal Server Error"
    return problem_response(status, title, f"{request.method} {request.url.path}: {title}")


def build_app(backend: Backend) -> Any:
    """The ASGI callable: delivery on the raw path, everything else through Starlette."""
    routes = [
        Route("/v1/predictions", backend.create, methods=["POST"]),
        Route("/v1/predictions", backend.list_predictions, methods=["GET"]),
        Route("/v1/predictions/{id}", backend.get_prediction, methods=["GET"]),
        Route("/v1/predictions/{id}/cancel", backend.cancel, methods=["POST"]),
        Route("/v1/models/{owner}/{name}", backend.get_model, methods=["GET"]),
        Route("/v1/models/{owner}/{name}/versions/{version}", backend.get_version, methods=["GET"]),
        Route("/v1/models/{owner}/{name}/predictions", backend.create, methods=["POST"]),
        Route("/v1/deployments/{owner}/{name}/predictions", backend.create, methods=["POST"]),
        Route("/v1/account", backend.account, methods=["GET"]),
        Route("/v1/files", backend.files.create, methods=["POST"]),
        Route("/v1/files", backend.files.list, methods=["GET"]),
        Route("/v1/files/{id}", backend.files.get, methods=["GET"]),
        Route("/v1/files/{id}", backend.files.delete, methods=["DELETE"]),
        Route("/v1/files/{id}/download", backend.files.download, methods=["GET"]),
        Route("/v1/webhooks/default/secret", backend.webhook_secret, methods=["GET"]),
        Route("/_emulator/predictions", backend.control_add_prediction, methods=["POST"]),
        Route("/p/{id}", backend.web, methods=["GET"]),
        Route("/_emulator/faults", backend.control_faults, methods=["GET", "PATCH"]),
        Route("/_emulator/stats", backend.control_stats, methods=["GET"]),
        Route("/_emulator/reset", backend.control_reset, methods=["POST"]),
    ]
    starlette = Starlette(routes=routes, exception_handlers={404: _http_error, 405: _http_error})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await starlette(scope, receive, send)
        # uvicorn's receive is a bound method of the request cycle, which owns the transport.
        transport = getattr(getattr(receive, "__self__", None), "transport", None)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        if raw_path.startswith(b"/delivery/"):
            return await backend.delivery(scope, send, transport)
        scope[TRANSPORT_KEY] = transport
        await starlette(scope, receive, send)

    return app
