"""RANO 2.0 engine: one or more table rows per rule, at and just past every threshold, and property
tests. Timelines are built in code: ``visit(day, lesions...)`` with days after 2024-01-01."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import FileTooLargeError, UnreadableFileError
from inference.imaging.io import read_json
from inference.response.rano import TimelineError, assess_json, parse_timeline
from tests.inference.cli import run_cli

START = dt.date(2024, 1, 1)


def lesion(
    track: str, longest: float, perpendicular: float, *, et: float | None = None, component="ce"
) -> dict[str, Any]:
    return {
        "track": track,
        "component": component,
        "longest_mm": longest,
        "perpendicular_mm": perpendicular,
        "et_volume_ml": et,
    }


def visit(day: int, *lesions: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "id": fields.pop("id", f"d{day}"),
        "acquired_on": (START + dt.timedelta(days=day)).isoformat(),
        "lesions": list(lesions),
        "non_enhancing_volume_ml": fields.pop("non_enhancing", None),
        "new_lesion": fields.pop("new_lesion", None),
        "non_target": fields.pop("non_target", "absent"),
        "clinical_status": fields.pop("clinical", "stable"),
        "steroid_dose_mg": fields.pop("steroids", 0),
        **fields,
    }


def timeline(*visits: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {
        "criteria": "rano2-2d",
        "presentation": "ce",
        "setting": "recurrent",
        "radiotherapy_end_on": None,
        "confirm_pd": False,
        "physiologic_steroid_max_mg": 0.75,
        "antiangiogenic_therapy": False,
        **options,
        "visits": list(visits),
    }


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    return assess_json(data)["visits"]


def categories(data: dict[str, Any]) -> list[str]:
    return [row["category"] for row in rows(data)]


# --- thresholds, at and just past each -------------------------------------------------------

BASE_2D = lesion("L1", 100, 100)  # 10,000 mm2


@pytest.mark.parametrize(
    ("longest", "perpendicular", "category", "change"),
    [
        (100, 50, "PR", -0.5),  # -50.0 %: partial response (inclusive)
        (100, 50.1, "SD", -0.499),  # -49.9 %
        (125, 100, "PD", 0.25),  # +25.0 %: progression (inclusive)
        (124.9, 100, "SD", 0.249),  # +24.9 %
        (100, 75, "SD", -0.25),  # -25 % is no minor response for an enhancing tumour
    ],
)
def test_bidimensional_thresholds(longest, perpendicular, category, change):
    result = rows(timeline(visit(0, BASE_2D), visit(42, lesion("L1", longest, perpendicular))))
    assert result[1]["category"] == category
    assert result[1]["relative_change"] == pytest.approx(change, abs=1e-9)


@pytest.mark.parametrize(
    ("volume", "category"),
    [(3.5, "PR"), (3.51, "SD"), (14.0, "PD"), (13.99, "SD"), (6.0, "SD")],
)
def test_volumetric_thresholds(volume, category):
    data = timeline(
        visit(0, lesion("L1", 30, 25, et=10.0)),
        visit(42, lesion("L1", 30, 25, et=volume)),
        criteria="rano2-volumetric",
    )
    assert rows(data)[1]["category"] == category


def test_thresholds_use_exact_decimals_not_floats():
    # (0.7 - 0.5) / 0.5 is 0.3999999999999999 in binary floating point: still +40 %.
    data = timeline(
        visit(0, lesion("L1", 12, 11, et=0.5)),
        visit(42, lesion("L1", 12, 11, et=0.7)),
        criteria="rano2-volumetric",
    )
    assert rows(data)[1]["category"] == "PD"


@pytest.mark.parametrize(
    ("longest", "perpendicular", "category"),
    [(100, 75, "MR"), (100, 75.1, "SD"), (100, 50, "PR"), (100, 50.1, "MR"), (125, 100, "PD")],
)
def test_non_enhancing_minor_response(longest, perpendicular, category):
    data = timeline(
        visit(0, lesion("T1", 100, 100, component="non-ce")),
        visit(42, lesion("T1", longest, perpendicular, component="non-ce")),
        presentation="non-ce",
    )
    assert rows(data)[1]["category"] == category


@pytest.mark.parametrize(("volume", "category"), [(60.0, "MR"), (60.1, "SD"), (35.0, "PR")])
def test_non_enhancing_volumetric_minor_response(volume, category):
    data = timeline(
        visit(0, lesion("T1", 60, 50, component="non-ce"), non_enhancing=100.0),
        visit(42, lesion("T1", 60, 50, component="non-ce"), non_enhancing=volume),
        presentation="non-ce",
        criteria="rano2-volumetric",
    )
    assert rows(data)[1]["category"] == category


# --- references ----------------------------------------------------------------------------


def test_progression_is_measured_from_the_nadir_and_response_from_the_baseline():
    data = timeline(
        visit(0, BASE_2D, id="base"),
        visit(42, lesion("L1", 80, 50), id="nadir"),  # 4,000: -60 %
        visit(84, lesion("L1", 100, 50), id="up"),  # 5,000: still -50 % of baseline, +25 % nadir
    )
    result = rows(data)
    assert [r["category"] for r in result] == ["baseline", "PR", "PD"]
    assert result[1]["reference_visit"] == "base"
    assert result[2]["reference_visit"] == "nadir"
    assert result[2]["relative_change"] == pytest.approx(0.25)
    assert "nadir" in result[2]["reasons"][0]


def test_just_under_progression_over_the_nadir_is_stable():
    data = timeline(
        visit(0, BASE_2D),
        visit(42, lesion("L1", 80, 50)),
        visit(84, lesion("L1", 99.9, 50)),  # +24.9 % over 4,000
    )
    assert categories(data)[2] == "PR"  # still <= -50 % of baseline


# --- confirmation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("gap", "confirmed"), [(28, True), (27, False)])
def test_partial_response_is_confirmed_four_weeks_later(gap, confirmed):
    data = timeline(
        visit(0, BASE_2D), visit(42, lesion("L1", 70, 70)), visit(42 + gap, lesion("L1", 70, 70))
    )
    result = rows(data)
    assert [r["category"] for r in result] == ["baseline", "PR", "PR"]
    assert result[1]["confirmed"] is False
    assert result[2]["confirmed"] is confirmed


def test_an_unconfirmed_response_stays_preliminary_on_its_own_row():
    data = timeline(
        visit(0, BASE_2D), visit(42, lesion("L1", 70, 70)), visit(84, lesion("L1", 100, 60))
    )
    result = rows(data)
    assert [r["category"] for r in result] == ["baseline", "PR", "SD"]
    assert result[1]["confirmed"] is False


def _after_radiotherapy(*follow_ups: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Radiotherapy ended 2023-12-04; baseline 4 weeks later on 2024-01-01 (day 0)."""
    return timeline(
        visit(-60, lesion("L1", 60, 60), id="postop"),
        visit(0, BASE_2D, id="base"),
        *follow_ups,
        setting="newly_diagnosed",
        radiotherapy_end_on="2023-12-04",
        **options,
    )


def test_progression_within_12_weeks_of_radiotherapy_is_preliminary_then_pseudoprogression():
    data = _after_radiotherapy(
        visit(42, lesion("L1", 140, 100), id="up"),  # +40 % at 10 weeks after radiotherapy
        visit(84, lesion("L1", 105, 100), id="down"),  # +5 %: not confirmed
    )
    out = assess_json(data)
    result = out["visits"]
    assert [r["category"] for r in result] == ["pre_baseline", "baseline", "PD", "SD"]
    assert result[2]["confirmed"] is False
    assert "within 12 weeks" in result[2]["reasons"][0]
    assert any("pseudoprogression" in reason for reason in result[3]["reasons"])
    assert result[3]["pseudoprogression_of"] == "up"
    assert [r["pseudoprogression_of"] for r in result[:3]] == [None, None, None]
    assert out["progression_visit"] is None


def test_confirmed_progression_is_dated_back_to_the_preliminary_scan():
    data = _after_radiotherapy(
        visit(42, lesion("L1", 130, 100), id="up"),  # 13,000
        visit(84, lesion("L1", 162.5, 100), id="more"),  # 16,250 = +25 % over 13,000
        visit(126, lesion("L1", 170, 100), id="after"),
    )
    out = assess_json(data)
    result = out["visits"]
    assert [r["category"] for r in result[2:]] == ["PD", "PD", "PD"]
    assert [r["confirmed"] for r in result[2:]] == [False, True, None]
    # Confirmed progression is reported against the nadir (the baseline here), dated back.
    assert result[3]["reference_visit"] == "base"
    assert result[3]["relative_change"] == pytest.approx(16250 / 10000 - 1)
    assert out["progression_visit"] == "up"


def test_progression_stays_preliminary_without_a_further_increase():
    data = _after_radiotherapy(
        visit(42, lesion("L1", 130, 100)),  # 13,000
        visit(84, lesion("L1", 162, 100)),  # +24.6 % over 13,000, +62 % over the nadir
    )
    result = rows(data)
    assert result[3]["category"] == "PD"
    assert result[3]["confirmed"] is False
    assert assess_json(data)["progression_visit"] is None


def test_confirmation_needs_four_weeks():
    data = _after_radiotherapy(visit(42, lesion("L1", 130, 100)), visit(60, lesion("L1", 200, 100)))
    assert rows(data)[3]["confirmed"] is False


@pytest.mark.parametrize(("confirm_pd", "confirmed"), [(False, None), (True, False)])
def test_progression_after_12_weeks_needs_confirmation_only_when_the_trial_asks(
    confirm_pd, confirmed
):
    data = _after_radiotherapy(visit(120, lesion("L1", 130, 100)), confirm_pd=confirm_pd)
    assert rows(data)[2]["confirmed"] is confirmed


def test_scans_before_the_end_of_radiotherapy_are_pre_baseline():
    data = timeline(
        visit(0, BASE_2D),
        visit(30, BASE_2D),
        setting="newly_diagnosed",
        radiotherapy_end_on="2024-02-15",
    )
    assert categories(data) == ["pre_baseline", "pre_baseline"]


def test_a_newly_diagnosed_timeline_without_radiotherapy_date_says_which_baseline_it_took():
    result = rows(timeline(visit(0, BASE_2D), visit(42, BASE_2D), setting="newly_diagnosed"))
    assert result[0]["category"] == "baseline"
    assert "no radiotherapy end date" in result[0]["reasons"][0]


# --- complete response, corticosteroids, clinical status -----------------------------------


@pytest.mark.parametrize(
    ("steroids", "category"),
    [(0, "CR"), (0.75, "CR"), (1.0, "PR"), (4, "PR")],  # baseline dose 4 mg
)
def test_complete_response_needs_corticosteroids_off(steroids, category):
    data = timeline(visit(0, BASE_2D, steroids=4), visit(42, lesion("L1", 0, 0), steroids=steroids))
    assert rows(data)[1]["category"] == category


def test_complete_response_needs_non_target_disease_gone_and_no_new_lesion():
    base = visit(0, BASE_2D)
    assert categories(timeline(base, visit(42, lesion("L1", 0, 0), non_target="stable")))[1] == "PR"
    new = visit(42, lesion("L1", 0, 0), new_lesion={"measurable": False})
    assert categories(timeline(base, new))[1] == "SD"


def test_confirmed_complete_response():
    gone = lesion("L1", 0, 0)
    result = rows(timeline(visit(0, BASE_2D), visit(42, gone), visit(84, gone)))
    assert [(r["category"], r["confirmed"]) for r in result[1:]] == [("CR", False), ("CR", True)]


@pytest.mark.parametrize(
    ("follow_up", "category"),
    [
        (BASE_2D, "indeterminate"),  # stable imaging, dose up: neither SD nor PD
        (lesion("L1", 60, 60), "indeterminate"),  # a response cannot be declared either
        (lesion("L1", 130, 100), "PD"),  # imaging progression stays progression
    ],
)
def test_a_corticosteroid_increase_alone_is_not_progression(follow_up, category):
    data = timeline(visit(0, BASE_2D, steroids=2), visit(42, follow_up, steroids=8))
    result = rows(data)
    assert result[1]["category"] == category
    if category == "indeterminate":
        assert any("corticosteroids increased" in reason for reason in result[1]["reasons"])


def test_a_dose_within_the_physiological_range_is_not_an_increase():
    data = timeline(visit(0, BASE_2D, steroids=0), visit(42, BASE_2D, steroids=0.75))
    assert categories(data)[1] == "SD"


def test_clinical_deterioration_alone_is_definitive_progression():
    out = assess_json(timeline(visit(0, BASE_2D), visit(42, BASE_2D, clinical="worse", id="w")))
    row = out["visits"][1]
    assert (row["category"], row["confirmed"]) == ("PD", None)
    assert "clinical deterioration" in row["reasons"][0]
    assert out["progression_visit"] == "w"


def test_rows_after_progression_stay_progression():
    data = timeline(visit(0, BASE_2D), visit(42, lesion("L1", 130, 100)), visit(84, BASE_2D))
    result = rows(data)
    assert [r["category"] for r in result] == ["baseline", "PD", "PD"]
    assert "recorded" in result[2]["reasons"][0]


# --- lesions ---------------------------------------------------------------------------------


def test_a_new_measurable_lesion_is_progression():
    data = timeline(
        visit(0, BASE_2D), visit(42, lesion("L1", 50, 50), new_lesion={"measurable": True})
    )
    result = rows(data)
    assert result[1]["category"] == "PD"
    assert "new measurable lesion" in result[1]["reasons"][0]


def test_a_new_lesion_that_becomes_measurable_dates_progression_back():
    data = timeline(
        visit(0, BASE_2D),
        visit(42, BASE_2D, new_lesion={"measurable": False}, id="seen"),
        visit(84, BASE_2D, new_lesion={"measurable": True}, id="grown"),
    )
    out = assess_json(data)
    assert [r["category"] for r in out["visits"]] == ["baseline", "SD", "PD"]
    assert out["progression_visit"] == "seen"


def test_several_target_lesions_sum_the_three_largest_measurable_products():
    base = visit(
        0,
        lesion("L1", 40, 30),  # 1,200
        lesion("L2", 30, 20),  # 600
        lesion("L3", 20, 20),  # 400
        lesion("L4", 15, 12),  # 180: measurable, but a fourth: non-target
        lesion("L5", 9, 8),  # not measurable: non-target
    )
    # Targets shrink to 1,100 of 2,200 (-50 %) while a non-target grows, short of the
    # non-target threshold (252 -> 269.1 mm2, +6.8 %): still a PR.
    follow = visit(
        42,
        lesion("L1", 30, 20),
        lesion("L2", 20, 15),
        lesion("L3", 20, 10),
        lesion("L4", 15, 12),
        lesion("L5", 9.9, 9),
    )
    result = rows(timeline(base, follow))
    assert "L1, L2, L3" in result[0]["reasons"][1]
    assert "2,200 mm²" in result[0]["reasons"][1]
    assert result[1]["category"] == "PR"
    assert result[1]["relative_change"] == pytest.approx(-0.5)


def test_non_target_progression_is_progression():
    data = timeline(visit(0, BASE_2D), visit(42, BASE_2D, non_target="worse"))
    assert categories(data)[1] == "PD"


def test_no_measurable_disease_at_baseline_allows_only_stable_or_progression():
    small = lesion("L1", 9, 8)
    assert categories(timeline(visit(0, small), visit(42, lesion("L1", 3, 2))))[1] == "SD"
    grown = visit(42, small, new_lesion={"measurable": True})
    assert categories(timeline(visit(0, small), grown))[1] == "PD"


def test_disease_back_after_a_complete_response_is_progression():
    gone = lesion("L1", 0, 0)
    data = timeline(
        visit(0, BASE_2D), visit(42, gone), visit(84, gone), visit(126, lesion("L1", 12, 10))
    )
    result = rows(data)
    assert [r["category"] for r in result] == ["baseline", "CR", "CR", "PD"]
    assert "back after it disappeared" in result[3]["reasons"][0]


def test_new_measurable_enhancement_in_a_non_enhancing_tumour_is_progression():
    data = timeline(
        visit(0, lesion("T1", 50, 40, component="non-ce")),
        visit(42, lesion("T1", 50, 40, component="ce")),
        presentation="non-ce",
    )
    assert categories(data)[1] == "PD"


@pytest.mark.parametrize(("antiangiogenic", "category"), [(True, "PD"), (False, "SD")])
def test_non_enhancing_growth_counts_only_under_antiangiogenic_therapy(antiangiogenic, category):
    data = timeline(
        visit(0, BASE_2D, non_enhancing=50.0),
        visit(42, BASE_2D, non_enhancing=70.0),  # +40 %
        antiangiogenic_therapy=antiangiogenic,
    )
    assert categories(data)[1] == category


def test_mixed_tumours_progress_on_either_component():
    data = timeline(
        visit(0, lesion("L1", 40, 30), lesion("T1", 60, 50, component="non-ce")),
        visit(42, lesion("L1", 40, 30), lesion("T1", 75, 50, component="non-ce")),  # +25 %
        presentation="mixed",
    )
    result = rows(data)
    assert result[1]["category"] == "PD"
    assert "non-enhancing" in result[1]["reasons"][0]


def test_the_reason_reads_like_a_tumour_board_sentence():
    data = _after_radiotherapy(visit(42, lesion("L1", 131, 100), id="up"))
    reason = rows(data)[2]["reasons"][0]
    assert reason.startswith("enhancing product 13,100 mm² is +31.0 % over baseline 10,000 mm²")
    assert reason.endswith(
        "progression, preliminary because within 12 weeks of the end of radiotherapy on 2023-12-04"
    )


# --- bad input -------------------------------------------------------------------------------


def _bad(change) -> dict[str, Any]:
    data = timeline(visit(0, BASE_2D, id="v0"), visit(42, lesion("L1", 90, 80), id="v1"))
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["visits"].reverse(), "visit v0: field 'acquired_on' 2024-01-01 is before"),
        (
            lambda d: d["visits"][1].update(acquired_on="2024-01-01"),
            "visit v1: field 'acquired_on' 2024-01-01 is the same date",
        ),
        (lambda d: d["visits"][1].update(id="v0"), "visit v0: field 'id' is used by two visits"),
        (lambda d: d["visits"][1].pop("lesions"), "visit v1: missing field 'lesions'"),
        (
            lambda d: d["visits"][1]["lesions"][0].update(longest_mm=-3),
            "visit v1, lesion L1: field 'longest_mm' must not be negative",
        ),
        (
            lambda d: d["visits"][1]["lesions"][0].update(perpendicular_mm=None),
            "visit v1, lesion L1: field 'perpendicular_mm' is missing",
        ),
        (
            lambda d: d["visits"][1]["lesions"][0].update(perpendicular_mm=95),
            "visit v1, lesion L1: field 'perpendicular_mm' (95) is larger than longest_mm",
        ),
        (
            lambda d: d["visits"][1]["lesions"][0].update(longest_mm="90"),
            "visit v1, lesion L1: field 'longest_mm' must be a number, got string '90'",
        ),
        (
            lambda d: d["visits"][1].update(steroid_dose_mg=True),
            "visit v1: field 'steroid_dose_mg' must be a number, got boolean true",
        ),
        (
            lambda d: d["visits"][1].update(non_target="bigger"),
            "visit v1: field 'non_target' is 'bigger'; expected one of absent",
        ),
        (
            lambda d: d["visits"][1].update(clinical_status="better"),
            "visit v1: field 'clinical_status' is 'better'",
        ),
        (lambda d: d.update(criteria="recist"), "timeline: field 'criteria' is 'recist'"),
        (lambda d: d.update(extra=1), "timeline: unknown field 'extra'"),
        (lambda d: d.pop("confirm_pd"), "timeline: missing field 'confirm_pd'"),
        (lambda d: d["visits"][1].update(kps=80), "visit v1: unknown field 'kps'"),
        (
            lambda d: d["visits"][1].update(acquired_on="2024-13-01"),
            "visit v1: field 'acquired_on' is '2024-13-01', not a date",
        ),
        (
            lambda d: d["visits"][1]["lesions"].clear(),
            "visit v1: field 'lesions' lacks L1, tracked since v0",
        ),
        (
            lambda d: d["visits"][1]["lesions"].append(lesion("L9", 20, 20)),
            "visit v1: field 'lesions' lists L9, which is not tracked before",
        ),
        (
            lambda d: d["visits"][1]["lesions"].append(lesion("L1", 20, 20)),
            "visit v1: field 'lesions' lists track 'L1' twice",
        ),
        (
            lambda d: d.update(criteria="rano2-volumetric"),
            "visit v0, lesion L1: field 'et_volume_ml' is missing (null); rano2-volumetric",
        ),
        (
            lambda d: d["visits"][1].update(new_lesion={"measurable": "yes"}),
            "visit v1, new_lesion: field 'measurable' must be true or false",
        ),
        (lambda d: d.update(visits=[]), "timeline: field 'visits' must be a non-empty list"),
    ],
)
def test_bad_input_names_the_visit_and_the_field(change, message):
    with pytest.raises(TimelineError) as error:
        parse_timeline(_bad(change))
    assert message in str(error.value)


def test_volumetric_non_enhancing_needs_the_volume_at_every_visit():
    data = timeline(
        visit(0, lesion("T1", 60, 50, component="non-ce"), non_enhancing=100.0),
        visit(42, lesion("T1", 60, 50, component="non-ce"), id="v1"),
        presentation="non-ce",
        criteria="rano2-volumetric",
    )
    with pytest.raises(TimelineError, match="visit v1: field 'non_enhancing_volume_ml'"):
        parse_timeline(data)


# --- properties ------------------------------------------------------------------------------

_SEVERITY = {"CR": 0, "PR": 1, "MR": 2, "SD": 3, "indeterminate": 3, "PD": 4}
diameters = st.floats(min_value=0, max_value=150, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    base=st.tuples(
        st.floats(min_value=10, max_value=120), st.floats(min_value=10, max_value=120)
    ).map(sorted),
    first=st.tuples(diameters, diameters).map(sorted),
    second=st.tuples(diameters, diameters).map(sorted),
    presentation=st.sampled_from(["ce", "non-ce"]),
)
def test_a_larger_tumour_never_gets_a_better_category(base, first, second, presentation):
    component = "ce" if presentation == "ce" else "non-ce"

    def category(size) -> str:
        follow = lesion("L1", size[1], size[0], component=component)
        data = timeline(
            visit(0, lesion("L1", base[1], base[0], component=component)),
            visit(42, follow),
            presentation=presentation,
        )
        return rows(data)[1]["category"]

    small, large = sorted([first, second], key=lambda s: s[0] * s[1])
    if small[0] <= large[0] and small[1] <= large[1]:  # large contains small in both diameters
        assert _SEVERITY[category(small)] <= _SEVERITY[category(large)]


@settings(max_examples=100, deadline=None)
@given(
    products=st.lists(
        st.tuples(st.integers(0, 120), st.integers(0, 120)).map(sorted), min_size=2, max_size=7
    ),
    gaps=st.lists(st.integers(7, 120), min_size=7, max_size=7),
    steroids=st.lists(st.sampled_from([0, 0.5, 2, 8]), min_size=7, max_size=7),
    confirm_pd=st.booleans(),
)
def test_rows_are_prospective(products, gaps, steroids, confirm_pd):
    """A row depends only on its visit and the earlier ones: assessing a shorter timeline gives
    the same rows for the visits it keeps."""
    days = [sum(gaps[:i]) for i in range(len(products))]
    visits = [
        visit(day, lesion("L1", size[1], size[0]), steroids=dose)
        for day, size, dose in zip(days, products, steroids, strict=False)
    ]
    full = rows(timeline(*visits, confirm_pd=confirm_pd))
    for end in range(1, len(visits)):
        assert rows(timeline(*visits[:end], confirm_pd=confirm_pd)) == full[:end]


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(min_value=0, max_value=3), base=st.floats(min_value=10, max_value=100))
def test_progression_exactly_when_the_product_grows_by_a_quarter(scale, base):
    small, large = sorted([base * scale, base])
    data = timeline(visit(0, lesion("L1", base, base)), visit(42, lesion("L1", large, small)))
    row = rows(data)[1]
    written = [Fraction(Decimal(str(v))) for v in (large, small, base)]
    exact = written[0] * written[1] / written[2] ** 2 - 1
    assert (row["category"] == "PD") == (exact >= Fraction(1, 4))


# --- command line --------------------------------------------------------------------------


def test_the_command_line_assesses_a_timeline_file(tmp_path):
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps(timeline(visit(0, BASE_2D), visit(42, lesion("L1", 60, 60)))))
    result = run_cli("assess", str(path))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [r["category"] for r in out["visits"]] == ["baseline", "PR"]
    assert "d42: PR preliminary" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"criteria": ', "not valid JSON at line 1"),
        ('{"visits": [NaN]}', "NaN is not a number JSON allows"),
        ('{"criteria": "rano2-2d"}', "timeline: missing field"),
    ],
)
def test_the_command_line_rejects_bad_timelines_with_one_line(tmp_path, text, message):
    path = tmp_path / "timeline.json"
    path.write_text(text)
    result = run_cli("assess", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_the_command_line_names_a_missing_file(tmp_path):
    result = run_cli("assess", str(tmp_path / "absent.json"))
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_the_documented_example_is_valid_and_reads_as_documented():
    section = (Path(__file__).resolve().parents[2] / "docs" / "response.md").read_text(
        encoding="utf-8"
    )
    block = section[section.index("```json") + len("```json") : section.index("```\n", 10)]
    out = assess_json(json.loads(block))
    assert [r["category"] for r in out["visits"]] == [
        "pre_baseline",
        "baseline",
        "PD",
        "SD",
        "PR",
        "PR",
        "PD",
    ]
    assert [r["confirmed"] for r in out["visits"][2:]] == [False, None, False, True, None]
    assert out["progression_visit"] == "v6"
    assert (out["baseline_visit"], out["nadir_visit"]) == ("v1", "v5")
    assert out["visits"][2]["reasons"][0] in section.replace("\n", " ")


def test_an_oversized_timeline_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "timeline.json"
    path.write_text(json.dumps(timeline(visit(0, BASE_2D))))
    with pytest.raises(
        FileTooLargeError, match=r"timeline .*timeline.json: \d+ bytes, more than 100"
    ):
        read_json(path, what="timeline", max_bytes=100)


def test_an_unreadable_timeline_is_named(tmp_path, monkeypatch):
    path = tmp_path / "timeline.json"
    path.write_text("{}")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # chmod 0 does not stop root (CI runs as root), so the refusal is simulated.
    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(UnreadableFileError, match=r"timeline .*timeline\.json: permission denied"):
        read_json(path, what="timeline")


def test_a_folder_is_not_a_timeline(tmp_path):
    with pytest.raises(UnreadableFileError, match="is a folder, not a file"):
        read_json(tmp_path, what="timeline")


def test_a_new_lesion_confirmed_later_dates_progression_to_its_first_scan():
    data = timeline(
        visit(0, BASE_2D),
        visit(42, BASE_2D, new_lesion={"measurable": False}, id="seen"),
        visit(84, BASE_2D, new_lesion={"measurable": True}, id="grown"),
        visit(126, BASE_2D, new_lesion={"measurable": True}, id="again"),
        confirm_pd=True,
    )
    out = assess_json(data)
    result = out["visits"]
    assert "new non-measurable lesion: followed" in " ".join(result[1]["reasons"])
    assert [(r["category"], r["confirmed"]) for r in result[2:]] == [("PD", False), ("PD", True)]
    assert out["progression_visit"] == "seen"
