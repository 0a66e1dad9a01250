"""The timeline and visit read models: what ``GET /api/patients/{code}/timeline/`` and
``GET /api/visits/{code}/`` return, built as plain dicts from the rows ``selectors`` reads. The
pages, the exports and the API all use them; the API's serializers document the same shapes in
the OpenAPI schema (tests/tracker/test_queries.py checks they agree). DRF's serializers built
their fields again for every object, most of a 20-visit timeline's response time."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from inference.response.rano import CONFIRMATION_DAYS
from inference.segmentation.segment import sequence_support
from tracker import selectors
from tracker.models import (
    AnalysisRun,
    Assessment,
    Category,
    Lesion,
    LesionKind,
    Patient,
    Registration,
    RunStatus,
    TreatmentEvent,
    Visit,
)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    text: str = value.isoformat()
    return text.replace("+00:00", "Z")


def sequence_fields(run: AnalysisRun) -> dict[str, Any]:
    """The sequences a run's segmentation used and what they let it measure: a volume that is
    not supported is null in ``volumes_ml`` and ``not_measured`` says why (the same keys as
    ``segmentation.json``)."""
    support = _support(tuple(run.sequences_used))
    return {
        "sequences_used": list(support["sequences_used"]),
        "sequences_missing": list(support["sequences_missing"]),
        "supported_regions": list(run.supported_regions),
        "not_measured": dict(support["not_measured"]),
        "sequences": support["sequences"],
    }


@functools.lru_cache(maxsize=64)
def _support(sequences_used: tuple[str, ...]) -> dict[str, Any]:
    """What a set of sequences supports (there are 15 sets; each is worked out once)."""
    support = sequence_support(sequences_used)
    return {
        "sequences_used": tuple(s.value for s in support.used),
        "sequences_missing": tuple(s.value for s in support.missing),
        "not_measured": support.not_measured(),
        "sequences": support.summary(),
    }


def patient_dict(patient: Patient) -> dict[str, Any]:
    return {
        "code": str(patient.code),
        "label": patient.label,
        "team": patient.team.name,
        "team_code": str(patient.team.code),
        "diagnosis": patient.diagnosis,
        "who_grade": patient.who_grade,
        "idh_status": patient.idh_status,
        "presentation": patient.presentation,
        "setting": patient.setting,
        "criteria": patient.criteria,
        "confirm_progression": patient.confirm_progression,
        "created_at": _iso(patient.created_at),
    }


def treatment_dict(treatment: TreatmentEvent) -> dict[str, Any]:
    return {
        "code": str(treatment.code),
        "kind": treatment.kind,
        "started_on": treatment.started_on.isoformat(),
        "ended_on": treatment.ended_on.isoformat() if treatment.ended_on else None,
        "dose_mg": None if treatment.dose_mg is None else f"{treatment.dose_mg:.2f}",
        "notes": treatment.notes,
    }


def run_dict(run: AnalysisRun) -> dict[str, Any]:
    return {
        "code": str(run.code),
        "stage": run.stage,
        "status": run.status,
        "stages": run.stages,
        "error": run.error,
        "attempts": run.attempts,
        "model_name": run.model_name,
        "model_version": run.model_version,
        "weights_sha256": run.weights_sha256,
        "is_current": run.is_current,
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
    }


def registration_problems(registration: Registration) -> list[str]:
    """Why a registration failed its quality check, as stored ([] when it passed); lesion
    tracking and the prior comparison depend on it, so every place that shows them says so."""
    if registration.passed:
        return []
    problems = (registration.quality.get("quality") or {}).get("problems") or []
    return [str(p) for p in problems] or ["failed its quality check"]


def lesions_of_kind(run: Any, kind: str) -> list[Lesion]:
    return [x for x in selectors.related(run, "lesions") if x.kind == kind]


def lesion_dict(lesion: Lesion) -> dict[str, Any]:
    return {
        "kind": lesion.kind,
        "number": lesion.number,
        "track": lesion.track,
        "volume_ml": lesion.volume_ml,
        "et_volume_ml": lesion.et_volume_ml,
        "longest_mm": lesion.longest_mm,
        "perpendicular_mm": lesion.perpendicular_mm,
        "product_mm2": lesion.product_mm2,
        "measurable": lesion.measurable,
        "target": lesion.target,
        "centroid_mm": lesion.centroid_mm,
    }


def segmentation_dict(run: AnalysisRun) -> dict[str, Any]:
    """Whose segmentation a run measures: the model's (version 1), or a clinician's
    correction (who, when, why, and what it changed)."""
    correction = selectors.correction_of(run)
    if correction is None:
        return {"version": 1, "source": "model"}
    return {
        "version": correction.number,
        "source": correction.source,
        "corrected_by": correction.created_by.username,
        "corrected_at": _iso(correction.created_at),
        "reason": correction.reason,
        "corrects_run": correction.changes.get("corrects_run"),
        "changes": correction.changes.get("regions", {}),
    }


def segmentation_versions(visit: Visit) -> list[dict[str, Any]]:
    """Every segmentation of the visit, oldest first: each analysis's (the model's) and each
    clinician's correction, with the run that measures it and where that run is."""
    runs = AnalysisRun.objects.filter(visit=visit).order_by("created_at")
    return [
        {
            **segmentation_dict(run),
            "run": str(run.code),
            "stage": run.stage,
            "status": run.status,
            "is_current": run.is_current,
            "model": {"name": run.model_name, "version": run.model_version},
        }
        for run in runs
        if run.status != RunStatus.FAILED or selectors.correction_of(run) is not None
    ]


def visit_dict(visit: Visit) -> dict[str, Any]:
    run = selectors.current_run(visit)
    latest = selectors.latest_run(visit)
    results = None
    if run is not None and hasattr(run, "measurement"):
        measurement = run.measurement
        results = {
            "run": str(run.code),
            "model": {
                "name": run.model_name,
                "version": run.model_version,
                "weights_sha256": run.weights_sha256,
            },
            **sequence_fields(run),
            "segmentation": segmentation_dict(run),
            "volumes_ml": measurement.volumes_ml,
            "volume_intervals_ml": measurement.volume_intervals_ml,
            "sum_of_products_mm2": measurement.sum_of_products_mm2,
            "lesions": [lesion_dict(x) for x in lesions_of_kind(run, LesionKind.CORE)],
            "t2_flair_lesions": [lesion_dict(x) for x in lesions_of_kind(run, LesionKind.T2_FLAIR)],
            "registrations": [
                {
                    "role": r.role,
                    "to_visit": str(r.to_visit.code),
                    "passed": r.passed,
                    "quality": r.quality,
                    "problems": registration_problems(r),
                }
                for r in selectors.related(run, "registrations")
            ],
        }
    current = next((a for a in selectors.related(visit, "assessments") if a.is_current), None)
    assessment = None
    if current is not None:
        assessment = {
            "category": current.category,
            "confirmed": current.confirmed,
            "reference_visit": str(current.reference_visit.code)
            if current.reference_visit
            else None,
            "relative_change": current.relative_change,
            "reasons": current.reasons,
            "is_progression_visit": current.is_progression_visit,
            "is_nadir_visit": current.is_nadir_visit,
            "pseudoprogression_of": str(current.pseudoprogression_of.code)
            if current.pseudoprogression_of
            else None,
            "criteria": current.criteria,
            "model_versions": current.model_versions,
            "assessed_at": _iso(current.assessed_at),
        }
    return {
        "code": str(visit.code),
        "patient": str(visit.patient.code),
        "acquired_on": visit.acquired_on.isoformat(),
        "clinical_status": visit.clinical_status,
        "steroid_dose_mg": f"{visit.steroid_dose_mg:.2f}",
        "non_target": visit.non_target,
        "notes": visit.notes,
        "analysis": None if latest is None else run_dict(latest),
        "results": results,
        "assessment": assessment,
        "reviews": [
            {
                "action": r.action,
                "category": r.category,
                "reason": r.reason,
                "reviewer": r.reviewer.username,
                "reviewed_at": _iso(r.reviewed_at),
            }
            for r in selectors.related(visit, "reviews")
        ],
    }


def timeline_dict(patient: Patient) -> dict[str, Any]:
    """The patient's whole timeline as ``GET /api/patients/{id}/timeline/`` returns it; the pages
    and every export are built from the same dict."""
    timeline = selectors.patient_timeline(patient)
    visits = timeline["visits"]
    return {
        "patient": patient_dict(patient),
        "treatments": [treatment_dict(x) for x in timeline["treatments"]],
        "visits": [visit_dict(v) for v in visits],
        # The landmarks as the engine found them (never worked out again by a chart or report).
        "baseline_visit": _marked(visits, lambda a: a.category == Category.BASELINE),
        "nadir_visit": _marked(visits, lambda a: a.is_nadir_visit),
        "progression_visit": _marked(visits, lambda a: a.is_progression_visit),
    }


def _marked(visits: list[Visit], mark: Callable[[Assessment], bool]) -> str | None:
    """The code of the (first) visit whose current assessment is so marked."""
    return next(
        (
            str(v.code)
            for v in visits
            for a in selectors.related(v, "assessments")
            if a.is_current and mark(a)
        ),
        None,
    )


def headline(timeline: dict[str, Any]) -> dict[str, Any] | None:
    """What a tumour board reads first: the latest assessed visit's category (a reviewer's
    override first), its sum of products against the engine's baseline and nadir in %, the
    date from which a confirmation scan counts where the category is preliminary, and where a
    progression turned out to be pseudoprogression. None before any assessment."""
    visits = timeline["visits"]
    assessed = [v for v in visits if v["assessment"]]
    if not assessed:
        return None
    latest = assessed[-1]
    assessment = latest["assessment"]
    reviews = latest["reviews"]
    override = reviews[0] if reviews and reviews[0]["action"] == "override" else None
    by_code = {v["code"]: v for v in visits}

    def spd(code: str | None) -> float | None:
        results = (by_code.get(code or "") or {}).get("results") or {}
        value = results.get("sum_of_products_mm2")
        return None if value is None else float(value)

    now = spd(latest["code"])

    def change(reference: float | None) -> float | None:
        if now is None or not reference:
            return None
        return round(100 * (now - reference) / reference, 1)

    landmark = {
        key: by_code.get(timeline.get(f"{key}_visit") or "") for key in ("baseline", "nadir")
    }
    due = None
    if assessment["confirmed"] is False:
        scanned = dt.date.fromisoformat(latest["acquired_on"])
        due = (scanned + dt.timedelta(days=CONFIRMATION_DAYS)).isoformat()
    return {
        "visit": latest,
        "category": override["category"] if override else assessment["category"],
        "category_name": dict(Category.choices).get(
            override["category"] if override else assessment["category"], ""
        ),
        "engine_category": assessment["category"],
        "overridden": override is not None,
        "confirmed": assessment["confirmed"],
        "spd_mm2": now,
        "baseline": landmark["baseline"],
        "nadir": landmark["nadir"],
        "vs_baseline_percent": change(spd(timeline.get("baseline_visit"))),
        "vs_nadir_percent": change(spd(timeline.get("nadir_visit"))),
        "confirmation_due_from": due,
        # (the preliminary progression's date, the date of the scan that did not confirm it)
        "pseudoprogression": [
            (by_code[of]["acquired_on"], v["acquired_on"])
            for v in assessed
            if (of := v["assessment"].get("pseudoprogression_of")) in by_code
        ],
    }


def lesion_table(timeline: dict[str, Any]) -> dict[str, Any]:
    """Each tracked lesion's RANO diameters over the analysed visits: ``visits`` (dates) and
    ``rows`` (one per track, in track order, each cell ``longest x perpendicular`` mm, or None
    where the lesion is not seen). Untracked lesions (visits not evaluable) are left out."""
    analysed = [v for v in timeline["visits"] if v["results"]]
    tracks: dict[str, dict[str, dict[str, Any]]] = {}
    for visit in analysed:
        results = visit["results"]
        for lesion in [*results.get("lesions", []), *results.get("t2_flair_lesions", [])]:
            if lesion["track"]:
                tracks.setdefault(lesion["track"], {})[visit["code"]] = lesion

    def order(track: str) -> tuple[str, int]:
        return track[0], int(track[1:]) if track[1:].isdigit() else 0

    return {
        "visits": [v["acquired_on"] for v in analysed],
        "rows": [
            {
                "track": track,
                "cells": [tracks[track].get(v["code"]) for v in analysed],
            }
            for track in sorted(tracks, key=order)
        ],
    }
