"""The engine's timeline (the ``assess`` input of DESIGN.md) built from plain data: a patient's
context, each visit's measured lesions and volumes, and the lesion tracks across the visits
(``inference.measurement.lesions.track_lesions``). The service maps its stored rows into these
records and the benchmarks map their phantoms' measurements, so there is one assembly, tested once.

Which lesions go in, as which component [RANO2, RANO-LGG]: an enhancing tumour's lesions are
components of the tumour core; a non-enhancing tumour's, and the non-enhancing component of a
mixed one, are components of the whole T2/FLAIR abnormality, and their enhancing disease the core
components that enhance.

After the baseline every track seen since is listed at every visit (a vanished one as 0 x 0); a
fragment names the track it split from; a lesion merged into another is listed 0 x 0 with
``merged_into`` for as long as the two stay one; a track that first shows after the baseline is
a new lesion (``new_lesion``, measurable when any such lesion is).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inference.measurement.lesions import TrackEntry
from inference.response.rano import Presentation, baseline_index, parse_timeline


class LesionKind(enum.StrEnum):
    """The two kinds of measured lesion: components of the tumour core (T1 post-contrast), and
    of the whole T2/FLAIR abnormality (tracked as N1, N2, ... beside the core's L1, L2, ...)."""

    CORE = "core"
    T2_FLAIR = "t2flair"


@dataclass(frozen=True)
class LesionSize:
    """One measured lesion of a visit: its number in the visit's lesion map, its RANO
    diameters and its enhancing volume (None where unknown)."""

    number: int
    longest_mm: float
    perpendicular_mm: float
    et_volume_ml: float | None
    measurable: bool = False


@dataclass(frozen=True)
class VisitRecord:
    id: str
    acquired_on: dt.date
    non_target: str = "absent"
    clinical_status: str = "stable"
    steroid_dose_mg: float = 0.0
    lesions: Mapping[str, Sequence[LesionSize]] = field(default_factory=dict)
    whole_ml: float | None = None  # the whole tumour (None: not measured)
    enhancing_ml: float | None = None
    not_evaluable: Sequence[str] = ()  # why the sequences cannot support an assessment


@dataclass(frozen=True)
class PatientRecord:
    criteria: str
    presentation: str
    setting: str
    radiotherapy_end_on: dt.date | None
    confirm_pd: bool
    physiologic_steroid_max_mg: float
    antiangiogenic_therapy: bool


def lesion_kinds(presentation: str) -> dict[LesionKind, str]:
    """The lesion kinds a presentation is assessed on, with the component each goes in as."""
    if presentation == Presentation.ENHANCING:
        return {LesionKind.CORE: "ce"}
    return {LesionKind.CORE: "ce", LesionKind.T2_FLAIR: "non-ce"}


def t2_flair_tracks(history: list[list[TrackEntry]]) -> list[list[TrackEntry]]:
    """T2/FLAIR tracks renamed N1, N2, ... (``track_lesions`` names every track L1, L2, ...)."""

    def rename(track: str | None) -> str | None:
        return track and f"N{track[1:]}"

    for entries in history:
        for entry in entries:
            entry.track = rename(entry.track) or entry.track
            entry.split_from = rename(entry.split_from)
            entry.merged_into = rename(entry.merged_into)
    return history


def build_timeline(
    patient: PatientRecord,
    visits: Sequence[VisitRecord],
    histories: Mapping[str, Sequence[Sequence[TrackEntry]]],
) -> dict[str, Any]:
    """The ``assess`` input for ``visits`` (in date order). ``histories`` holds, per lesion kind
    the presentation uses (``lesion_kinds``), the tracks of the evaluable visits in order (the
    visits with ``not_evaluable`` reasons are not tracked)."""
    top: dict[str, Any] = {
        "criteria": patient.criteria,
        "presentation": patient.presentation,
        "setting": patient.setting,
        "radiotherapy_end_on": (
            patient.radiotherapy_end_on.isoformat() if patient.radiotherapy_end_on else None
        ),
        "confirm_pd": patient.confirm_pd,
        "physiologic_steroid_max_mg": float(patient.physiologic_steroid_max_mg),
        "antiangiogenic_therapy": patient.antiangiogenic_therapy,
    }
    entries = [_visit_entry(visit) for visit in visits]
    index = baseline_index(parse_timeline({**top, "visits": entries}))[0]
    evaluable = [
        (position, visit, entry)
        for position, (visit, entry) in enumerate(zip(visits, entries, strict=True))
        if not visit.not_evaluable
    ]
    new_at: dict[int, list[LesionSize]] = {}  # visit position -> its new lesions
    for kind, component in lesion_kinds(patient.presentation).items():
        tracks = histories.get(kind, [])
        if len(tracks) != len(evaluable):
            raise ValueError(f"{kind} tracks for {len(tracks)} of {len(evaluable)} visits")
        enhancing_only = kind == LesionKind.CORE and patient.presentation != Presentation.ENHANCING
        state = _KindState(component)
        for (position, visit, entry), history in zip(evaluable, tracks, strict=True):
            lesions = _by_track(visit.lesions.get(kind, ()), history, enhancing_only)
            if index is None or position <= index:
                entry["lesions"] += [state.row(t, lesions[t]) for t in sorted(lesions)]
                state.listed = sorted(lesions) if position == index else state.listed
                continue
            rows, appeared = state.follow_up(lesions, list(history))
            entry["lesions"] += rows
            new_at.setdefault(position, []).extend(appeared)
    for position, appeared in new_at.items():
        entries[position]["new_lesion"] = (
            {"measurable": any(x.measurable for x in appeared)} if appeared else None
        )
    return {**top, "visits": entries}


def _visit_entry(visit: VisitRecord) -> dict[str, Any]:
    whole, enhancing = visit.whole_ml, visit.enhancing_ml
    entry: dict[str, Any] = {
        "id": visit.id,
        "acquired_on": visit.acquired_on.isoformat(),
        "lesions": [],
        # no FLAIR or T2 (or not evaluable): not measured, and not invented
        "non_enhancing_volume_ml": None
        if whole is None or enhancing is None or visit.not_evaluable
        else round(max(whole - enhancing, 0.0), 4),
        "new_lesion": None,
        "non_target": visit.non_target,
        "clinical_status": visit.clinical_status,
        "steroid_dose_mg": float(visit.steroid_dose_mg),
    }
    if visit.not_evaluable:
        entry["not_evaluable"] = "; ".join(visit.not_evaluable)
    return entry


def _by_track(
    lesions: Sequence[LesionSize], history: Sequence[TrackEntry], enhancing_only: bool
) -> dict[str, LesionSize]:
    """Track id -> the lesion it is at this visit (the enhancing ones only where asked)."""
    numbers = {e.component: e.track for e in history if e.present and e.component is not None}
    return {
        numbers[x.number]: x
        for x in lesions
        if x.number in numbers and (not enhancing_only or (x.et_volume_ml or 0) > 0)
    }


def _lesion_row(track: str, component: str, lesion: LesionSize | None) -> dict[str, Any]:
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
        # rounding never makes the perpendicular the longer diameter
        "perpendicular_mm": min(round(lesion.perpendicular_mm, 3), longest),
        "et_volume_ml": None if lesion.et_volume_ml is None else round(lesion.et_volume_ml, 4),
    }


class _KindState:
    """One lesion kind's tracks across the visits, as the engine input lists them."""

    def __init__(self, component: str) -> None:
        self.component = component
        self.listed: list[str] = []  # tracks listed at every visit after the baseline
        self.merged: dict[str, str] = {}  # track -> the track it is measured with

    def row(self, track: str, lesion: LesionSize | None) -> dict[str, Any]:
        return _lesion_row(track, self.component, lesion)

    def follow_up(
        self, lesions: dict[str, LesionSize], history: list[TrackEntry]
    ) -> tuple[list[dict[str, Any]], list[LesionSize]]:
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
