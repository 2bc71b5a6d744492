"""Every kind of JSON response validates against Replicate's official OpenAPI schema."""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from emulator.openapi import load_schema, nullable_to_jsonschema, response_schema, validate

PREDICTION = "schemas_prediction_response"
#: The schema documents problem bodies only as ``{"detail": string}`` (e.g. files 404).
PROBLEM = response_schema("/files/{file_id}", "get", "404", "application/problem+json")
RFC7807 = {
    "type": "object",
    "required": ["title", "detail", "status"],
    "properties": {
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "status": {"type": "integer"},
    },
}


def check_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    validate(response.json(), PROBLEM)
    validate(response.json(), RFC7807)
    assert response.json()["status"] == status


def test_schema_copy_ships_with_the_package():
    """The packaged schema loads from the installed package and is Replicate's official one."""
    from importlib.resources import files

    packaged = files("emulator").joinpath("replicate-openapi.json")
    assert packaged.is_file(), "emulator/replicate-openapi.json is missing from the package"
    schema = load_schema()
    assert schema == json.loads(packaged.read_text())
    assert schema["openapi"].startswith("3.") and "/predictions" in schema["paths"]
    assert "schemas_prediction_response" in schema["components"]["schemas"]


def test_nullable_is_converted_to_null_unions():
    """nullable: true becomes a union with null, and validation honours it."""
    converted = nullable_to_jsonschema({"type": "string", "nullable": True, "enum": ["a"]})
    assert converted == {"type": ["string", "null"], "enum": ["a", None]}
    assert nullable_to_jsonschema({"nullable": True, "oneOf": [{"type": "string"}]}) == {
        "anyOf": [{"oneOf": [{"type": "string"}]}, {"type": "null"}]
    }
    validate({"error": None}, {"properties": {"error": {"type": "string", "nullable": True}}})


def test_validator_rejects_wrong_bodies():
    """The validator is not vacuous: a bad prediction body fails."""
    with pytest.raises(jsonschema.ValidationError):
        validate({"id": "x"}, PREDICTION)
    with pytest.raises(jsonschema.ValidationError):
        validate({"next": 5, "results": []}, response_schema("/predictions", "get", "200"))


@pytest.mark.parametrize(
    "model",
    ["a/b", "emulator/single-file", "emulator/text", "emulator/mixed", "emulator/large-file"],
)
def test_create_get_and_cancel_responses_validate(api, model):
    """Create (starting and waited), get and cancel responses match the prediction schema."""
    input_ = {"size_bytes": 10} if model == "emulator/large-file" else {"prompt": "x"}
    path = f"/v1/models/{model}/predictions"
    started = api.post(path, json={"input": input_})
    validate(
        started.json(),
        response_schema("/models/{model_owner}/{model_name}/predictions", "post", "201"),
    )
    waited = api.post(path, json={"input": input_}, headers={"Prefer": "wait"}).json()
    assert waited["status"] == "succeeded"
    validate(waited, PREDICTION)
    validate(
        api.get(f"/v1/predictions/{waited['id']}").json(),
        response_schema("/predictions/{prediction_id}", "get", "200"),
    )
    validate(
        api.post(f"/v1/predictions/{started.json()['id']}/cancel").json(),
        response_schema("/predictions/{prediction_id}/cancel", "post", "200"),
    )


def test_version_and_deployment_creates_validate(api):
    """POST /v1/predictions and deployment creates match their documented 201 schemas."""
    body = api.post("/v1/predictions", json={"version": "acme/other:abc123", "input": {}}).json()
    validate(body, response_schema("/predictions", "post", "201"))
    deployment = api.post("/v1/deployments/acme/app/predictions", json={"input": {}}).json()
    validate(
        deployment,
        response_schema(
            "/deployments/{deployment_owner}/{deployment_name}/predictions", "post", "201"
        ),
    )


def test_terminal_states_validate(emulator, api):
    """Failed, canceled, aborted (with deadline) and data-removed predictions validate."""
    for final in ("failed", "canceled", "aborted"):
        emulator.set_faults(final_status=final)
        body = api.post(
            "/v1/models/a/b/predictions",
            json={"input": {}},
            headers={"Prefer": "wait", "Cancel-After": "1m"},
        ).json()
        assert body["status"] == final
        validate(body, PREDICTION)
    emulator.set_faults(final_status="succeeded", remove_data_after_success=1)
    body = api.post("/v1/models/a/b/predictions", json={"input": {}}, headers={"Prefer": "wait"})
    removed = api.get(f"/v1/predictions/{body.json()['id']}").json()
    assert removed["data_removed"] is True
    validate(removed, PREDICTION)


def test_list_pages_validate(emulator, api):
    """List pages (first, middle, last) match the documented list schema."""
    emulator.set_faults(page_size=2)
    for _ in range(5):
        api.post("/v1/models/a/b/predictions", json={"input": {}})
    schema = response_schema("/predictions", "get", "200")
    page = api.get("/v1/predictions").json()
    while True:
        validate(page, schema)
        validate(page, "schemas_paginated_prediction_response")
        if not page["next"]:
            break
        page = api.get(page["next"]).json()


def test_model_version_and_account_responses_validate(api):
    """Model, version and account objects match their documented schemas."""
    for name in ("emulator/text", "black-forest-labs/flux-schnell"):
        body = api.get(f"/v1/models/{name}").json()
        validate(body, response_schema("/models/{model_owner}/{model_name}", "get", "200"))
        validate(body["latest_version"], "schemas_version_response")
        version = api.get(f"/v1/models/{name}/versions/{body['latest_version']['id']}").json()
        validate(
            version,
            response_schema(
                "/models/{model_owner}/{model_name}/versions/{version_id}", "get", "200"
            ),
        )
    validate(api.get("/v1/account").json(), response_schema("/account", "get", "200"))


def test_problem_bodies_validate(emulator, api):
    """401, 404, 422, 429 and 503 bodies are problem+json with title, detail and status."""
    check_problem(httpx.get(f"{emulator.base_url}/v1/predictions"), 401)
    check_problem(api.get("/v1/predictions/missing"), 404)
    check_problem(api.post("/v1/predictions", json={"version": "0" * 64, "input": {}}), 422)
    check_problem(api.post("/v1/models/a/b/predictions", json={"nope": 1}), 422)
    emulator.set_faults(throttle_creates=1, fail_reads=1)
    check_problem(api.post("/v1/models/a/b/predictions", json={"input": {}}), 429)
    check_problem(api.get("/v1/predictions/whatever"), 503)
