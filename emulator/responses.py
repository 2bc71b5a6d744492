"""Error responses and the token check every ``/v1`` route shares."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from emulator import views


def problem_response(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """An ``application/problem+json`` error response."""
    headers = extra.pop("headers", None)
    return JSONResponse(
        views.problem(status, title, detail, **extra),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def unauthenticated() -> JSONResponse:
    return problem_response(
        401,
        "Unauthenticated",
        "You did not pass a valid authentication token",
        headers={"WWW-Authenticate": "Bearer"},
    )


def authorized(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() in ("bearer", "token") and bool(token.strip())


def invalid_version() -> JSONResponse:
    return problem_response(
        422,
        "Invalid version or not permitted",
        "The specified version does not exist (or perhaps you don't have permission to use it?)",
    )


def input_problem(problems: list[tuple[str, str]]) -> JSONResponse:
    """422 "Input validation failed" listing ``(field, message)`` problems like the real API."""
    return problem_response(
        422,
        "Input validation failed",
        "".join(f"- {field}: {message}\n" for field, message in problems),
        invalid_fields=[{"field": field, "description": message} for field, message in problems],
    )


def model_not_found(model: str) -> JSONResponse:
    """Replicate's answer for a model that does not exist (or is not visible to the token)."""
    return problem_response(404, "Not found", f"The requested model {model} could not be found.")
