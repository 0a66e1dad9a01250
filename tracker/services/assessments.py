"""Assessing a patient's whole timeline: lesions tracked across the analysed visits, the
``assess`` input built from them and the patient's records, the RANO 2.0 engine run, and one
``Assessment`` per visit stored (the previous ones kept, no longer current).

Tracking happens here, on the patient, not per visit: every analysed visit's lesion map is
brought into the first analysed visit's space (its stored registration, or a new one when the
first visit changed), so adding, editing or removing an earlier visit gives consistent tracks.

A visit whose sequences cannot support the assessment (no T1 post-contrast; no FLAIR or T2 for a
non-enhancing or mixed tumour) goes to the engine as not evaluable, with the reason
(``unassessable_reasons``): it is stored as 'NE', is never a baseline or a nadir, and the
confirmation windows run across it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from inference.imaging.io import read_lesion_map
from inference.imaging.register import load_transform, resample
from inference.labels import Region
from inference.measurement.lesions import TrackEntry, track_lesions
from inference.response.rano import assess, parse_timeline
from inference.response.timeline import (
    LesionSize,
    PatientRecord,
    VisitRecord,
    build_timeline,
    lesion_kinds,
    t2_flair_tracks,
)
from tracker.models import (
    AnalysisRun,
    Assessment,
    LesionKind,
    Patient,
    Presentation,
    RegistrationRole,
    TreatmentKind,
)
from tracker.services.registrations import registration_create
from tracker.storage import media


def _analysed_runs(patient: Patient) -> list[AnalysisRun]:
    return list(
        AnalysisRun.objects.filter(visit__patient=patient, is_current=True)
        .select_related("visit", "measurement")
        .prefetch_related("lesions", "registrations")
        .order_by("visit__acquired_on")
    )


def _tracks(runs: list[AnalysisRun], kind: str = LesionKind.CORE) -> list[list[TrackEntry]]:
    """For each run, every track of one lesion kind seen so far (L1, L2, ... for the core, N1,
    N2, ... for the T2/FLAIR abnormality; present or not, split from or merged into another),
    tracked in the first run's space."""

    def path(run: AnalysisRun) -> str:
        measurement = run.measurement
        return (
            measurement.lesion_map if kind == LesionKind.CORE else measurement.t2_flair_lesion_map
        )

    if not runs:
        return []
    reference = read_lesion_map(media(path(runs[0])))
    maps = [reference]
    for run in runs[1:]:
        registration = next(
            (
                r
                for r in run.registrations.all()
                if r.role == RegistrationRole.BASELINE and r.to_visit_id == runs[0].visit_id
            ),
            None,
        )
        if registration is None:
            registration = registration_create(
                fixed=runs[0].visit, moving=run, role=RegistrationRole.BASELINE
            )
        transform = load_transform(media(registration.transform))
        lesion_map = read_lesion_map(media(path(run)))
        maps.append(resample(lesion_map, reference, transform, labels=True))
    history = track_lesions(maps)
    return t2_flair_tracks(history) if kind == LesionKind.T2_FLAIR else history


def _numbers(entries: list[TrackEntry]) -> dict[int, str]:
    """Lesion number -> track id at one visit."""
    return {e.component: e.track for e in entries if e.present and e.component is not None}


def _radiotherapy_end(patient: Patient) -> dt.date | None:
    """The end of the most recent radiotherapy course (its start while it is ongoing is not an
    end: None, and the engine says it lacked the date)."""
    ends = [
        t.ended_on
        for t in patient.treatments.all()
        if t.kind == TreatmentKind.RADIOTHERAPY and t.ended_on is not None
    ]
    return max(ends) if ends else None


def timeline_input(
    patient: Patient,
    runs: list[AnalysisRun],
    histories: dict[str, list[list[TrackEntry]]],
    not_evaluable: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    """The ``assess`` input (``inference.response.timeline.build_timeline``) for the analysed runs
    and their lesion tracks; a run in ``not_evaluable`` (run pk -> reasons) goes in as a
    not-evaluable visit."""
    not_evaluable = not_evaluable or {}
    radiotherapy_end = _radiotherapy_end(patient)
    record = PatientRecord(
        criteria=patient.criteria,
        presentation=patient.presentation,
        setting=patient.setting,
        radiotherapy_end_on=radiotherapy_end,
        confirm_pd=patient.confirm_progression,
        physiologic_steroid_max_mg=float(patient.physiologic_steroid_max_mg),
        antiangiogenic_therapy=any(
            t.kind == TreatmentKind.ANTIANGIOGENIC for t in patient.treatments.all()
        ),
    )
    return build_timeline(
        record, [_visit_record(run, not_evaluable.get(run.pk, [])) for run in runs], histories
    )


def _visit_record(run: AnalysisRun, not_evaluable: list[str]) -> VisitRecord:
    visit, volumes = run.visit, run.measurement.volumes_ml
    lesions: dict[str, list[LesionSize]] = {}
    for lesion in run.lesions.all():
        lesions.setdefault(lesion.kind, []).append(
            LesionSize(
                number=lesion.number,
                longest_mm=lesion.longest_mm,
                perpendicular_mm=lesion.perpendicular_mm,
                et_volume_ml=lesion.et_volume_ml,
                measurable=lesion.measurable,
            )
        )
    return VisitRecord(
        # A patient has one visit per day (a constraint), so the date is a unique id, and it
        # is what a tumour board reads in the reasons ("over nadir ... (2024-03-02)").
        id=visit.acquired_on.isoformat(),
        acquired_on=visit.acquired_on,
        non_target=visit.non_target,
        clinical_status=visit.clinical_status,
        steroid_dose_mg=float(visit.steroid_dose_mg),
        lesions=lesions,
        whole_ml=volumes.get("WT"),
        enhancing_ml=volumes.get("ET"),
        not_evaluable=not_evaluable,
    )


def unassessable_reasons(patient: Patient, run: AnalysisRun) -> list[str]:
    """Why a visit's sequences cannot give a RANO 2.0 assessment (empty when they can).

    Choice: lesions, their products and enhancing volumes come from the tumour core, which needs
    T1 post-contrast; a visit without it goes to the engine as not evaluable (no burden is
    invented for it, so it can be neither a nadir nor a progression) and its 'NE' row says why.
    Non-enhancing and mixed tumours are assessed on their T2/FLAIR disease too, which needs
    FLAIR or T2.
    """
    supported = set(run.supported_regions)
    if Region.TC.value not in supported:
        return [
            "no T1 post-contrast at this visit: the enhancing tumour and the tumour core (and so "
            "the RANO lesion measurements) cannot be measured"
        ]
    non_enhancing = patient.presentation != Presentation.ENHANCING
    if non_enhancing and Region.WT.value in supported and not run.measurement.t2_flair_lesion_map:
        return [
            "measured before T2/FLAIR lesions were recorded: the non-enhancing disease has no "
            "lesions to assess; analyse the visit again"
        ]
    if non_enhancing and Region.WT.value not in supported:
        return [
            "no FLAIR or T2 at this visit: the non-enhancing (T2/FLAIR) disease of a "
            f"{patient.get_presentation_display()} tumour cannot be measured"
        ]
    return []


@dataclass(frozen=True)
class _Tracked:
    """What the lesion tracks were computed from: the analysed runs (with their measurements)
    and the presentation that says which lesion kinds are tracked."""

    runs: tuple[tuple[int, int | None], ...]
    presentation: str


def _tracked(patient: Patient, runs: list[AnalysisRun]) -> _Tracked:
    return _Tracked(
        tuple((run.pk, getattr(run, "measurement", None) and run.measurement.pk) for run in runs),
        patient.presentation,
    )


def _histories(
    patient: Patient, runs: list[AnalysisRun]
) -> tuple[dict[int, list[str]], dict[str, list[list[TrackEntry]]]]:
    """The runs left out (run pk -> reasons) and the tracks of the others, per lesion kind.
    Reads lesion maps and may register a visit to the first: done before the patient's row is
    locked, so a slow registration never holds other writers of the patient up."""
    left_out = {run.pk: unassessable_reasons(patient, run) for run in runs}
    left_out = {pk: reasons for pk, reasons in left_out.items() if reasons}
    assessed = [run for run in runs if run.pk not in left_out]
    return left_out, {kind: _tracks(assessed, kind) for kind in lesion_kinds(patient.presentation)}


ATTEMPTS = 5  # tracks recomputed when the timeline changed while they were computed


def patient_assess(*, patient: Patient) -> list[Assessment]:
    """Assess the analysed visits; store one current ``Assessment`` per visit and store lesion
    tracks on the lesions.

    The tracks are computed first, without a lock; then, holding the patient's row lock, the
    analysed runs are read again and the result is stored only if they are the ones tracked
    (else the tracks are computed again). So two assessments of one patient store one after the
    other, each from a consistent timeline, and the first attempt never holds the lock over file
    reading (a retry inside a caller's transaction does: the lock lasts until that commits)."""
    for _ in range(ATTEMPTS):
        current = Patient.objects.prefetch_related("treatments").get(pk=patient.pk)
        runs = _analysed_runs(current)
        left_out, histories = _histories(current, runs)
        stored = _store(current.pk, _tracked(current, runs), left_out, histories)
        if stored is not None:
            return stored
    raise RuntimeError(
        f"the timeline of patient {patient.code} kept changing while it was assessed "
        f"({ATTEMPTS} attempts); the sweeper will assess it again"
    )


def _store(
    patient_pk: int,
    tracked: _Tracked,
    left_out: dict[int, list[str]],
    histories: dict[str, list[list[TrackEntry]]],
) -> list[Assessment] | None:
    """Under the patient's row lock: the engine's result stored, or None if the analysed runs
    are no longer the ones tracked."""
    with transaction.atomic():
        # One assessment of a patient at a time: two runs finishing together queue up here
        # instead of both writing "current" rows.
        Patient.objects.select_for_update().filter(pk=patient_pk).first()
        started = timezone.now()  # a request after this waits for the lock: it stays set
        patient = Patient.objects.prefetch_related("treatments").get(pk=patient_pk)
        runs = _analysed_runs(patient)
        if _tracked(patient, runs) != tracked:
            return None
        Patient.objects.filter(pk=patient.pk, assessment_requested_at__lte=started).update(
            assessment_requested_at=None
        )
        Assessment.objects.filter(visit__patient=patient, is_current=True).update(is_current=False)
        if not runs:
            return []
        assessed = [run for run in runs if run.pk not in left_out]
        data = timeline_input(patient, runs, histories, left_out)
        result = assess(parse_timeline(data)).as_dict()
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
                    is_nadir_visit=row["id"] == result["nadir_visit"],
                    pseudoprogression_of=visits.get(row["pseudoprogression_of"] or ""),
                    criteria=patient.criteria,
                    timeline_input=data,
                    model_versions=versions,
                )
            )
        # The visits not evaluable are not tracked: their lesions (if any) carry no track.
        numbers = {
            (kind, run.pk): _numbers(entries)
            for kind, history in histories.items()
            for run, entries in zip(assessed, history, strict=True)
        }
        for run in runs:
            for lesion in run.lesions.all():
                track = numbers.get((lesion.kind, run.pk), {}).get(lesion.number, "")
                if lesion.track != track:
                    lesion.track = track
                    lesion.save(update_fields=["track"])
    return stored
