"""The OpenAPI schema documents every status the API answers with, errors included, so a client
(or a fuzzer, bench/bench_api_fuzz.py) can rely on it: drf-spectacular lists the success
responses a view declares, and this adds the error responses each operation can give."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import AllowAny

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
# A validation error: each field (or "non_field_errors") with its messages, or a detail.
INVALID = {
    "type": "object",
    "additionalProperties": {
        "oneOf": [{"type": "array", "items": {}}, {"type": "string"}, {"type": "object"}]
    },
}


def _response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


class TrackerAutoSchema(AutoSchema):  # type: ignore[misc]
    """drf-spectacular's schema plus the error responses of each operation: 400 where it takes
    input, 401/403 where it needs a login, 404 where its path names a record, 406 for an
    ``Accept`` it cannot answer, 413/415 where it takes a body, 429 where it is throttled."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        body = operation.get("requestBody")
        if body is not None:
            # A body of alternatives, each with required fields (the review), is itself required.
            alternatives = [
                alt
                for media in body.get("content", {}).values()
                for alt in media.get("schema", {}).get("oneOf", [])
            ]
            if alternatives and all(alt.get("required") for alt in alternatives):
                body["required"] = True
        responses = operation["responses"]
        errors: dict[str, dict[str, Any]] = {}
        parameters = operation.get("parameters", [])
        if "requestBody" in operation or any(p["in"] == "query" for p in parameters):
            errors["400"] = _response("The request is invalid; the body says why.", INVALID)
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            errors["401"] = _response("No valid token or session.", DETAIL)
            errors["403"] = _response("Not allowed (or a session without a CSRF token).", DETAIL)
        if any(p["in"] == "path" for p in parameters):
            errors["404"] = _response(
                "No such record among the user's care teams' (another team's is not found).",
                DETAIL,
            )
        elif any(p["in"] == "query" and p["name"] == "page" for p in parameters):
            errors["404"] = _response("No such page.", DETAIL)
        errors["406"] = _response(
            "The Accept header asks for a type the API does not give.", DETAIL
        )
        if "requestBody" in operation:
            errors["413"] = _response("The body is over the upload limit.", DETAIL)
            errors["415"] = _response("The body's Content-Type is not one accepted here.", DETAIL)
        if getattr(self.view, "throttle_classes", ()):
            errors["429"] = _response("Too many requests; try again later.", DETAIL)
        for status, response in errors.items():
            responses.setdefault(status, response)
        return operation
