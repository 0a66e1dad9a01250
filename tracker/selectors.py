"""Reads, scoped to the user's care teams: another team's patient is simply not found (404)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from tracker.models import (
    AnalysisRun,
    Assessment,
    Lesion,
    Patient,
    Registration,
    Review,
    SegmentationVersion,
    Visit,
)


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


def related(obj: Any, name: str) -> list[Any]:
    """``obj.<name>.all()`` as a list: from what ``patient_timeline`` fetched when it fetched
    ``obj``, else from the database."""
    fetched: dict[str, list[Any]] | None = obj.__dict__.get("_timeline_related")
    if fetched is not None and name in fetched:
        return fetched[name]
    return list(getattr(obj, name).all())


def correction_of(run: AnalysisRun) -> SegmentationVersion | None:
    """The clinician's correction a run measures, or None for the model's segmentation."""
    fetched: dict[str, list[Any]] | None = run.__dict__.get("_timeline_related")
    if fetched is not None and "correction" in fetched:
        return next(iter(fetched["correction"]), None)
    return SegmentationVersion.objects.filter(run=run).select_related("created_by").first()


def current_run(visit: Visit) -> AnalysisRun | None:
    return next((r for r in related(visit, "runs") if r.is_current), None)


def latest_run(visit: Visit) -> AnalysisRun | None:
    runs = sorted(related(visit, "runs"), key=lambda r: r.created_at, reverse=True)
    return runs[0] if runs else None


def _group(rows: list[Any], key: str) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for row in rows:
        grouped.setdefault(getattr(row, key), []).append(row)
    return grouped


def patient_timeline(patient: Patient) -> dict[str, Any]:
    """Everything a timeline shows, in a fixed number of queries (one per table). Related rows
    are attached as plain lists (read with ``related``): Django's prefetch builds a queryset per
    object, which was most of a 20-visit timeline's response time."""
    visits = list(patient.visits.order_by("acquired_on"))
    in_patient = {"visit__patient": patient}
    runs = list(AnalysisRun.objects.filter(**in_patient).select_related("measurement"))
    on_runs = {"run__visit__patient": patient}
    lesions = _group(list(Lesion.objects.filter(**on_runs)), "run_id")
    registrations = _group(
        list(Registration.objects.filter(**on_runs).select_related("to_visit").order_by("pk")),
        "run_id",
    )
    assessments = _group(
        list(
            Assessment.objects.filter(is_current=True, **in_patient).select_related(
                "reference_visit", "pseudoprogression_of"
            )
        ),
        "visit_id",
    )
    reviews = _group(
        list(Review.objects.filter(**in_patient).select_related("reviewer")),
        "visit_id",
    )
    corrections = _group(
        list(SegmentationVersion.objects.filter(**in_patient).select_related("created_by")),
        "run_id",
    )
    runs_of = _group(runs, "visit_id")
    for run in runs:
        run.__dict__["_timeline_related"] = {
            "lesions": lesions.get(run.pk, []),
            "registrations": registrations.get(run.pk, []),
            "correction": corrections.get(run.pk, []),
        }
    for visit in visits:
        Visit.patient.field.set_cached_value(visit, patient)
        for run in runs_of.get(visit.pk, []):
            AnalysisRun.visit.field.set_cached_value(run, visit)
        visit.__dict__["_timeline_related"] = {
            "runs": runs_of.get(visit.pk, []),
            "assessments": assessments.get(visit.pk, []),
            "reviews": reviews.get(visit.pk, []),
        }
    return {
        "patient": patient,
        "treatments": list(patient.treatments.all()),
        "visits": visits,
    }
