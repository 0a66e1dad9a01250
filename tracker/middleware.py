"""Request limits applied before a view reads anything."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

FORM_SLACK_BYTES = 1024 * 1024  # the form fields and multipart boundaries around the files


class UploadSizeLimit:
    """Refuses a request whose body is larger than the upload limit (``TRACKER_MAX_UPLOAD_MB``)
    on its ``Content-Length``, with 413 and the reason, before a byte of the body is read or
    written to disk. Django never reads past ``Content-Length``, so a body that lies about its
    length is cut there; the reverse proxy enforces the same limit in front
    (``deploy/nginx.conf``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number"}, status=400)
        limit = int(settings.TRACKER_MAX_UPLOAD_MB) * 1024 * 1024 + FORM_SLACK_BYTES
        if length > limit:
            return JsonResponse(
                {
                    "detail": f"the request body of {length:,} bytes is larger than the upload "
                    f"limit of {settings.TRACKER_MAX_UPLOAD_MB} MB (TRACKER_MAX_UPLOAD_MB); "
                    "nothing was read"
                },
                status=413,
            )
        return self.get_response(request)


class NoStore:
    """Every response the app makes (pages, API, exports, slices, volumes) is patient data or
    next to it: ``Cache-Control: no-store`` unless the view says otherwise, so nothing is left
    in a shared workstation's browser cache or a proxy. Static files (WhiteNoise, earlier in the
    chain) keep their long caching."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response
