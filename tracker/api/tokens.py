"""API tokens (django-rest-knox): issued for a username and password, stored only as a SHA-512
digest, valid for ``TRACKER_TOKEN_TTL_HOURS``, revocable one at a time or all at once. Issuing
and revoking are audit events."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox.views import LoginView, LogoutAllView, LogoutView
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from tracker.api.errors import BoundedJSONParser
from tracker.inputs import StrictCharField
from tracker.services.visits import audit


class CredentialsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=4096, trim_whitespace=False)


TOKEN_SCHEMA = inline_serializer(
    "IssuedToken", {"token": serializers.CharField(), "expiry": serializers.DateTimeField()}
)
NO_CONTENT = OpenApiResponse(description="Revoked.")
UNAUTHORISED = OpenApiResponse(description="No valid token.")


class TokenIssueApi(LoginView):  # type: ignore[misc]
    """A token for a username and password, throttled per address (the ``login`` rate) and
    locked out after repeated failures (django-axes)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (ScopedRateThrottle,)
    throttle_scope = "login"
    serializer_class = CredentialsSerializer
    parser_classes = (BoundedJSONParser, FormParser, MultiPartParser)

    @extend_schema(
        operation_id="token_issue",
        request=CredentialsSerializer,
        responses={
            200: TOKEN_SCHEMA,
            400: OpenApiResponse(description="Wrong username or password."),
            429: OpenApiResponse(description="Too many attempts from this address or user."),
        },
    )
    def post(self, request: Request, format: Any = None) -> Response:
        credentials = CredentialsSerializer(data=request.data)
        credentials.is_valid(raise_exception=True)
        user = authenticate(
            request=request._request,
            username=credentials.validated_data["username"],
            password=credentials.validated_data["password"],
        )
        if user is None or not user.is_active:
            raise serializers.ValidationError(
                {"non_field_errors": ["Unable to log in with the credentials given."]}
            )
        request.user = user
        response: Response = super().post(request, format)
        audit(user=user, action="api_token_issued", patient=None, expiry=response.data["expiry"])
        return response


class TokenRevokeApi(LogoutView):  # type: ignore[misc]
    """Revoke the token this request carries."""

    @extend_schema(
        operation_id="token_revoke", request=None, responses={204: NO_CONTENT, 401: UNAUTHORISED}
    )
    def post(self, request: Request, format: Any = None) -> Response:
        audit(user=request.user, action="api_token_revoked", patient=None, tokens="this")
        response: Response = super().post(request, format)
        return response


class TokenRevokeAllApi(LogoutAllView):  # type: ignore[misc]
    """Revoke every token of the user (a lost laptop, a leaked integration secret)."""

    @extend_schema(
        operation_id="token_revoke_all",
        request=None,
        responses={204: NO_CONTENT, 401: UNAUTHORISED},
    )
    def post(self, request: Request, format: Any = None) -> Response:
        audit(user=request.user, action="api_token_revoked", patient=None, tokens="all")
        response: Response = super().post(request, format)
        return response
