"""RANO 2.0 engine, the rules a clinical review found wrong or missing: one table per rule, with
timelines written for the rule (days after 2024-01-01; helpers from ``test_response``)."""

from __future__ import annotations

from typing import Any

import pytest

from inference.response.rano import TimelineError, assess_json, parse_timeline
from tests.inference.test_response import lesion, rows, timeline, visit


def ne(track: str, longest: float, perpendicular: float, **fields: Any) -> dict[str, Any]:
    return {**lesion(track, longest, perpendicular, component="non-ce"), **fields}


def ce(track: str, longest: float, perpendicular: float, **fields: Any) -> dict[str, Any]:
    return {**lesion(track, longest, perpendicular), **fields}


# --- 1. the 12-week window belongs to newly diagnosed tumours after chemoradiotherapy ---------


@pytest.mark.parametrize(
    ("setting", "confirm_pd", "confirmed", "dated"),
    [
        ("newly_diagnosed", False, False, None),  # inside the window: preliminary
        ("recurrent", False, None, "d30"),  # re-irradiation: no window, definitive
        ("recurrent", True, False, None),  # unless the trial asks for confirmation
    ],
)
def test_the_12_week_window_applies_after_first_line_radiotherapy_only(
    setting, confirm_pd, confirmed, dated
):
    data = timeline(
        visit(0, ce("L1", 100, 100)),
        visit(30, ce("L1", 115, 110)),  # 12,650 mm2: +26.5 %
        setting=setting,
        radiotherapy_end_on="2023-12-20",  # the follow-up is 42 days after it
        confirm_pd=confirm_pd,
    )
    out = assess_json(data)
    assert out["visits"][1]["category"] == "PD"
    assert out["visits"][1]["confirmed"] is confirmed
    assert out["progression_visit"] == dated


# --- 2. mixed tumours: each component assessed, then combined ----------------------------------

_CE = {"CR": (0, 0), "PR": (70, 70), "SD": (100, 100), "PD": (115, 110)}
_NON_CE = {"CR": (0, 0), "PR": (70, 70), "MR": (85, 85), "SD": (100, 100), "PD": (115, 110)}
_COMBINED = {
    # enhancing x non-enhancing -> overall [RANO2]: PD in either is PD; CR with X is X;
    # MR/PR with SD is that MR/PR; SD with SD is SD; PR with MR the lesser (MR).
    ("CR", "CR"): "CR",
    ("CR", "PR"): "PR",
    ("CR", "MR"): "MR",
    ("CR", "SD"): "SD",
    ("PR", "CR"): "PR",
    ("PR", "PR"): "PR",
    ("PR", "MR"): "MR",
    ("PR", "SD"): "PR",
    ("SD", "CR"): "SD",
    ("SD", "PR"): "PR",
    ("SD", "MR"): "MR",
    ("SD", "SD"): "SD",
    **{(c, "PD"): "PD" for c in _CE},
    **{("PD", n): "PD" for n in _NON_CE},
}


@pytest.mark.parametrize(("ce_category", "non_ce_category"), sorted(_COMBINED))
def test_mixed_tumours_combine_the_two_components(ce_category, non_ce_category):
    data = timeline(
        visit(0, ce("L1", 100, 100), ne("L2", 100, 100)),
        visit(42, ce("L1", *_CE[ce_category]), ne("L2", *_NON_CE[non_ce_category])),
        presentation="mixed",
    )
    assert rows(data)[1]["category"] == _COMBINED[ce_category, non_ce_category]


def test_mixed_tumours_take_up_to_two_targets_per_component():
    data = timeline(
        visit(
            0,
            ce("L1", 40, 30),
            ce("L2", 30, 30),
            ce("L3", 30, 20),
            ne("L4", 50, 40),
            ne("L5", 40, 40),
            ne("L6", 40, 30),
        ),
        presentation="mixed",
    )
    reasons = rows(data)[0]["reasons"]
    assert any("target enhancing lesions L1, L2 " in r for r in reasons)
    assert any("target non-enhancing lesions L4, L5 " in r for r in reasons)


# --- 3. the row reports the component that decided it -----------------------------------------


def test_a_non_enhancing_progression_reports_its_own_nadir_and_change():
    data = timeline(
        visit(0, ce("L1", 100, 100), ne("L2", 100, 100), id="base"),
        visit(42, ce("L1", 100, 90), ne("L2", 80, 80), id="low"),  # non-enhancing nadir 6,400
        visit(84, ce("L1", 100, 100), ne("L2", 90, 90), id="up"),  # 8,100: +26.6 % over it
        presentation="mixed",
    )
    row = rows(data)[2]
    assert row["category"] == "PD"
    assert row["reference_visit"] == "low"
    assert row["relative_change"] == pytest.approx(8100 / 6400 - 1, abs=1e-4)


def test_a_non_enhancing_response_reports_its_own_change():
    data = timeline(
        visit(0, ce("L1", 100, 100), ne("L2", 100, 100), id="base"),
        visit(42, ce("L1", 100, 95), ne("L2", 70, 70)),  # SD and PR: PR, from the non-enhancing
        presentation="mixed",
    )
    row = rows(data)[1]
    assert row["category"] == "PR"
    assert row["relative_change"] == pytest.approx(-0.51)


# --- 4. a corticosteroid increase on stable imaging dates a later progression ----------------


@pytest.mark.parametrize(
    ("doses", "dated"),
    [
        ((8, 8), "d42"),  # raised at d42, progression at d126: dated to d42
        ((8, 2), "d126"),  # back to the baseline dose at d84 (SD): dated to the progression
        ((2, 8), "d84"),  # raised at d84
    ],
)
def test_progression_after_a_steroid_increase_is_dated_to_the_increase(doses, dated):
    data = timeline(
        visit(0, ce("L1", 100, 100), steroids=2),
        visit(42, ce("L1", 100, 100), steroids=doses[0]),
        visit(84, ce("L1", 105, 100), steroids=doses[1]),
        visit(126, ce("L1", 120, 110), steroids=8),  # 13,200: +32 % over 10,000
    )
    out = assess_json(data)
    assert out["visits"][3]["category"] == "PD"
    assert out["progression_visit"] == dated


# --- 5. confirming a response: at least as good, >= 4 weeks later -----------------------------

# PR -51 %; CR; SD: -43.75 % from the baseline and +14.8 % over the PR nadir
_PR, _CR, _SD = ce("L1", 70, 70), ce("L1", 0, 0), ce("L1", 75, 75)


@pytest.mark.parametrize(
    ("scans", "expected"),
    [
        ([(42, _PR), (84, _PR)], [("PR", False), ("PR", True)]),
        # disease left after a preliminary CR: the CR was not real; the PR is confirmed
        ([(42, _CR), (84, _PR)], [("CR", False), ("PR", True)]),
        ([(42, _PR), (84, _CR)], [("PR", False), ("CR", False)]),  # the CR confirms the PR only
        ([(42, _PR), (56, _CR), (98, _CR)], [("PR", False), ("CR", False), ("CR", True)]),
        ([(42, _PR), (56, _SD), (98, _PR)], [("PR", False), ("SD", None), ("PR", False)]),
        ([(42, _PR), (60, _PR)], [("PR", False), ("PR", False)]),  # 18 days: too early
    ],
)
def test_a_response_is_confirmed_by_an_equal_or_better_one_four_weeks_later(scans, expected):
    data = timeline(visit(0, ce("L1", 100, 100)), *(visit(day, scan) for day, scan in scans))
    result = rows(data)[1:]
    assert [(r["category"], r["confirmed"]) for r in result] == expected


def test_the_cr_that_confirms_a_pr_says_so():
    data = timeline(visit(0, ce("L1", 100, 100)), visit(42, _PR, id="pr"), visit(84, _CR))
    assert any("confirms the PR of pr" in r for r in rows(data)[2]["reasons"])


# --- 6, 7, 9a. confirming a preliminary progression ------------------------------------------


def _window(*follow_ups: dict[str, Any]) -> dict[str, Any]:
    """Newly diagnosed; radiotherapy ended 2023-12-04; baseline on 2024-01-01 (day 0)."""
    return timeline(
        visit(0, ce("L1", 100, 100), ce("L2", 8, 6), id="base"),
        *follow_ups,
        setting="newly_diagnosed",
        radiotherapy_end_on="2023-12-04",
    )


_SAME = (ce("L1", 100, 100), ce("L2", 8, 6))


@pytest.mark.parametrize(
    ("first", "second", "confirmed"),
    [
        # preliminary by non-target progression, which persists four weeks later
        ({"non_target": "worse"}, {"non_target": "worse"}, True),
        # preliminary by target growth, confirmed by unequivocal non-target progression
        (
            {"lesions": [ce("L1", 115, 110), ce("L2", 8, 6)]},
            {"lesions": [ce("L1", 115, 110), ce("L2", 8, 6)], "non_target": "worse"},
            True,
        ),
        # preliminary by non-target progression that does not persist: pseudoprogression
        ({"non_target": "worse"}, {"non_target": "stable"}, None),
    ],
)
def test_any_progression_criterion_confirms_a_preliminary_progression(first, second, confirmed):
    scans = []
    for day, fields in ((42, first), (84, second)):
        lesions = fields.get("lesions", list(_SAME))
        extra = {k: v for k, v in fields.items() if k != "lesions"}
        scans.append(visit(day, *lesions, **extra))
    out = assess_json(_window(*scans))
    assert out["visits"][1]["confirmed"] is False
    if confirmed:
        assert (out["visits"][2]["category"], out["visits"][2]["confirmed"]) == ("PD", True)
        assert out["progression_visit"] == "d42"
    else:
        assert out["visits"][2]["category"] == "SD"
        assert out["progression_visit"] is None


def test_clinical_deterioration_confirms_a_preliminary_progression_within_four_weeks():
    data = _window(
        visit(42, ce("L1", 115, 110), ce("L2", 8, 6)),
        visit(56, ce("L1", 115, 110), ce("L2", 8, 6), clinical="worse"),
    )
    out = assess_json(data)
    assert (out["visits"][2]["category"], out["visits"][2]["confirmed"]) == ("PD", True)
    assert out["progression_visit"] == "d42"


# --- 8. a non-enhancing tumour's complete response needs no enhancement ----------------------


@pytest.mark.parametrize(("focus", "category"), [((6, 5), "PR"), ((0, 0), "CR")])
def test_a_non_enhancing_complete_response_needs_the_enhancement_gone(focus, category):
    data = timeline(
        visit(0, ne("L1", 100, 100), ce("E1", 6, 5)),
        visit(42, ne("L1", 0, 0), ce("E1", *focus)),
        presentation="non-ce",
    )
    row = rows(data)[1]
    assert row["category"] == category
    if category == "PR":
        assert any("enhancing disease is present" in r for r in row["reasons"])


# --- 9. lesions that split or merge --------------------------------------------------------


def test_the_fragments_of_a_split_target_are_summed_into_it():
    data = timeline(
        visit(0, ce("L1", 100, 100)),
        # two 60 x 60 fragments: 7,200 mm2 (-28 %): stable, not a PR and not a new lesion
        visit(42, ce("L1", 60, 60), ce("L3", 60, 60, split_from="L1")),
        visit(84, ce("L1", 60, 60), ce("L3", 70, 70)),  # the fragment keeps counting: 8,500
    )
    result = rows(data)
    assert [r["category"] for r in result[1:]] == ["SD", "SD"]
    assert result[1]["relative_change"] == pytest.approx(-0.28)
    assert result[2]["relative_change"] == pytest.approx(-0.15)


def test_a_target_merged_into_a_non_target_is_measured_as_that_lesion():
    data = timeline(
        visit(0, ce("L1", 100, 100), ce("L2", 8, 8)),
        visit(42, ce("L1", 0, 0, merged_into="L2"), ce("L2", 105, 100)),  # 10,500: +5 %
    )
    row = rows(data)[1]
    assert row["category"] == "SD"
    assert row["relative_change"] == pytest.approx(0.05)


def test_merged_targets_are_measured_once():
    data = timeline(
        visit(0, ce("L1", 100, 50), ce("L2", 100, 50)),  # 10,000 together
        visit(42, ce("L1", 120, 100), ce("L2", 0, 0, merged_into="L1")),  # 12,000: +20 %
    )
    row = rows(data)[1]
    assert row["category"] == "SD"
    assert row["relative_change"] == pytest.approx(0.2)


# --- 10. new lesions have tracks and are followed ------------------------------------------


def test_a_new_lesion_followed_until_measurable_dates_progression_to_its_first_scan():
    data = timeline(
        visit(0, ce("L1", 100, 100)),
        visit(42, ce("L1", 60, 60), ce("L5", 6, 5), new_lesion={"measurable": False}),
        visit(84, ce("L1", 60, 60), ce("L5", 8, 7)),  # not flagged again: still present
        visit(126, ce("L1", 60, 60), ce("L5", 12, 11)),
    )
    out = assess_json(data)
    assert [r["category"] for r in out["visits"][1:]] == ["SD", "SD", "PD"]
    assert out["progression_visit"] == "d42"


def test_a_persisting_new_lesion_is_not_read_as_pseudoprogression():
    data = _window(
        visit(42, *_SAME, ce("L5", 15, 12), new_lesion={"measurable": True}),
        visit(84, *_SAME, ce("L5", 15, 12)),
    )
    out = assess_json(data)
    assert [(r["category"], r["confirmed"]) for r in out["visits"][1:]] == [
        ("PD", False),
        ("PD", True),
    ]
    assert out["progression_visit"] == "d42"


# --- 11. non-target disease measured ---------------------------------------------------------


@pytest.mark.parametrize(
    ("non_target", "size", "category", "note"),
    [
        ("stable", (12, 11), "PD", "the non-target flag says stable"),  # 48 -> 132 mm2
        ("stable", (9, 9), "SD", None),  # grew, but not measurable
        ("worse", (8, 6), "PD", "the reader's call stands"),
    ],
)
def test_measured_non_target_disease_counts_and_disagreement_is_said(
    non_target, size, category, note
):
    data = timeline(
        visit(0, ce("L1", 100, 100), ce("L2", 8, 6)),
        visit(42, ce("L1", 100, 100), ce("L2", *size), non_target=non_target),
    )
    row = rows(data)[1]
    assert row["category"] == category
    assert (note is None) or any(note in r for r in row["reasons"])


# --- 12. not evaluable scans ----------------------------------------------------------------


def test_a_not_evaluable_scan_is_never_baseline_nor_nadir():
    data = timeline(
        visit(-7, ce("L1", 50, 50), not_evaluable="motion", id="blurred"),
        visit(0, ce("L1", 100, 100), id="base"),
        visit(42, ce("L1", 10, 10), not_evaluable="no T1 post-contrast", id="partial"),
        visit(84, ce("L1", 115, 110), id="up"),  # +26.5 % over the baseline
    )
    out = assess_json(data)
    assert [r["category"] for r in out["visits"]] == ["NE", "baseline", "NE", "PD"]
    assert out["visits"][3]["reference_visit"] == "base"
    assert "motion" in out["visits"][0]["reasons"][0]


def test_a_not_evaluable_scan_does_not_break_a_confirmation():
    data = _window(
        visit(42, ce("L1", 115, 110), ce("L2", 8, 6)),
        visit(63, ce("L1", 1, 1), not_evaluable="wrong protocol"),
        visit(84, ce("L1", 145, 110), ce("L2", 8, 6)),  # +26 % over the preliminary scan
    )
    out = assess_json(data)
    assert [(r["category"], r["confirmed"]) for r in out["visits"][1:]] == [
        ("PD", False),
        ("NE", None),
        ("PD", True),
    ]


# --- 13. newly diagnosed without a radiotherapy date ------------------------------------------


def test_without_a_radiotherapy_date_the_rows_say_the_window_was_not_applied():
    data = timeline(
        visit(0, ce("L1", 100, 100)),
        visit(42, ce("L1", 115, 110)),
        setting="newly_diagnosed",
    )
    result = rows(data)
    for row in result:
        assert any("12-week rule" in r and "could not be applied" in r for r in row["reasons"])
    assert result[1]["confirmed"] is None


# --- 14. input that contradicts itself -------------------------------------------------------


@pytest.mark.parametrize(
    ("follow_up", "message"),
    [
        ([ce("L1", 90, 90), ce("L7", 6, 5)], "lists L7, which is not tracked before"),
        (
            [ce("L1", 90, 90), ce("L7", 16, 15)],
            "field 'new_lesion' says the new lesion is not measurable, but L7",
        ),
        ([ce("L1", 0, 0, merged_into="L9")], "names L9, which is not listed at this visit"),
        (
            [ce("L1", 90, 90, merged_into="L2"), ce("L2", 5, 5)],
            "field 'merged_into' is 'L2', but the lesion is still measured",
        ),
        ([ce("L1", 90, 90), ce("L3", 5, 5, split_from="L8")], "names L8, which is not a tracked"),
        ([ce("L1", 90, 90, split_from="L1")], "names the lesion itself"),
    ],
)
def test_self_contradicting_input_is_refused_naming_visit_and_field(follow_up, message):
    data = timeline(
        visit(0, ce("L1", 100, 100), ce("L2", 5, 5)),
        visit(42, *follow_up, *([] if "L2" in str(follow_up) else [ce("L2", 5, 5)]), id="v1"),
    )
    if "L7, which is not tracked" not in message and "L7" in message:
        data["visits"][1]["new_lesion"] = {"measurable": False}
    with pytest.raises(TimelineError) as error:
        parse_timeline(data)
    assert "visit v1" in str(error.value)
    assert message in str(error.value)


def test_a_split_at_the_baseline_is_refused():
    data = timeline(visit(0, ce("L1", 100, 100), ce("L2", 20, 20, split_from="L1"), id="v0"))
    with pytest.raises(TimelineError, match="visit v0, lesion L2: field 'split_from' is set"):
        parse_timeline(data)
