"""Malformed requests get a 4xx naming the problem, never a 500; the API answers in JSON."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from tests.tracker.conftest import client_for
from tracker.api.errors import MAX_JSON_DEPTH, json_depth


@pytest.mark.parametrize(
    "url",
    [
        "/patients/not-a-uuid/",
        "/patients/not-a-uuid/progress/",
        "/patients/not-a-uuid/export/pdf",
        "/visits/xyz/",
        "/visits/xyz/slices/t1c/axial/3.png",
        "/api/patients/not-a-uuid/",
        "/api/visits/xyz/",
    ],
)
def test_a_code_that_is_not_a_uuid_is_not_found(teams: dict[str, Any], url: str) -> None:
    client = Client()
    client.force_login(teams["alice"])
    assert client.get(url).status_code == 404


def test_a_non_uuid_code_in_a_selector_is_not_found(teams: dict[str, Any]) -> None:
    from django.http import Http404

    from tracker import selectors

    with pytest.raises(Http404):
        selectors.patient_get_for_user("not-a-uuid", teams["alice"])
    with pytest.raises(Http404):
        selectors.visit_get_for_user("'; drop table", teams["alice"])


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
def test_deeply_nested_json_is_a_400(teams: dict[str, Any], depth: int) -> None:
    body = "[" * depth + "]" * depth
    response = client_for(teams["alice"]).post(
        "/api/patients/", data=body, content_type="application/json"
    )
    assert response.status_code == 400
    assert "nested" in response.json()["detail"]


def test_json_depth_counts_without_recursion() -> None:
    assert json_depth(1) == 0
    assert json_depth({"a": [1, {"b": []}]}) == 4  # four containers, one inside the other
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert json_depth(deep) == 100_001


def test_an_unknown_api_url_is_a_json_404(teams: dict[str, Any]) -> None:
    response = client_for(teams["alice"]).get("/api/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_a_page_404_stays_html(teams: dict[str, Any]) -> None:
    client = Client()
    client.force_login(teams["alice"])
    response = client.get("/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_server_error_under_the_api_is_json(
    teams: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracker.api import views

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(views, "timeline_dict", boom)
    client = Client(raise_request_exception=False)
    client.force_login(teams["alice"])
    response = client.get(f"/api/patients/{teams['patient'].code}/timeline/")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert "Server error" in response.json()["detail"]


@override_settings(DEBUG=False)
def test_a_session_api_call_without_csrf_is_a_json_403(teams: dict[str, Any]) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(teams["alice"])
    response = client.post("/api/patients/", {"label": "X", "team": "Neuro-A"})
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert "CSRF" in response.json()["detail"]
