"""The admin: audit rows cannot be edited or deleted, patient data read there is audited, and
API tokens never show in clear."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from knox.models import AuthToken

from tracker.models import AuditEvent, Patient

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = User.objects.create_superuser("root", password="root-password-1")
    client = Client()
    client.force_login(user)
    return client


def test_the_audit_log_cannot_be_edited_or_deleted_in_the_admin(
    admin_client: Client, teams: dict[str, Any]
) -> None:
    event = AuditEvent.objects.create(action="read_patient", patient=teams["patient"])
    url = f"/admin/tracker/auditevent/{event.pk}"
    assert admin_client.get(f"{url}/delete/").status_code == 403
    assert admin_client.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
    admin_client.post(f"{url}/change/", {"action": "nothing_to_see"})
    event.refresh_from_db()
    assert event.action == "read_patient"
    assert admin_client.get("/admin/tracker/auditevent/add/").status_code == 403


def test_patient_data_read_in_the_admin_is_audited(
    admin_client: Client, teams: dict[str, Any]
) -> None:
    patient: Patient = teams["patient"]
    assert admin_client.get("/admin/tracker/patient/").status_code == 200
    assert admin_client.get(f"/admin/tracker/patient/{patient.pk}/change/").status_code == 200
    read = AuditEvent.objects.get(action="admin_read_patient")
    assert read.patient == patient
    assert read.user is not None
    assert read.user.username == "root"
    assert AuditEvent.objects.filter(action="admin_list_patient").exists()


def test_api_tokens_are_kept_as_digests_and_an_admin_delete_revokes_one(
    admin_client: Client,
) -> None:
    from rest_framework.test import APIClient

    instance, token = AuthToken.objects.create(user=User.objects.create_user("integration"))
    page = admin_client.get("/admin/knox/authtoken/").content.decode()
    assert token not in page
    assert token[:15] not in page
    assert instance.digest[:12] in page
    assert token not in str(list(AuthToken.objects.values_list()))  # not stored in clear
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/patients/").status_code == 200
    admin_client.post(f"/admin/knox/authtoken/{instance.pk}/delete/", {"post": "yes"})
    assert api.get("/api/patients/").status_code == 401


def test_a_token_an_admin_makes_without_an_expiry_gets_the_default_one(
    admin_client: Client,
) -> None:
    user = User.objects.create_user("pacs-router")
    response = admin_client.post("/admin/knox/authtoken/add/", {"user": user.pk, "expiry": ""})
    assert response.status_code == 302
    token = AuthToken.objects.get(user=user)
    assert token.expiry is not None
    assert token.expiry > token.created
