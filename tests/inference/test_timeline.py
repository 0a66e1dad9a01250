"""The engine's timeline from plain data (``inference.response.timeline``): the one assembly the
service and the response benchmark share. Fuller cases (splits, merges, mixed tumours, visits left
out) run through the service's mapping in tests/tracker/test_assessment_input.py."""

from __future__ import annotations

import datetime as dt

import pytest

from inference.measurement.lesions import TrackEntry
from inference.response.rano import assess, parse_timeline
from inference.response.timeline import (
    LesionKind,
    LesionSize,
    PatientRecord,
    VisitRecord,
    build_timeline,
    t2_flair_tracks,
)

PATIENT = PatientRecord(
    criteria="rano2-2d",
    presentation="ce",
    setting="recurrent",
    radiotherapy_end_on=None,
    confirm_pd=False,
    physiologic_steroid_max_mg=0.75,
    antiangiogenic_therapy=False,
)


def _visit(day: int, *sizes: tuple[float, float], **kw: object) -> VisitRecord:
    lesions = [LesionSize(n, a, b, 1.0, min(a, b) >= 10) for n, (a, b) in enumerate(sizes, 1)]
    return VisitRecord(
        id=f"v{day}",
        acquired_on=dt.date(2024, 1, 1) + dt.timedelta(days=day),
        lesions={LesionKind.CORE: lesions},
        whole_ml=12.0,
        enhancing_ml=2.0,
        **kw,  # type: ignore[arg-type]
    )


def _at(*tracks: str) -> list[TrackEntry]:
    return [TrackEntry(t, True, n, 1.0, None) for n, t in enumerate(tracks, 1)]


def test_a_new_lesion_is_flagged_where_it_appears_then_summed_with_the_others() -> None:
    visits = [_visit(0, (20, 20)), _visit(60, (20, 20), (12, 11)), _visit(120, (20, 20), (12, 11))]
    history = [_at("L1"), _at("L1", "L2"), _at("L1", "L2")]
    data = build_timeline(PATIENT, visits, {LesionKind.CORE: history})
    baseline, appeared, later = data["visits"]
    assert [x["track"] for x in baseline["lesions"]] == ["L1"]
    assert appeared["new_lesion"] == {"measurable": True}
    assert later["new_lesion"] is None
    assert [x["track"] for x in later["lesions"]] == ["L1", "L2"]
    assert baseline["non_enhancing_volume_ml"] == 10.0
    result = assess(parse_timeline(data))
    assert [row.category for row in result.visits][1] == "PD"
    assert result.progression_visit == "v60"


def test_a_vanished_lesion_stays_listed_as_zero_and_a_visit_left_out_is_not_evaluable() -> None:
    visits = [
        _visit(0, (20, 20), (15, 12)),
        _visit(30, not_evaluable=["no T1 post-contrast at this visit"]),
        _visit(60, (20, 20)),
    ]
    history = [_at("L1", "L2"), _at("L1")]  # the evaluable visits only
    data = build_timeline(PATIENT, visits, {LesionKind.CORE: history})
    assert data["visits"][1]["not_evaluable"] == "no T1 post-contrast at this visit"
    assert data["visits"][1]["lesions"] == []
    assert data["visits"][1]["non_enhancing_volume_ml"] is None
    gone = data["visits"][2]["lesions"][1]
    assert (gone["track"], gone["longest_mm"], gone["perpendicular_mm"]) == ("L2", 0.0, 0.0)


def test_t2_flair_tracks_are_named_n() -> None:
    history = [[TrackEntry("L1", True, 1, 1.0, None, split_from="L2", merged_into=None)]]
    renamed = t2_flair_tracks(history)
    assert (renamed[0][0].track, renamed[0][0].split_from) == ("N1", "N2")


def test_tracks_for_the_wrong_number_of_visits_are_refused() -> None:
    visits = [_visit(0, (20, 20)), _visit(60, (20, 20))]
    with pytest.raises(ValueError, match="tracks for 1 of 2 visits"):
        build_timeline(PATIENT, visits, {LesionKind.CORE: [_at("L1")]})


def test_the_engine_names_the_baseline_and_the_nadir() -> None:
    """The landmarks charts and reports mark: the nadir is the smallest burden from the
    baseline on, not a smaller scan before it."""
    visits = [
        _visit(-30, (10, 10)),
        _visit(0, (20, 20)),
        _visit(60, (12, 12)),
        _visit(120, (16, 16)),
    ]
    history = [_at("L1")] * 4
    after_radiotherapy = {
        "setting": "newly_diagnosed",
        "radiotherapy_end_on": dt.date(2023, 12, 31),
    }
    patient = PatientRecord(**{**PATIENT.__dict__, **after_radiotherapy})
    data = build_timeline(patient, visits, {LesionKind.CORE: history})
    result = assess(parse_timeline(data))
    assert (result.baseline_visit, result.nadir_visit) == ("v0", "v60")
    assert result.as_dict()["nadir_visit"] == "v60"
