"""The engine input the service builds from tracked lesions: new lesions keep their own tracks and
are followed, fragments name the lesion they split from, merged lesions are measured as one, a
vanished lesion keeps its component, and a visit the sequences cannot support goes in as not
evaluable. Lesion tracks are given here (``TrackEntry`` lists, as ``track_lesions`` returns them),
so each case is exact; the tracking itself is tested in ``tests/inference/test_lesions.py``."""

from __future__ import annotations

from typing import Any

from inference.measurement.lesions import TrackEntry
from inference.response.rano import assess_json
from tracker.models import AnalysisRun, Lesion, Measurement, Patient, RunStatus, Stage, Visit
from tracker.services.assessments import timeline_input


def _run(patient: Patient, on: str, *lesions: tuple[Any, ...]) -> AnalysisRun:
    """An analysed visit whose lesions are (number, longest, perpendicular, enhancing mL) of
    the tumour core, or with a fifth item "t2flair", of the T2/FLAIR abnormality."""
    visit = Visit.objects.create(patient=patient, acquired_on=on)
    run = AnalysisRun.objects.create(
        visit=visit,
        stage=Stage.DONE,
        status=RunStatus.DONE,
        is_current=True,
        sequences_used=["t1", "t1c", "t2", "flair"],
        supported_regions=["ET", "TC", "WT"],
    )
    Measurement.objects.create(
        run=run,
        volumes_ml={"ET": 2.0, "TC": 3.0, "WT": 13.0, "NCR": 1.0, "ED": 10.0},
        sum_of_products_mm2=0.0,
        lesion_map="x",
        t2_flair_lesion_map="x",
        segmentation="x",
    )
    for number, longest, perpendicular, et, *kind in lesions:
        Lesion.objects.create(
            run=run,
            kind=kind[0] if kind else "core",
            number=number,
            volume_ml=3.0,
            et_volume_ml=et,
            longest_mm=longest,
            perpendicular_mm=perpendicular,
            product_mm2=longest * perpendicular,
            measurable=min(longest, perpendicular) >= 10,
            centroid_mm=[0.0, 0.0, 0.0],
        )
    return run


def _at(track: str, component: int | None, **marks: Any) -> TrackEntry:
    present = component is not None
    return TrackEntry(track, present, component, 1.0 if present else 0.0, None, **marks)


def _input(
    patient: Patient,
    runs: list[AnalysisRun],
    history: list[list[TrackEntry]],
    t2_flair: list[list[TrackEntry]] | None = None,
    **kw: Any,
):
    runs = list(
        AnalysisRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("visit__acquired_on")
    )
    histories = {"core": history} if t2_flair is None else {"core": history, "t2flair": t2_flair}
    return timeline_input(patient, runs, histories, **kw)


def test_new_split_and_merged_lesions_reach_the_engine_as_tracks(teams: dict[str, Any]) -> None:
    patient = Patient.objects.create(
        team=teams["team_a"], label="GBM-TRACKS", setting="recurrent", confirm_progression=False
    )
    runs = [
        _run(patient, "2024-01-01", (1, 40, 30, 2.0), (2, 20, 20, 1.0)),
        # L1 splits (L3 is its fragment); a new lesion L4 appears, not measurable
        _run(
            patient,
            "2024-02-12",
            (1, 30, 20, 1.0),
            (2, 20, 20, 1.0),
            (3, 15, 10, 0.5),
            (4, 6, 5, 0.1),
        ),
        # L2 merges into L1; L4 is measurable now; the fragment L3 is gone
        _run(patient, "2024-03-25", (1, 45, 40, 3.0), (4, 12, 11, 0.4)),
    ]
    history = [
        [_at("L1", 1), _at("L2", 2)],
        [
            _at("L1", 1),
            _at("L2", 2),
            _at("L3", 3, split_from="L1", new=True),
            _at("L4", 4, new=True),
        ],
        [
            _at("L1", 1, merged_from=["L2"]),
            _at("L2", None, merged_into="L1"),
            _at("L3", None),
            _at("L4", 4),
        ],
    ]
    data = _input(patient, runs, history)
    second, third = data["visits"][1], data["visits"][2]
    assert [x["track"] for x in second["lesions"]] == ["L1", "L2", "L3", "L4"]
    assert second["lesions"][2]["split_from"] == "L1"
    assert "split_from" not in second["lesions"][3]
    assert second["new_lesion"] == {"measurable": False}  # L4; the fragment is not new
    assert [x["track"] for x in third["lesions"]] == ["L1", "L2", "L3", "L4"]
    assert third["lesions"][1]["merged_into"] == "L1"
    assert third["lesions"][2]["longest_mm"] == 0.0  # the fragment vanished
    assert third["new_lesion"] is None  # L4 was new at the visit before
    out = assess_json(data)
    # The split is summed into L1 (1,050 of 1,600 mm2: -34 %, stable, not a new lesion);
    # L4 grows measurable: progression, dated back to where it first appeared.
    assert [r["category"] for r in out["visits"]] == ["baseline", "SD", "PD"]
    assert out["progression_visit"] == "2024-02-12"


def test_a_mixed_tumour_is_measured_on_its_core_and_its_t2_flair_abnormality(
    teams: dict[str, Any],
) -> None:
    patient = Patient.objects.create(
        team=teams["team_a"], label="MIXED-1", presentation="mixed", setting="recurrent"
    )
    runs = [
        # an enhancing core lesion, a necrotic-only one (not enhancing disease), and the
        # T2/FLAIR abnormality around both
        _run(patient, "2024-01-01", (1, 30, 30, 4.0), (2, 12, 11, 0.0), (1, 60, 50, 0, "t2flair")),
        _run(patient, "2024-02-12", (1, 12, 11, 0.0), (1, 60, 50, 0, "t2flair")),
    ]
    core = [[_at("L1", 1), _at("L2", 2)], [_at("L1", None), _at("L2", 1)]]
    t2_flair = [[_at("N1", 1)], [_at("N1", 1)]]
    data = _input(patient, runs, core, t2_flair)
    first, second = data["visits"]
    assert [(x["track"], x["component"]) for x in first["lesions"]] == [
        ("L1", "ce"),
        ("N1", "non-ce"),
    ]
    assert [(x["track"], x["component"], x["longest_mm"]) for x in second["lesions"]] == [
        ("L1", "ce", 0.0),  # the enhancement is gone; the necrotic remnant is not enhancing
        ("N1", "non-ce", 60.0),
    ]
    # Enhancing CR with stable non-enhancing disease: SD (RANO 2.0 combination)
    assert [r["category"] for r in assess_json(data)["visits"]] == ["baseline", "SD"]


def test_a_non_enhancing_tumour_is_measured_on_its_t2_flair_abnormality(
    teams: dict[str, Any],
) -> None:
    patient = Patient.objects.create(
        team=teams["team_a"], label="LGG-T2", presentation="non-ce", setting="recurrent"
    )
    runs = [
        _run(patient, "2024-01-01", (1, 50, 40, 0, "t2flair")),
        _run(patient, "2024-03-01", (1, 34, 29, 0, "t2flair")),  # 986 of 2,000 mm2: -50.7 %
    ]
    t2_flair = [[_at("N1", 1)], [_at("N1", 1)]]
    data = _input(patient, runs, [[], []], t2_flair)
    assert data["visits"][0]["lesions"][0]["component"] == "non-ce"
    assert [r["category"] for r in assess_json(data)["visits"]] == ["baseline", "PR"]


def test_a_visit_the_sequences_cannot_support_goes_in_as_not_evaluable(
    teams: dict[str, Any],
) -> None:
    patient = Patient.objects.create(team=teams["team_a"], label="GBM-NE", setting="recurrent")
    runs = [
        _run(patient, "2024-01-01", (1, 40, 30, 2.0)),
        _run(patient, "2024-02-12", (1, 10, 10, 0.1)),
        _run(patient, "2024-03-25", (1, 46, 33, 2.5)),
    ]
    history = [[_at("L1", 1)], [_at("L1", 1)]]  # the middle visit is not tracked
    data = _input(patient, runs, history, not_evaluable={runs[1].pk: ["no T1 post-contrast"]})
    middle = data["visits"][1]
    assert middle["not_evaluable"] == "no T1 post-contrast"
    assert middle["lesions"] == []
    assert middle["non_enhancing_volume_ml"] is None
    out = assess_json(data)
    # Never a nadir: the last visit is +26.5 % over the baseline (1,518 of 1,200 mm2).
    assert [r["category"] for r in out["visits"]] == ["baseline", "NE", "PD"]
