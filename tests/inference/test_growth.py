"""Growth analytics on hand-checkable series: exact exponentials, equal dates, zeros, one visit."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.response.growth import (
    Point,
    SeriesError,
    analyse,
    analyse_series,
    changes,
    fit_window,
    time_to_progression,
)
from tests.inference.cli import run_cli

START = dt.date(2024, 1, 1)


def series(*pairs: tuple[int, float]) -> list[Point]:
    return [Point(f"v{i}", START + dt.timedelta(days=d), v) for i, (d, v) in enumerate(pairs)]


def test_an_exact_exponential_gives_its_doubling_time_with_a_tight_interval():
    # Doubles every 60 days; a little noise so the interval has a width.
    noise = [1.0, 1.01, 0.99, 1.0, 1.005]
    points = series(*[(60 * i, 10.0 * 2**i * n) for i, n in enumerate(noise)])
    trend = analyse_series("WT", points)["trend"]
    assert trend["doubling_time_days"] == pytest.approx(60, rel=0.02)
    low, high = trend["doubling_time_interval_days"]
    assert low < trend["doubling_time_days"] < high
    assert high - low < 10
    assert trend["halving_time_days"] is None


def test_a_shrinking_tumour_has_a_halving_time_not_a_doubling_time():
    points = series((0, 40.0), (30, 20.2), (60, 9.9), (90, 5.0))
    trend = analyse_series("ET", points)["trend"]
    assert trend["doubling_time_days"] is None
    assert trend["halving_time_days"] == pytest.approx(30, rel=0.03)


def test_changes_between_visits():
    rows = changes(series((0, 10.0), (61, 20.0)))
    assert rows[0]["absolute"] == 10.0
    assert rows[0]["relative"] == 1.0
    months = 61 / 30.4375
    assert rows[0]["rate_per_month"] == pytest.approx(10 / months, abs=1e-4)
    assert rows[0]["rate_percent_per_month"] == pytest.approx(
        100 * (2 ** (1 / months) - 1), abs=0.01
    )


def test_equal_dates_zero_volumes_and_one_visit_give_notes_not_numbers():
    same_day = changes(series((0, 10.0), (0, 11.0)))[0]
    assert same_day["rate_per_month"] is None
    assert "same date" in same_day["note"]
    from_zero = changes(series((0, 0.0), (30, 5.0)))[0]
    assert from_zero["relative"] is None
    assert from_zero["rate_percent_per_month"] is None
    assert from_zero["rate_per_month"] == pytest.approx(5 / (30 / 30.4375), abs=1e-4)
    one = analyse_series("WT", series((0, 10.0)), forecast_on=START + dt.timedelta(days=90))
    assert one["changes"] == []
    assert one["trend"]["doubling_time_days"] is None
    assert "one visit" in one["trend"]["note"]
    assert one["forecast"]["expected"] is None
    assert one["diametric_expansion"]["mm_per_year"] is None
    gone = analyse_series("ET", series((0, 0.0), (30, 0.0)))
    assert "no visit with a volume above zero" in gone["trend"]["note"]
    same = analyse_series("WT", series((0, 10.0), (0, 12.0)))
    assert same["trend"]["slope_per_day"] is None
    assert "one date" in same["trend"]["note"]


def test_two_visits_give_a_doubling_time_without_an_interval():
    trend = analyse_series("WT", series((0, 10.0), (90, 20.0)))["trend"]
    assert trend["doubling_time_days"] == pytest.approx(90)
    assert trend["doubling_time_interval_days"] is None
    assert "needs three" in trend["note"]


def test_an_interval_including_zero_growth_leaves_the_doubling_time_unbounded():
    trend = analyse_series("WT", series((0, 10.0), (30, 13.0), (60, 10.5), (90, 12.0)))["trend"]
    assert trend["doubling_time_interval_days"][1] is None
    assert "unbounded" in trend["note"]


def test_the_fit_follows_the_current_course():
    # Response to a nadir, then regrowth: the trend is fitted from the nadir on.
    points = series((0, 30.0), (60, 10.0), (120, 5.0), (180, 10.0), (240, 20.0))
    assert [p.id for p in fit_window(points)] == ["v2", "v3", "v4"]
    trend = analyse_series("WT", points)["trend"]
    assert trend["doubling_time_days"] == pytest.approx(60)
    # After a zero (gone, then back) the course restarts.
    back = series((0, 8.0), (60, 0.0), (120, 1.0), (180, 2.0), (240, 4.0))
    assert [p.id for p in fit_window(back)] == ["v2", "v3", "v4"]


def test_forecast_with_a_prediction_interval_that_widens_with_distance():
    noise = [1.0, 1.02, 0.98, 1.01]
    points = series(*[(60 * i, 10.0 * 2**i * n) for i, n in enumerate(noise)])
    near = analyse_series("WT", points, forecast_on=START + dt.timedelta(days=240))["forecast"]
    far = analyse_series("WT", points, forecast_on=START + dt.timedelta(days=480))["forecast"]
    assert near["expected"] == pytest.approx(160, rel=0.05)
    assert far["expected"] == pytest.approx(2560, rel=0.1)
    assert near["interval"][0] < near["expected"] < near["interval"][1]
    near_width = math.log(near["interval"][1] / near["interval"][0])
    far_width = math.log(far["interval"][1] / far["interval"][0])
    assert far_width > near_width
    assert "extrapolated" in far["note"]


def test_velocity_of_diametric_expansion():
    # Mean diameter (2 V)^(1/3) grows linearly by 4 mm a year.
    diameters = [30.0, 32.0, 34.0, 36.0]  # mm, six months apart
    points = [
        Point(f"v{i}", START + dt.timedelta(days=round(182.625 * i)), d**3 / 2 / 1000)
        for i, d in enumerate(diameters)
    ]
    vde = analyse_series("WT", points)["diametric_expansion"]
    assert vde["mm_per_year"] == pytest.approx(4.0, abs=0.02)


def test_time_to_progression():
    assert time_to_progression(START, START + dt.timedelta(days=183)) == {
        "days": 183,
        "months": 6.0,
    }
    assert time_to_progression(START, None) == {"days": None, "months": None}


@settings(max_examples=100, deadline=None)
@given(
    volumes=st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=500)), min_size=1, max_size=8
    ),
    gaps=st.lists(st.integers(0, 200), min_size=8, max_size=8),
)
def test_no_series_raises_or_prints_non_finite_numbers(volumes, gaps):
    days = [sum(gaps[:i]) for i in range(len(volumes))]
    points = series(*zip(days, volumes, strict=False))
    result = analyse_series("WT", points, forecast_on=START + dt.timedelta(days=days[-1] + 90))
    text = json.dumps(result, allow_nan=False)  # raises on NaN or infinity
    assert "WT" in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"visits": []}, "'visits' must be a non-empty list"),
        ({"visits": [{"id": "a", "acquired_on": "2024-01-01"}]}, "visit a: field 'volumes_ml'"),
        (
            {"visits": [{"id": "a", "acquired_on": "2024-01-01", "volumes_ml": {"WT": -1}}]},
            "visit a: WT must be a finite number >= 0",
        ),
        (
            {
                "visits": [
                    {"id": "a", "acquired_on": "2024-02-01", "volumes_ml": {"WT": 1}},
                    {"id": "b", "acquired_on": "2024-01-01", "volumes_ml": {"WT": 1}},
                ]
            },
            "visit b: field 'acquired_on' 2024-01-01 is before",
        ),
        (
            {
                "visits": [
                    {"id": "a", "acquired_on": "2024-01-01", "volumes_ml": {"WT": 1, "ET": 1}},
                    {"id": "b", "acquired_on": "2024-02-01", "volumes_ml": {"WT": 1}},
                ]
            },
            "series ET: given at 1 of 2 visits",
        ),
        ({"visits": [], "extra": 1}, "unknown field 'extra'"),
        (
            {
                "visits": [{"id": "a", "acquired_on": "2024-01-01", "volumes_ml": {"WT": 1}}],
                "progression_visit": "z",
            },
            "'progression_visit' is 'z', not one of the visits",
        ),
    ],
)
def test_bad_series_are_named(data, message):
    with pytest.raises(SeriesError) as error:
        analyse(data)
    assert message in str(error.value)


def test_the_command_line_analyses_a_series(tmp_path):
    data = {
        "visits": [
            {"id": "a", "acquired_on": "2024-01-01", "volumes_ml": {"WT": 10, "ET": 2}},
            {"id": "b", "acquired_on": "2024-03-01", "volumes_ml": {"WT": 14, "ET": 3}},
            {"id": "c", "acquired_on": "2024-05-01", "volumes_ml": {"WT": 20, "ET": 4}},
        ],
        "progression_visit": "c",
    }
    path = tmp_path / "series.json"
    path.write_text(json.dumps(data))
    result = run_cli("growth", str(path), "--forecast-on", "2024-08-01")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [s["name"] for s in out["series"]] == ["WT", "ET"]
    assert out["time_to_progression"]["days"] == 121
    assert out["series"][0]["forecast"]["expected"] > 20
    assert "WT: doubling" in result.stderr
