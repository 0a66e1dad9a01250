"""The model against clinicians' corrections: intervals and the per-model summary."""

from __future__ import annotations

import pytest

from inference.measurement.agreement import (
    Case,
    mean_interval,
    proportion_interval,
    summarise,
)


def test_a_mean_has_a_t_interval_kept_inside_its_bounds() -> None:
    # sd 0.1, sem 0.0577, t(0.975, 2 df) 4.303: 0.9 -/+ 0.2484
    found = mean_interval([0.8, 0.9, 1.0], bounds=(0.0, 1.0))
    assert found == {"n": 3, "mean": 0.9, "low": pytest.approx(0.6516, abs=1e-4), "high": 1.0}
    assert mean_interval([0.8, 0.9, 1.0])["high"] == pytest.approx(1.1484, abs=1e-4)
    assert mean_interval([0.7]) == {"n": 1, "mean": 0.7, "low": None, "high": None}
    assert mean_interval([]) == {"n": 0, "mean": None, "low": None, "high": None}
    assert mean_interval([2.0, 2.0]) == {"n": 2, "mean": 2.0, "low": 2.0, "high": 2.0}


def test_a_proportion_has_its_wilson_interval() -> None:
    # Wilson, z 1.96: centre 0.3725, half-width 0.3269
    found = proportion_interval(1, 4)
    assert (found["count"], found["n"], found["fraction"]) == (1, 4, 0.25)
    assert found["low"] == pytest.approx(0.0456, abs=1e-3)
    assert found["high"] == pytest.approx(0.6994, abs=1e-3)


def case(model: str, visit: str, wt: float, before: str, after: str) -> Case:
    return Case(
        model=model,
        visit=visit,
        label=f"P {visit}",
        dice={"ET": 0.9, "TC": 0.9, "WT": wt},
        model_ml={"ET": 2.0, "TC": 4.0, "WT": 10.0},
        corrected_ml={"ET": 1.0, "TC": 4.0, "WT": 12.0},
        category_before=before,
        category_after=after,
    )


def test_each_model_version_is_summarised_with_its_worst_visits_first() -> None:
    cases = [
        case("seg 2", "a", 0.95, "SD", "SD"),
        case("seg 2", "b", 0.40, "PD", "SD"),  # the correction changed the category
        case("seg 2", "c", 0.80, "SD", "SD"),
        case("seg 1", "d", 0.70, "SD", "SD"),
    ]
    newer, older = summarise(cases)
    assert (newer["model"], newer["visits"], older["model"]) == ("seg 2", 3, "seg 1")
    assert newer["regions"]["WT"]["dice"]["mean"] == pytest.approx(
        (0.95 + 0.40 + 0.80) / 3, abs=1e-4
    )
    assert newer["regions"]["WT"]["volume_difference_ml"]["mean"] == 2.0
    assert newer["regions"]["ET"]["volume_difference_ml"]["mean"] == -1.0
    assert newer["category_changed"]["count"] == 1
    assert newer["category_changed"]["n"] == 3
    assert [w["visit"] for w in newer["worst"]] == ["b", "c", "a"]
    assert older["regions"]["WT"]["dice"]["low"] is None  # one visit: no interval
