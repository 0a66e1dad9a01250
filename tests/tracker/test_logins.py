"""Repeated wrong passwords lock the user out at that address (django-axes), on the login page,
the admin and the API token endpoint; the right password is then refused too, and every failure
is an audit event."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from tracker.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def user() -> User:
    return User.objects.create_user("clinician", password="the-right-password-1", is_staff=True)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_wrong_passwords_lock_the_login_pages(user: User, path: str, settings: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response = client.post(path, {"username": "clinician", "password": "wrong"})
        assert response.status_code in (200, 429)
    locked = client.post(path, {"username": "clinician", "password": "the-right-password-1"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="login_failed").count() >= settings.AXES_FAILURE_LIMIT


def test_wrong_passwords_lock_the_api_token(user: User, settings: Any) -> None:
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/api/token/", {"username": "clinician", "password": "wrong"})
    locked = client.post(
        "/api/token/", {"username": "clinician", "password": "the-right-password-1"}
    )
    # refused: no token for the right password, and the API says why in JSON
    assert locked.status_code == 429
    assert "token" not in locked.json()
    assert "locked out" in locked.json()["detail"]


def test_one_wrong_password_does_not_lock_anyone_out(user: User) -> None:
    client = Client()
    client.post("/accounts/login/", {"username": "clinician", "password": "wrong"})
    response = client.post(
        "/accounts/login/", {"username": "clinician", "password": "the-right-password-1"}
    )
    assert response.status_code == 302
    assert "_auth_user_id" in client.session


@pytest.mark.parametrize(
    "password",
    [
        "short-pw1",  # under 12 characters
        "clinician-2024",  # like the username
        "123456789012345",  # digits only
        "1qaz2wsx3edc4rfv",  # a common password
    ],
)
def test_weak_passwords_are_refused(user: User, password: str) -> None:
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        validate_password(password, user)


def test_a_long_uncommon_password_is_accepted(user: User) -> None:
    from django.contrib.auth.password_validation import validate_password

    validate_password("tumour board on thursdays", user)
