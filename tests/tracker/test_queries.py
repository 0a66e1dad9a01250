"""No N+1 queries: the timeline and the patient list cost the same number of queries whatever
the number of visits or patients."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.tracker.conftest import client_for
from tests.tracker.factories import analysed_patient

pytestmark = pytest.mark.django_db


def _queries(client: Any, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url)
    assert response.status_code == 200
    return len(context.captured_queries)


def test_the_timeline_costs_the_same_queries_for_3_and_20_visits(teams: dict[str, Any]) -> None:
    small = analysed_patient(teams["team_a"], "SMALL", 3, reviewer=teams["alice"])
    large = analysed_patient(teams["team_a"], "LARGE", 20, reviewer=teams["alice"])
    client = client_for(teams["alice"])
    few = _queries(client, f"/api/patients/{small.code}/timeline/")
    many = _queries(client, f"/api/patients/{large.code}/timeline/")
    assert few == many
    assert many <= 15
    body = client.get(f"/api/patients/{large.code}/timeline/").json()
    assert len(body["visits"]) == 20
    assert body["visits"][5]["results"]["lesions"][0]["track"] == "L1"


def test_the_patient_list_costs_the_same_queries_for_2_and_30_patients(
    teams: dict[str, Any],
) -> None:
    client = client_for(teams["alice"])
    for index in range(2):
        analysed_patient(teams["team_a"], f"P{index:03d}", 1)
    few = _queries(client, "/api/patients/")
    for index in range(2, 30):
        analysed_patient(teams["team_a"], f"P{index:03d}", 1)
    many = _queries(client, "/api/patients/")
    assert few == many


def test_the_fast_visit_output_is_what_the_schema_documents(teams: dict[str, Any]) -> None:
    import json

    from tracker.api import serializers as s
    from tracker.api.views import _visits_with_results
    from tracker.models import Registration, TreatmentEvent
    from tracker.timeline import patient_dict, treatment_dict, visit_dict

    patient = analysed_patient(teams["team_a"], "SHAPE", 2, reviewer=teams["alice"])
    first, second = patient.visits.order_by("acquired_on")
    Registration.objects.create(
        run=second.runs.get(), to_visit=first, role="baseline", transform="x", passed=True
    )
    for visit in _visits_with_results().filter(patient=patient):
        documented = json.loads(json.dumps(s.VisitOutput(visit).data, default=str))
        assert visit_dict(visit) == documented
    TreatmentEvent.objects.create(
        patient=patient, kind="chemotherapy", started_on="2024-03-01", dose_mg="75.5"
    )
    patient.refresh_from_db()
    assert patient_dict(patient) == json.loads(json.dumps(s.PatientOutput(patient).data))
    for treatment in patient.treatments.all():
        documented = json.loads(json.dumps(s.TreatmentOutput(treatment).data, default=str))
        assert treatment_dict(treatment) == documented
