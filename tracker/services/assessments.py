"""Assessing a patient's whole timeline: lesions tracked across the analysed visits, the
``assess`` input built from them and the patient's records, the RANO 2.0 engine run, and one
``Assessment`` per visit stored (the previous ones kept, no longer current).

Tracking happens here, on the patient, not per visit: every analysed visit's lesion map is
brought into the first analysed visit's space (its stored registration, or a new one when the
first visit changed), so adding, editing or removing an earlier visit gives consistent tracks.

A visit whose sequences cannot support the assessment (no T1 post-contrast; no FLAIR or T2 for a
non-enhancing or mixed tumour) is left out of the engine's timeline and stored as
'indeterminate' with the reason (``unassessable_reasons``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from inference.labels import Region
from inference.response import assess, baseline_index, parse_timeline
from tracker.models import (
    AnalysisRun,
    Assessment,
    Category,
    Patient,
    Presentation,
    TreatmentKind,
    Visit,
)


def _analysed_runs(patient: Patient) -> list[AnalysisRun]:
    return list(
        AnalysisRun.objects.filter(visit__patient=patient, is_current=True)
        .select_related("visit", "measurement")
        .prefetch_related("lesions", "registrations")
        .order_by("visit__acquired_on")
    )


def _tracks(runs: list[AnalysisRun]) -> list[dict[int, str]]:
    """For each run, lesion number -> track id (L1, L2, ...), tracked in the first run's space."""
    from inference.io import read_image  # noqa: PLC0415
    from inference.lesions import track_lesions  # noqa: PLC0415
    from inference.register import load_transform, resample  # noqa: PLC0415
    from tracker.services.pipeline import media, register_runs  # noqa: PLC0415

    if not runs:
        return []
    reference = read_image(media(runs[0].measurement.lesion_map))
    maps = [reference]
    for run in runs[1:]:
        registration = next(
            (
                r
                for r in run.registrations.all()
                if r.role == "baseline" and r.to_visit_id == runs[0].visit_id
            ),
            None,
        )
        if registration is None:
            registration = register_runs(runs[0], run, "baseline")
        transform = load_transform(media(registration.transform))
        lesion_map = read_image(media(run.measurement.lesion_map))
        maps.append(resample(lesion_map, reference, transform, labels=True))
    history = track_lesions(maps)
    return [
        {entry.component: entry.track for entry in entries if entry.present and entry.component}
        for entries in history
    ]


def _radiotherapy_end(patient: Patient) -> dt.date | None:
    """The end of the most recent radiotherapy course (its start while it is ongoing is not an
    end: None, and the engine says it lacked the date)."""
    ends = [
        t.ended_on
        for t in patient.treatments.all()
        if t.kind == TreatmentKind.RADIOTHERAPY and t.ended_on is not None
    ]
    return max(ends) if ends else None


def _component(patient: Patient, et_volume_ml: float) -> str:
    if patient.presentation == Presentation.MIXED:
        return "ce" if et_volume_ml > 0 else "non-ce"
    return "ce" if patient.presentation == Presentation.ENHANCING else "non-ce"


def timeline_input(
    patient: Patient, runs: list[AnalysisRun], tracks: list[dict[int, str]]
) -> dict[str, Any]:
    """The ``assess`` input (DESIGN.md) for the analysed visits and their lesion tracks."""
    radiotherapy_end = _radiotherapy_end(patient)
    top: dict[str, Any] = {
        "criteria": patient.criteria,
        "presentation": patient.presentation,
        "setting": patient.setting,
        "radiotherapy_end_on": radiotherapy_end.isoformat() if radiotherapy_end else None,
        "confirm_pd": patient.confirm_progression,
        "physiologic_steroid_max_mg": float(patient.physiologic_steroid_max_mg),
        "antiangiogenic_therapy": any(
            t.kind == TreatmentKind.ANTIANGIOGENIC for t in patient.treatments.all()
        ),
    }
    visits = [_visit_entry(run.visit) for run in runs]
    index = baseline_index(parse_timeline({**top, "visits": visits}))[0]
    lesions_by_run = [
        {tracks[i].get(lesion.number, f"?{lesion.number}"): lesion for lesion in run.lesions.all()}
        for i, run in enumerate(runs)
    ]
    baseline_tracks = sorted(lesions_by_run[index]) if index is not None else []
    for i, (run, entry) in enumerate(zip(runs, visits, strict=True)):
        lesions = lesions_by_run[i]
        if index is None or i <= index:
            listed = sorted(lesions)
            new = None
        else:
            listed = baseline_tracks
            added = [lesions[t] for t in lesions if t not in baseline_tracks]
            new = {"measurable": any(x.measurable for x in added)} if added else None
        entry["lesions"] = [_lesion_entry(patient, track, lesions.get(track)) for track in listed]
        entry["new_lesion"] = new
        volumes = run.measurement.volumes_ml
        whole, enhancing = volumes.get("WT"), volumes.get("ET")
        entry["non_enhancing_volume_ml"] = (
            None  # no FLAIR or T2: not measured, and not invented
            if whole is None or enhancing is None
            else round(max(whole - enhancing, 0.0), 4)
        )
    return {**top, "visits": visits}


def unassessable_reasons(patient: Patient, run: AnalysisRun) -> list[str]:
    """Why a visit's sequences cannot give a RANO 2.0 assessment (empty when they can).

    Choice: lesions, their products and enhancing volumes come from the tumour core, which needs
    T1 post-contrast; a visit without it is left out of the timeline the engine assesses (no
    burden is invented for it, so it can be neither a nadir nor a progression) and gets its own
    'indeterminate' row saying why. Non-enhancing and mixed tumours are assessed on their
    T2/FLAIR disease too, which needs FLAIR or T2.
    """
    supported = set(run.supported_regions)
    if Region.TC.value not in supported:
        return [
            "no T1 post-contrast at this visit: the enhancing tumour and the tumour core (and so "
            "the RANO lesion measurements) cannot be measured, so RANO 2.0 is not assessed here; "
            "the visit is left out of the timeline the other visits are assessed on"
        ]
    if patient.presentation != Presentation.ENHANCING and Region.WT.value not in supported:
        return [
            "no FLAIR or T2 at this visit: the non-enhancing (T2/FLAIR) disease of a "
            f"{patient.get_presentation_display()} tumour cannot be measured, so RANO 2.0 is not "
            "assessed here; the visit is left out of the timeline the other visits are assessed on"
        ]
    return []


def _visit_entry(visit: Visit) -> dict[str, Any]:
    return {
        # A patient has one visit per day (a constraint), so the date is a unique id, and it
        # is what a tumour board reads in the reasons ("over nadir ... (2024-03-02)").
        "id": visit.acquired_on.isoformat(),
        "acquired_on": visit.acquired_on.isoformat(),
        "lesions": [],
        "non_enhancing_volume_ml": None,
        "new_lesion": None,
        "non_target": visit.non_target,
        "clinical_status": visit.clinical_status,
        "steroid_dose_mg": float(visit.steroid_dose_mg),
    }


def _lesion_entry(patient: Patient, track: str, lesion: Any) -> dict[str, Any]:
    if lesion is None:  # tracked since baseline, gone now
        return {
            "track": track,
            "component": _component(patient, 0.0),
            "longest_mm": 0.0,
            "perpendicular_mm": 0.0,
            "et_volume_ml": 0.0,
        }
    longest = round(lesion.longest_mm, 3)
    return {
        "track": track,
        "component": _component(patient, lesion.et_volume_ml),
        "longest_mm": longest,
        "perpendicular_mm": min(round(lesion.perpendicular_mm, 3), longest),
        "et_volume_ml": round(lesion.et_volume_ml, 4),
    }


def patient_assess(patient: Patient) -> list[Assessment]:
    """Assess the analysed visits; store one current ``Assessment`` per visit and store lesion
    tracks on the lesions."""
    with transaction.atomic():
        # One assessment of a patient at a time: two runs finishing together queue up here
        # instead of both writing "current" rows.
        Patient.objects.select_for_update().filter(pk=patient.pk).first()
        started = timezone.now()  # a request after this waits for the lock: it stays set
        patient = Patient.objects.prefetch_related("treatments").get(pk=patient.pk)
        Patient.objects.filter(pk=patient.pk, assessment_requested_at__lte=started).update(
            assessment_requested_at=None
        )
        runs = _analysed_runs(patient)
        Assessment.objects.filter(visit__patient=patient, is_current=True).update(is_current=False)
        if not runs:
            return []
        left_out = {run.pk: unassessable_reasons(patient, run) for run in runs}
        assessed = [run for run in runs if not left_out[run.pk]]
        tracks = _tracks(assessed)
        data = timeline_input(patient, assessed, tracks) if assessed else {}
        result = assess(parse_timeline(data)).as_dict() if assessed else {"visits": []}
        runs_by_id = {run.visit.acquired_on.isoformat(): run for run in runs}
        visits = {key: run.visit for key, run in runs_by_id.items()}
        versions = sorted({f"{r.model_name} {r.model_version}".strip() for r in runs})
        stored = []
        for row in result["visits"]:
            reasons = list(row["reasons"])
            if data.get("antiangiogenic_therapy") and (
                Region.WT.value not in runs_by_id[row["id"]].supported_regions
            ):
                reasons.append(
                    "no FLAIR or T2 at this visit: T2/FLAIR growth under anti-angiogenic therapy "
                    "is not assessed here"
                )
            stored.append(
                Assessment.objects.create(
                    visit=visits[row["id"]],
                    category=row["category"],
                    confirmed=row["confirmed"],
                    reference_visit=visits.get(row["reference_visit"] or ""),
                    relative_change=row["relative_change"],
                    reasons=reasons,
                    is_progression_visit=row["id"] == result["progression_visit"],
                    criteria=patient.criteria,
                    timeline_input=data,
                    model_versions=versions,
                )
            )
        left = [run for run in runs if left_out[run.pk]]
        for run in left:
            stored.append(
                Assessment.objects.create(
                    visit=run.visit,
                    category=Category.INDETERMINATE,
                    confirmed=None,
                    reasons=left_out[run.pk],
                    criteria=patient.criteria,
                    timeline_input=data,
                    model_versions=versions,
                )
            )
        # The visits left out are not tracked: their lesions (if any) carry no track.
        for run, run_tracks in zip([*assessed, *left], [*tracks, *[{}] * len(left)], strict=True):
            for lesion in run.lesions.all():
                track = run_tracks.get(lesion.number, "")
                if lesion.track != track:
                    lesion.track = track
                    lesion.save(update_fields=["track"])
    return stored
