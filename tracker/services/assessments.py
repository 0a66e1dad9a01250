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
from typing import Any

from django.db import transaction
from django.utils import timezone

from inference.labels import Region
from inference.lesions import TrackEntry
from inference.response import assess, baseline_index, parse_timeline
from tracker.models import (
    AnalysisRun,
    Assessment,
    LesionKind,
    Patient,
    Presentation,
    RegistrationRole,
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


def _tracks(runs: list[AnalysisRun], kind: str = LesionKind.CORE) -> list[list[TrackEntry]]:
    """For each run, every track of one lesion kind seen so far (L1, L2, ... for the core, N1,
    N2, ... for the T2/FLAIR abnormality; present or not, split from or merged into another),
    tracked in the first run's space."""
    from inference.io import read_lesion_map  # noqa: PLC0415
    from inference.lesions import track_lesions  # noqa: PLC0415
    from inference.register import load_transform, resample  # noqa: PLC0415
    from tracker.services.pipeline import media, register_runs  # noqa: PLC0415

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
                if r.role == "baseline" and r.to_visit_id == runs[0].visit_id
            ),
            None,
        )
        if registration is None:
            registration = register_runs(runs[0], run, RegistrationRole.BASELINE)
        transform = load_transform(media(registration.transform))
        lesion_map = read_lesion_map(media(path(run)))
        maps.append(resample(lesion_map, reference, transform, labels=True))
    history = track_lesions(maps)
    if kind == LesionKind.T2_FLAIR:
        for entries in history:
            for entry in entries:
                entry.track = _t2_track(entry.track)
                entry.split_from = entry.split_from and _t2_track(entry.split_from)
                entry.merged_into = entry.merged_into and _t2_track(entry.merged_into)
    return history


def _t2_track(track: str) -> str:
    return f"N{track[1:]}"


def _numbers(entries: list[TrackEntry]) -> dict[int, str]:
    """Lesion number -> track id at one visit."""
    return {e.component: e.track for e in entries if e.present and e.component is not None}


def lesion_kinds(patient: Patient) -> dict[str, str]:
    """Which lesions the engine is given, as which component [RANO2, RANO-LGG]: an enhancing
    tumour's lesions are components of the tumour core; a non-enhancing tumour's, and the
    non-enhancing component of a mixed one, are components of the whole T2/FLAIR abnormality,
    and their enhancing disease the core components that enhance."""
    if patient.presentation == Presentation.ENHANCING:
        return {LesionKind.CORE: "ce"}
    return {LesionKind.CORE: "ce", LesionKind.T2_FLAIR: "non-ce"}


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
    patient: Patient,
    runs: list[AnalysisRun],
    histories: dict[str, list[list[TrackEntry]]],
    not_evaluable: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    """The ``assess`` input (DESIGN.md) for the analysed visits and their lesion tracks.

    ``histories`` holds, per lesion kind the presentation uses (``lesion_kinds``), the tracks
    of the evaluable runs in order; a run in ``not_evaluable`` (run pk -> reasons) goes in as a
    not-evaluable visit. After the baseline every track seen since is listed at every visit (a
    vanished one as 0 x 0); a fragment names the track it split from; a lesion merged into
    another is listed 0 x 0 with ``merged_into`` for as long as the two stay one; a track that
    first shows after the baseline is a new lesion (``new_lesion``, measurable when any such
    lesion is)."""
    not_evaluable = not_evaluable or {}
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
    visits = [_visit_entry(run.visit, not_evaluable.get(run.pk)) for run in runs]
    index = baseline_index(parse_timeline({**top, "visits": visits}))[0]
    evaluable = [
        (position, run, entry)
        for position, (run, entry) in enumerate(zip(runs, visits, strict=True))
        if run.pk not in not_evaluable
    ]
    new_at: dict[int, list[Any]] = {}  # visit position -> its new lesions
    for kind, component in lesion_kinds(patient).items():
        tracks = histories.get(kind, [])
        if len(tracks) != len(evaluable):
            raise ValueError(f"{kind} tracks for {len(tracks)} of {len(evaluable)} visits")
        enhancing_only = kind == LesionKind.CORE and patient.presentation != Presentation.ENHANCING
        state = _KindState(component)
        for (position, run, entry), history in zip(evaluable, tracks, strict=True):
            lesions = state.lesions(run, kind, history, enhancing_only)
            if index is None or position <= index:
                entry["lesions"] += [state.row(t, lesions[t]) for t in sorted(lesions)]
                state.listed = sorted(lesions) if position == index else state.listed
                continue
            rows, appeared = state.follow_up(lesions, history)
            entry["lesions"] += rows
            new_at.setdefault(position, []).extend(appeared)
    for position, appeared in new_at.items():
        visits[position]["new_lesion"] = (
            {"measurable": any(x.measurable for x in appeared)} if appeared else None
        )
    for run, entry in zip(runs, visits, strict=True):
        volumes = run.measurement.volumes_ml
        whole, enhancing = volumes.get("WT"), volumes.get("ET")
        entry["non_enhancing_volume_ml"] = (
            None  # no FLAIR or T2 (or not evaluable): not measured, and not invented
            if whole is None or enhancing is None or run.pk in not_evaluable
            else round(max(whole - enhancing, 0.0), 4)
        )
    return {**top, "visits": visits}


class _KindState:
    """One lesion kind's tracks across the visits, as the engine input lists them."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.listed: list[str] = []  # tracks listed at every visit after the baseline
        self.merged: dict[str, str] = {}  # track -> the track it is measured with

    def lesions(
        self, run: AnalysisRun, kind: str, history: list[TrackEntry], enhancing_only: bool
    ) -> dict[str, Any]:
        numbers = _numbers(history)
        return {
            numbers[x.number]: x
            for x in run.lesions.all()
            if x.kind == kind and x.number in numbers and (x.et_volume_ml > 0 or not enhancing_only)
        }

    def row(self, track: str, lesion: Any) -> dict[str, Any]:
        return _lesion_entry(track, self.component, lesion)

    def follow_up(
        self, lesions: dict[str, Any], history: list[TrackEntry]
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """The rows of one visit after the baseline, and its new lesions (not fragments)."""
        by_track = {e.track: e for e in history}
        new_tracks = [t for t in sorted(lesions) if t not in self.listed]
        for track, e in by_track.items():
            if e.merged_into is not None and track in self.listed:
                self.merged[track] = e.merged_into
        for track in [t for t in self.merged if t in lesions]:
            del self.merged[track]  # measured on its own again
        rows = []
        for track in [*self.listed, *new_tracks]:
            row = self.row(track, lesions.get(track))
            into = _measured_with(track, self.merged)
            if into is not None and into in lesions and track not in lesions:
                row["merged_into"] = into
            parent = by_track[track].split_from if track in by_track else None
            if track in new_tracks and parent in self.listed:
                row["split_from"] = parent
            rows.append(row)
        appeared = [
            lesions[t]
            for t in new_tracks
            if t not in by_track or by_track[t].split_from not in self.listed
        ]
        self.listed = [*self.listed, *new_tracks]
        return rows, appeared


def _measured_with(track: str, merged: dict[str, str]) -> str | None:
    """The track a merged lesion is measured with, following merges of merges."""
    seen = {track}
    into = merged.get(track)
    while into is not None and into in merged and into not in seen:
        seen.add(into)
        into = merged[into]
    return into


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


def _visit_entry(visit: Visit, not_evaluable: list[str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
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
    if not_evaluable:
        entry["not_evaluable"] = "; ".join(not_evaluable)
    return entry


def _lesion_entry(track: str, component: str, lesion: Any) -> dict[str, Any]:
    """One lesion as the engine reads it; a track not present now is 0 x 0."""
    if lesion is None:  # tracked, gone now
        return {
            "track": track,
            "component": component,
            "longest_mm": 0.0,
            "perpendicular_mm": 0.0,
            "et_volume_ml": 0.0,
        }
    longest = round(lesion.longest_mm, 3)
    return {
        "track": track,
        "component": component,
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
        left_out = {pk: reasons for pk, reasons in left_out.items() if reasons}
        assessed = [run for run in runs if run.pk not in left_out]
        histories = {kind: _tracks(assessed, kind) for kind in lesion_kinds(patient)}
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
