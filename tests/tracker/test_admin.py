"""The admin: audit rows cannot be edited or deleted, patient data read there is audited, and
API tokens never show in clear."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

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
    assert read.patient == patient and read.user is not None and read.user.username == "root"
    assert AuditEvent.objects.filter(action="admin_list_patient").exists()


def test_api_tokens_are_shown_by_fingerprint_only(admin_client: Client) -> None:
    token = Token.objects.create(user=User.objects.create_user("integration"))
    page = admin_client.get("/admin/authtoken/tokenproxy/").content.decode()
    assert token.key not in page
    assert hashlib.sha256(token.key.encode()).hexdigest()[:12] in page
