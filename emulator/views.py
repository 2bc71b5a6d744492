"""JSON shapes of API responses, matching Replicate's OpenAPI schema.

Serialising a prediction has side effects on purpose: output URLs are freshly signed each
time, ``first_urls_expired`` signs the first hand-out already expired, and
``remove_data_after_success`` drops the data right after the first response showing it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from emulator.clock import Clock, SystemClock
from emulator.faults import FaultBox
from emulator.files import FileRef, FileText
from emulator.models import COG_VERSION, VERSION_CREATED_AT, ModelSpec, version_id
from emulator.signing import UrlSigner, delivery_path
from emulator.state import Prediction


def iso(timestamp: float) -> str:
    """ISO 8601 UTC with microseconds and a ``Z`` suffix."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    """An RFC 7807 problem body as the real API sends it."""
    return {"title": title, "detail": detail, "status": status, **extra}


@dataclass(frozen=True)
class Renderer:
    """Everything needed to turn internal objects into API JSON."""

    base_url: str
    signer: UrlSigner
    faults: FaultBox
    clock: Clock = field(default_factory=SystemClock)

    def _render(self, value: Any, pred: Prediction, host: str, expired: bool, ttl: float) -> Any:
        if isinstance(value, FileRef):
            file = pred.files[value.index]
            if self.faults.get().data_uri_outputs:
                data = b"".join(file.iter_range())
                return f"data:{file.content_type};base64,{base64.b64encode(data).decode()}"
            path = delivery_path(pred.id, value.index, file.name)
            return f"http://{host}{self.signer.sign(path, ttl, expired=expired)}"
        if isinstance(value, FileText):
            file = pred.files[value.index]
            signed = self.signer.sign(delivery_path(pred.id, value.index, file.name), ttl)
            return value.text.replace("{delivery}", f"{host}{signed}")
        if isinstance(value, dict):
            return {k: self._render(v, pred, host, expired, ttl) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, pred, host, expired, ttl) for v in value]
        return value

    def output(self, pred: Prediction) -> Any:
        """The output with freshly signed URLs: null until published, and after removal."""
        published = pred.status == "succeeded" or (
            pred.status == "processing" and pred.template is not None
        )
        if not published or pred.data_removed:
            return None
        faults = self.faults.get()
        host = faults.output_host or urlsplit(self.base_url).netloc
        expired = faults.first_urls_expired and not pred.urls_handed_out and bool(pred.files)
        rendered = self._render(pred.template, pred, host, expired, faults.url_ttl_seconds)
        if pred.files:
            pred.urls_handed_out = True
        if pred.remove_after_show and pred.status == "succeeded":
            pred.remove_data()
        return rendered

    def prediction(self, pred: Prediction) -> dict[str, Any]:
        """A prediction object (``schemas_prediction_response``)."""
        pred.expire(self.faults.get().retention_seconds, self.clock.now())
        api = f"{self.base_url}/v1/predictions/{pred.id}"
        data_removed = pred.data_removed  # before output(): remove_after_show flips it
        output = self.output(pred)
        body: dict[str, Any] = {
            "id": pred.id,
            "model": pred.model,
            "version": pred.version,
            "input": pred.input,
            "logs": "".join(f"{line}\n" for line in pred.log_lines),
            "output": output,
            "data_removed": data_removed,
            "error": pred.error,
            "status": pred.status,
            "source": pred.source,
            "created_at": iso(pred.created_at),
            "urls": {"get": api, "cancel": f"{api}/cancel", "web": f"{self.base_url}/p/{pred.id}"},
            "metrics": {},
        }
        if pred.started_at is not None:
            body["started_at"] = iso(pred.started_at)
        if pred.completed_at is not None:
            body["completed_at"] = iso(pred.completed_at)
            body["metrics"]["total_time"] = round(pred.completed_at - pred.created_at, 6)
            if pred.started_at is not None:
                body["metrics"]["predict_time"] = round(pred.completed_at - pred.started_at, 6)
        if pred.deadline is not None:
            body["deadline"] = iso(pred.deadline)
        if pred.deployment is not None:
            body["deployment"] = pred.deployment
        return body

    def page(
        self,
        preds: list[Prediction],
        next_: str | None,
        prev: str | None,
        filters: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A list page (``schemas_paginated_prediction_response``) with absolute cursor URLs
        that keep the list's ``filters``."""
        query = urlencode(filters or {})
        url = f"{self.base_url}/v1/predictions?{query}{'&' if query else ''}cursor="
        return {
            "next": f"{url}{next_}" if next_ else None,
            "previous": f"{url}{prev}" if prev else None,
            "results": [self.prediction(p) for p in preds],
        }


def version(model: str, spec: ModelSpec, vid: str | None = None) -> dict[str, Any]:
    """A model version object (``schemas_version_response``): ``vid``, or the model's own."""
    return {
        "id": vid or version_id(model),
        "created_at": VERSION_CREATED_AT,
        "cog_version": COG_VERSION,
        "openapi_schema": spec.openapi_schema(),
    }


def model(owner: str, name: str, spec: ModelSpec, run_count: int) -> dict[str, Any]:
    """A model object (``schemas_model_response``)."""
    return {
        "url": f"https://replicate.com/{owner}/{name}",
        "owner": owner,
        "name": name,
        "description": spec.description,
        "visibility": "public",
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": run_count,
        "cover_image_url": None,
        "default_example": None,
        "is_official": False,
        "latest_version": version(f"{owner}/{name}", spec),
    }
