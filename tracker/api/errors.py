"""Errors of the API come back as JSON, whatever raised them: a URL under ``/api/`` that matches
nothing, a server error, a request body nested too deeply to parse. The pages keep Django's HTML
error pages."""

from __future__ import annotations

from typing import Any

from axes.helpers import get_lockout_message
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Deeper than any body the API takes (a review, a treatment, a patient: two levels).
MAX_JSON_DEPTH = 32


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (a scalar is 0), without
    recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


class BoundedJSONParser(JSONParser):  # type: ignore[misc]
    """DRF's JSON parser, but a body nested deeper than ``MAX_JSON_DEPTH`` (or too deep for the
    decoder itself, which raises ``RecursionError``) is a 400, not a 500."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        return data


def _json_error(status: int, detail: str) -> HttpResponse:
    return JsonResponse({"detail": detail}, status=status)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _json_error(404, "Not found.")
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _json_error(500, "Server error: the request was not completed; try again.")
    return defaults.server_error(request)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _json_error(400, "Bad request.")
    return defaults.bad_request(request, exception)  # type: ignore[arg-type]


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _is_api(request):
        return _json_error(403, "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]


def locked_out(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """django-axes' answer to a locked-out login: JSON under ``/api/``, text elsewhere."""
    minutes = round(settings.AXES_COOLOFF_TIME * 60)
    message = f"Too many failed logins: locked out for {minutes} minutes."
    if _is_api(request):
        return _json_error(429, message)
    return HttpResponse(f"{message} {get_lockout_message()}", status=429)
