"""Reads, scoped to the user's care teams: another team's patient is simply not found (404)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, QuerySet
from django.http import Http404

from tracker.models import AnalysisRun, Assessment, Patient, Review, Visit


def patients_for_user(user: Any) -> QuerySet[Patient]:
    if not getattr(user, "is_authenticated", False):
        return Patient.objects.none()
    return Patient.objects.filter(team__membership__user=user).select_related("team")


def patient_get_for_user(code: Any, user: Any) -> Patient:
    try:
        return patients_for_user(user).get(code=code)
    except (Patient.DoesNotExist, ValidationError, ValueError, TypeError):  # not a UUID: 404
        raise Http404("no such patient") from None


def visit_get_for_user(code: Any, user: Any) -> Visit:
    try:
        return (
            Visit.objects.select_related("patient__team")
            .filter(patient__in=patients_for_user(user))
            .get(code=code)
        )
    except (Visit.DoesNotExist, ValidationError, ValueError, TypeError):
        raise Http404("no such visit") from None


def current_run(visit: Visit) -> AnalysisRun | None:
    return next((r for r in visit.runs.all() if r.is_current), None)


def latest_run(visit: Visit) -> AnalysisRun | None:
    runs = sorted(visit.runs.all(), key=lambda r: r.created_at, reverse=True)
    return runs[0] if runs else None


def patient_timeline(patient: Patient) -> dict[str, Any]:
    """Everything a timeline shows, in a fixed number of queries."""
    visits = list(
        patient.visits.all()
        .prefetch_related(
            Prefetch(
                "runs",
                queryset=AnalysisRun.objects.select_related("measurement").prefetch_related(
                    "lesions", "registrations__to_visit"
                ),
            ),
            Prefetch(
                "assessments",
                queryset=Assessment.objects.filter(is_current=True).select_related(
                    "reference_visit"
                ),
            ),
            Prefetch("reviews", queryset=Review.objects.select_related("reviewer")),
        )
        .order_by("acquired_on")
    )
    return {
        "patient": patient,
        "treatments": list(patient.treatments.all()),
        "visits": visits,
    }
