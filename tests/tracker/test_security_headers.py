"""Security headers (issue 15, Low): a Content-Security-Policy with no inline script, no-store on
everything that may hold patient data, HTTPS-only with HSTS behind TLS, a health check that the
HTTPS redirect leaves alone, and API docs from vendored files."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import DatabaseError
from django.test import Client, override_settings


@pytest.fixture
def alice_client(teams: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(teams["alice"])
    return client


def _csp(response: Any) -> dict[str, str]:
    policy = response["Content-Security-Policy"]
    return {part.split()[0]: " ".join(part.split()[1:]) for part in policy.split(";") if part}


def test_pages_carry_a_content_security_policy_without_inline_script(
    alice_client: Client, teams: dict[str, Any]
) -> None:
    response = alice_client.get(f"/patients/{teams['patient'].code}/")
    assert response.status_code == 200
    policy = {k.strip(): v for k, v in _csp(response).items()}
    assert policy["script-src"] == "'self'"
    assert "unsafe-inline" not in policy["style-src"]
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert not re.search(r"<script(?![^>]*\bsrc=)", response.content.decode())  # no inline one


@pytest.mark.parametrize("url", ["/patients/", "/patients/{code}/", "/api/patients/{code}/"])
def test_patient_data_is_never_cached(
    alice_client: Client, teams: dict[str, Any], url: str
) -> None:
    response = alice_client.get(url.format(code=teams["patient"].code))
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


def test_static_files_keep_their_caching(alice_client: Client) -> None:
    response = alice_client.get("/static/tracker/swagger.css")
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")


def test_the_health_check_answers_without_a_login(db: Any) -> None:
    response = Client().get("/healthz/")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_health_check_says_503_when_the_database_is_gone(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracker.api import health

    def broken() -> Any:
        raise DatabaseError("connection refused to db.internal:5432")

    with monkeypatch.context() as patch:
        patch.setattr(health.connection, "cursor", broken)
        response = Client().get("/healthz/")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}  # nothing of the stack leaks


@override_settings(
    SECURE_SSL_REDIRECT=True,
    SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"),
    SECURE_HSTS_SECONDS=31_536_000,
    SECURE_HSTS_INCLUDE_SUBDOMAINS=True,
)
def test_behind_tls_plain_http_is_redirected_and_https_gets_hsts(teams: dict[str, Any]) -> None:
    client = Client()
    client.force_login(teams["alice"])
    plain = client.get("/patients/")
    assert plain.status_code == 301
    assert plain["Location"].startswith("https://")
    secure = client.get("/patients/", headers={"x-forwarded-proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
    assert Client().get("/healthz/").status_code == 200  # the container check, plain HTTP


def test_the_api_docs_come_from_vendored_files_only(alice_client: Client) -> None:
    page = alice_client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn" not in html.lower()
    assert "https://" not in html
    assert "http://" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "<style" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets)
    for asset in assets:
        response = alice_client.get(asset.replace("&amp;", "&"))
        assert response.status_code == 200, asset
    script = alice_client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in script.content.decode()
