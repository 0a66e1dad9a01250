"""The growth chart SVG (tracker.charts), from timeline dicts built here in the shape
``GET /api/patients/{id}/timeline/`` returns. Pure Python: no database, no browser."""

from __future__ import annotations

import doctest
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tracker import charts
from tracker.charts import growth_chart_svg

SVG = "{http://www.w3.org/2000/svg}"
SERIES = ("ET", "NCR", "ED", "WT", "SPD")


# --- building timelines ------------------------------------------------------------------------


def results(
    wt: float, *, spd: float | None = None, intervals: dict[str, tuple[float, float]] | None = None
) -> dict[str, Any]:
    """Results whose parts are fixed fractions of WT, so every value is hand-checkable."""
    return {
        "run": "run",
        "model": {"name": "tumour-segmenter", "version": "test", "weights_sha256": "0" * 64},
        "volumes_ml": {"ET": wt / 4, "NCR": wt / 10, "ED": wt / 2, "TC": wt / 2, "WT": wt},
        "volume_intervals_ml": {
            region: {
                "volume_ml": (low + high) / 2,
                "expected_ml": 0,
                "low_ml": low,
                "high_ml": high,
            }
            for region, (low, high) in (intervals or {}).items()
        },
        "sum_of_products_mm2": wt * 30 if spd is None else spd,
        "lesions": [],
        "registrations": [],
    }


def visit(
    on: str,
    result: dict[str, Any] | None,
    category: str | None = None,
    *,
    progression: bool = False,
    nadir: bool = False,
    steroid_dose_mg: str = "0.00",
) -> dict[str, Any]:
    assessment: dict[str, Any] | None = None
    if category is not None:
        assessment = {
            "category": category,
            "confirmed": None,
            "reference_visit": None,
            "relative_change": None,
            "reasons": [],
            "is_progression_visit": progression,
            "is_nadir_visit": nadir,
        }
    return {
        "code": f"visit-{on}",
        "patient": "p-1",
        "acquired_on": on,
        "clinical_status": "stable",
        "steroid_dose_mg": steroid_dose_mg,
        "non_target": "absent",
        "notes": "",
        "analysis": None,
        "results": result,
        "assessment": assessment,
        "reviews": [],
    }


def treatment(
    kind: str,
    started_on: str,
    ended_on: str | None = None,
    *,
    dose_mg: str | None = None,
    notes: str = "",
) -> dict[str, Any]:
    return {
        "code": f"t-{kind}-{started_on}",
        "kind": kind,
        "started_on": started_on,
        "ended_on": ended_on,
        "dose_mg": dose_mg,
        "notes": notes,
    }


def timeline(
    visits: list[dict[str, Any]], treatments: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "patient": {"code": "3f2c1d4e-0000-4000-8000-000000000001", "label": "GBM-001"},
        "treatments": treatments or [],
        "visits": visits,
        "progression_visit": _marked(visits, "is_progression_visit"),
        "nadir_visit": _marked(visits, "is_nadir_visit"),
    }


def _marked(visits: list[dict[str, Any]], mark: str) -> str | None:
    return next((v["code"] for v in visits if v["assessment"] and v["assessment"][mark]), None)


def five_visits() -> dict[str, Any]:
    """A pre-baseline scan, the baseline, a response (the nadir), one visit waiting for
    analysis, then progression."""
    return timeline(
        [
            visit("2024-01-01", results(12.0, spd=300.0), "pre_baseline"),
            visit("2024-03-04", results(12.4, spd=400.0), "baseline"),
            visit("2024-05-06", results(8.0, spd=320.0), "PR", nadir=True),
            visit("2024-07-01", None),
            visit("2024-09-01", results(20.0, spd=700.0), "PD", progression=True),
        ],
        [
            treatment("surgery", "2023-12-15", notes="resection"),
            treatment("radiotherapy", "2024-03-11", "2024-04-22", notes="60 Gy"),
            treatment("chemotherapy", "2024-03-11"),
        ],
    )


# --- reading the SVG ---------------------------------------------------------------------------


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def with_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in (e.get("class") or "").split()]


def points(root: ET.Element, series: str) -> list[ET.Element]:
    return [p for p in with_class(root, "point") if p.get("data-series") == series]


def position(element: ET.Element) -> tuple[float, float]:
    match = re.fullmatch(r"translate\(([-\d.]+) ([-\d.]+)\)", element.get("transform", ""))
    assert match, element.attrib
    return float(match[1]), float(match[2])


def title_of(element: ET.Element) -> str:
    title = element.find(f"{SVG}title")
    assert title is not None
    return title.text or ""


# --- tests -------------------------------------------------------------------------------------


def test_it_is_one_well_formed_svg_labelled_by_its_title_and_description() -> None:
    root = parse(growth_chart_svg(five_visits()))

    assert root.get("role") == "group"  # interactive: its buttons stay reachable
    assert parse(growth_chart_svg(five_visits(), interactive=False)).get("role") == "img"
    assert root.get("class") == "growth-chart"
    assert root.get("font-family") == "sans-serif"
    title_id, desc_id = root.get("aria-labelledby", "").split()
    by_id = {e.get("id"): e for e in root.iter() if e.get("id")}
    assert by_id[title_id].tag == f"{SVG}title"
    assert by_id[title_id].text == "Tumour volumes over 4 visits, 2024-01-01 to 2024-09-01"
    assert by_id[desc_id].tag == f"{SVG}desc"
    assert "Progression 2024-09-01." in (by_id[desc_id].text or "")
    assert "1 visit not analysed yet." in (by_id[desc_id].text or "")


def test_it_draws_one_point_per_analysed_visit_in_every_series() -> None:
    root = parse(growth_chart_svg(five_visits()))

    analysed = ["2024-01-01", "2024-03-04", "2024-05-06", "2024-09-01"]
    for series in SERIES:
        group = [g for g in with_class(root, "series") if g.get("data-series") == series]
        assert len(group) == 1, series
        assert [p.get("data-date") for p in points(group[0], series)] == analysed
    assert len(with_class(root, "point")) == 4 * len(SERIES)


def test_it_skips_unanalysed_visits_but_ticks_them_on_the_time_axis() -> None:
    root = parse(growth_chart_svg(five_visits()))

    assert all(p.get("data-date") != "2024-07-01" for p in with_class(root, "point"))
    ticks = {t.get("data-date"): title_of(t) for t in with_class(root, "visit-tick")}
    assert len(ticks) == 5
    assert ticks["2024-07-01"] == "Visit 2024-07-01 (not analysed)"
    assert ticks["2024-03-04"] == "Visit 2024-03-04"


def test_each_point_carries_its_value_with_unit_in_data_and_title() -> None:
    root = parse(growth_chart_svg(five_visits()))

    et = points(root, "ET")[1]
    assert et.tag == f"{SVG}circle"
    assert (et.get("data-date"), et.get("data-value")) == ("2024-03-04", "3.10 mL")
    assert et.get("data-visit") == "visit-2024-03-04"
    assert title_of(et) == "ET 2024-03-04: 3.10 mL"
    spd = points(root, "SPD")[1]
    assert spd.get("data-value") == "400.0 mm²"
    assert title_of(spd) == "SPD 2024-03-04: 400.0 mm²"


def test_x_positions_increase_with_dates_at_real_time_spacing() -> None:
    data = timeline(
        [
            visit("2024-01-01", results(10.0)),
            visit("2024-01-11", results(10.0)),
            visit("2024-02-10", results(10.0)),
        ]
    )
    xs = [position(p)[0] for p in points(parse(growth_chart_svg(data)), "WT")]

    assert xs[0] < xs[1] < xs[2]
    # 10 days then 30 days: three times the distance, to the drawing's rounding.
    assert (xs[2] - xs[1]) / (xs[1] - xs[0]) == pytest.approx(3.0, rel=0.02)


def test_larger_volumes_are_drawn_higher_on_a_shared_axis() -> None:
    root = parse(growth_chart_svg(five_visits()))
    wt_y = [position(p)[1] for p in points(root, "WT")]
    et_y = [position(p)[1] for p in points(root, "ET")]

    # WT 12, 12.4, 8, 20 mL (y grows downwards); ET is a quarter of WT, so lower.
    assert wt_y[3] < wt_y[1] < wt_y[0] < wt_y[2]
    assert all(e > w for e, w in zip(et_y, wt_y, strict=True))


def test_series_have_okabe_ito_colours_distinct_shapes_and_a_dashed_spd_line() -> None:
    root = parse(growth_chart_svg(five_visits()))
    colours = {"ET": "#D55E00", "NCR": "#0072B2", "ED": "#E69F00", "WT": "#009E73"}
    colours["SPD"] = "#CC79A7"

    shapes = set()
    for series, colour in colours.items():
        point = points(root, series)[0]
        assert point.get("fill") == colour
        shapes.add((point.tag, point.get("points"), point.get("width")))
    assert len(shapes) == len(SERIES)
    lines = {g.get("data-series"): g.find(f"{SVG}polyline") for g in with_class(root, "series")}
    assert lines["SPD"] is not None
    assert lines["SPD"].get("stroke-dasharray")
    assert lines["WT"] is not None
    assert lines["WT"].get("stroke-dasharray") is None


def test_interval_bands_cover_only_the_visits_that_have_an_interval() -> None:
    data = timeline(
        [
            visit("2024-01-01", results(10.0, intervals={"WT": (9.0, 11.0)})),
            visit("2024-02-01", results(11.0, intervals={"WT": (10.0, 12.5)})),
            visit("2024-03-01", None),
            visit("2024-04-01", results(12.0, intervals={"WT": (11.0, 13.0)})),
            visit("2024-05-01", results(12.5)),
            visit("2024-06-01", results(13.0, intervals={"WT": (12.0, 14.0), "ET": (3.0, 3.5)})),
        ]
    )
    bands = sorted(
        (b.get("data-series", ""), b.get("data-from", ""), b.get("data-to", ""), b.tag)
        for b in with_class(parse(growth_chart_svg(data)), "band")
    )

    # The unanalysed visit (March) does not break the WT band; the analysed one without an
    # interval (May) does, and a lone visit with an interval gets a bar (a rect).
    assert bands == [
        ("ET", "2024-06-01", "2024-06-01", f"{SVG}rect"),
        ("WT", "2024-01-01", "2024-04-01", f"{SVG}path"),
        ("WT", "2024-06-01", "2024-06-01", f"{SVG}rect"),
    ]


def test_it_draws_no_band_and_no_band_legend_without_intervals() -> None:
    svg = growth_chart_svg(five_visits())

    assert with_class(parse(svg), "band") == []
    assert "probability range" not in svg


def test_baseline_nadir_and_progression_are_marked_at_their_visits() -> None:
    root = parse(growth_chart_svg(five_visits()))

    def marker(kind: str) -> ET.Element:
        (found,) = with_class(root, f"marker-{kind}")
        return found

    assert marker("baseline").get("data-date") == "2024-03-04"
    assert marker("progression").get("data-date") == "2024-09-01"
    # The engine's nadir is marked, never worked out here: the pre-baseline scan has the
    # smaller SPD (300), and no marker goes there.
    assert marker("nadir").get("data-date") == "2024-05-06"
    assert marker("nadir").get("data-series") == "SPD"
    labels = {kind: "".join(marker(kind).itertext()) for kind in ("baseline", "nadir")}
    assert labels["baseline"].startswith("baseline")
    assert labels["nadir"].startswith("nadir")
    assert "progression" in "".join(marker("progression").itertext())
    # The nadir ring sits on the SPD point of that visit.
    ring = marker("nadir").find(f"{SVG}circle")
    assert ring is not None
    nadir_point = next(p for p in points(root, "SPD") if p.get("data-date") == "2024-05-06")
    ring_xy = float(ring.get("cx", "nan")), float(ring.get("cy", "nan"))
    assert ring_xy == pytest.approx(position(nadir_point), abs=0.11)


def test_the_nadir_is_ringed_on_whole_tumour_volume_without_spd() -> None:
    data = timeline(
        [
            visit("2024-01-01", results(10.0), "baseline"),
            visit("2024-02-01", results(6.0), "PR", nadir=True),
            visit("2024-03-01", results(7.0), "SD"),
        ]
    )
    for v in data["visits"]:
        v["results"]["sum_of_products_mm2"] = None

    root = parse(growth_chart_svg(data))

    (nadir,) = with_class(root, "marker-nadir")
    assert (nadir.get("data-series"), nadir.get("data-date")) == ("WT", "2024-02-01")
    assert points(root, "SPD") == []


def test_no_nadir_from_the_engine_means_no_nadir_marker() -> None:
    data = timeline([visit("2024-01-01", results(10.0)), visit("2024-02-01", results(6.0))])

    assert with_class(parse(growth_chart_svg(data)), "marker-nadir") == []


def test_treatments_are_labelled_bands_in_a_strip_above_the_plot() -> None:
    root = parse(growth_chart_svg(five_visits()))
    bands = {b.get("data-kind"): b for b in with_class(root, "treatment")}

    assert set(bands) == {"surgery", "radiotherapy", "chemotherapy"}
    assert title_of(bands["surgery"]) == "Surgery 2023-12-15: resection"
    assert title_of(bands["radiotherapy"]) == "Radiotherapy 2024-03-11 to 2024-04-22: 60 Gy"
    assert title_of(bands["chemotherapy"]) == (
        "Chemotherapy from 2024-03-11 (ongoing at 2024-09-01)"
    )
    assert float(bands["surgery"].get("width", "0")) == 4.0
    # The open chemotherapy band runs to the last visit; radiotherapy stops on its end date.
    wt = {p.get("data-date"): position(p)[0] for p in points(root, "WT")}
    chemo_end = float(bands["chemotherapy"].get("x", "0")) + float(
        bands["chemotherapy"].get("width", "0")
    )
    assert chemo_end == pytest.approx(wt["2024-09-01"], abs=0.2)
    plot_top = min(position(p)[1] for p in with_class(root, "point")) - 6
    assert all(float(b.get("y", "nan")) < plot_top for b in bands.values())
    lane_labels = {t.text for t in root.iter(f"{SVG}text")}
    assert {"Surgery", "Radiotherapy", "Chemotherapy"} <= lane_labels


def test_the_steroid_dose_is_a_step_line_from_visits_and_dosed_steroid_courses() -> None:
    data = timeline(
        [
            visit("2024-01-01", results(10.0), steroid_dose_mg="0.00"),
            visit("2024-02-01", results(10.0), steroid_dose_mg="4.00"),
            visit("2024-04-01", results(10.0), steroid_dose_mg="0.00"),
        ],
        [treatment("steroids", "2024-04-10", "2024-04-20", dose_mg="8.00")],
    )
    root = parse(growth_chart_svg(data))

    (step,) = with_class(root, "steroid-step")
    assert title_of(step) == (
        "Steroid dose: 0 mg/day from 2024-01-01; 4 mg/day from 2024-02-01; "
        "0 mg/day from 2024-04-01; 8 mg/day from 2024-04-10; 0 mg/day from 2024-04-21"
    )
    labels = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert "Steroids(mg/day)" in labels  # on two lines, to stay inside the left edge
    # A course with a dose is drawn as the step line, not as a treatment band.
    assert with_class(root, "treatment") == []


def test_user_text_is_escaped() -> None:
    data = five_visits()
    data["patient"]["label"] = 'GBM <script>alert("x")</script>'
    data["treatments"][1]["notes"] = "<script>alert(1)</script> & \x07bell"

    svg = growth_chart_svg(data)
    root = parse(svg)  # still well formed, the control character dropped

    assert "<script>" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; bell" in svg
    radiotherapy = [
        t for t in with_class(root, "treatment") if t.get("data-kind") == "radiotherapy"
    ]
    assert title_of(radiotherapy[0]).endswith(": <script>alert(1)</script> & bell")
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert 'Patient GBM <script>alert("x")</script>.' in (desc.text or "")


def test_the_legend_items_are_toggle_buttons_when_interactive() -> None:
    root = parse(growth_chart_svg(five_visits()))
    items = with_class(root, "legend-item")

    assert [i.get("data-series") for i in items] == list(SERIES)
    for item in items:
        assert (item.get("role"), item.get("tabindex"), item.get("aria-pressed")) == (
            "button",
            "0",
            "true",
        )
    assert all(p.get("tabindex") == "0" for p in with_class(root, "point"))
    assert root.get("data-interactive") == "true"


def test_a_non_interactive_chart_has_no_keyboard_stops_or_buttons() -> None:
    svg = growth_chart_svg(five_visits(), interactive=False)
    root = parse(svg)

    assert "tabindex" not in svg
    assert 'role="button"' not in svg
    assert "aria-pressed" not in svg
    assert root.get("data-interactive") == "false"
    assert len(with_class(root, "legend-item")) == len(SERIES)
    assert len(points(root, "WT")) == 4


@pytest.mark.parametrize(
    "visits",
    [[], [visit("2024-01-01", None), visit("2024-02-01", None, "indeterminate")]],
    ids=["no visits", "none analysed"],
)
def test_without_analysed_visits_it_is_a_small_svg_saying_so(visits: list[Any]) -> None:
    root = parse(growth_chart_svg(timeline(visits), width=500))

    assert [t.text for t in root.iter(f"{SVG}text")] == ["No analysed visits yet"]
    assert with_class(root, "point") == []
    assert int(root.get("height", "0")) < 100
    assert root.get("width") == "500"
    assert root.get("role") == "img"


def test_a_single_analysed_visit_is_drawn_without_lines() -> None:
    root = parse(growth_chart_svg(timeline([visit("2024-06-01", results(5.0))])))

    assert len(points(root, "WT")) == 1
    assert root.find(f".//{SVG}polyline") is None
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == "Tumour volumes over 1 visit, 2024-06-01"


def test_it_uses_no_external_resources_or_script() -> None:
    svg = growth_chart_svg(five_visits())

    assert "href" not in svg
    assert "<script" not in svg
    assert "<style" not in svg
    assert re.search(r"\son\w+=", svg) is None


def test_the_axis_helpers_examples_hold() -> None:
    result = doctest.testmod(charts)

    assert result.attempted >= 2
    assert result.failed == 0


def test_it_draws_twenty_visits() -> None:
    """Twenty monthly visits, each on the chart (the time it takes is bench/bench_pages.py's:
    the timeline page draws this chart)."""
    data = timeline(
        [
            visit(
                f"{2024 + month // 12}-{month % 12 + 1:02d}-01",
                results(10.0 + month, intervals={"WT": (9.0 + month, 11.0 + month)}),
                "baseline" if month == 0 else "SD",
            )
            for month in range(20)
        ],
        [treatment("radiotherapy", "2024-01-10", "2024-02-20")],
    )
    assert len(points(parse(growth_chart_svg(data)), "WT")) == 20


def test_the_rano_lines_and_categories_are_drawn_on_the_sum_of_products() -> None:
    """-50 % of the baseline's SPD (PR) and +25 % over the nadir's (PD), on the mm² axis; each
    assessed visit's category above the time axis."""
    root = parse(growth_chart_svg(five_visits()))
    lines = {
        t.get("data-kind"): float(t.get("data-value", "nan")) for t in with_class(root, "threshold")
    }
    assert lines == {"pr": 200.0, "pd": 400.0}  # baseline 400 mm², nadir 320 mm²
    labels = {t.get("data-date"): "".join(t.itertext()) for t in with_class(root, "category")}
    assert labels == {
        "2024-01-01": "pre",
        "2024-03-04": "BL",
        "2024-05-06": "PR",
        "2024-09-01": "PD",
    }


def test_the_chart_rounds_as_the_tables_do() -> None:
    """25.465 mL: 25.47 in a table (floatformat, half up on the decimal value) and in the
    chart (it once said 25.46, the binary float's rounding)."""
    from django.template.defaultfilters import floatformat

    data = timeline([visit("2024-01-01", results(25.465), "baseline")])
    titles = [t.text or "" for t in parse(growth_chart_svg(data)).iter(f"{SVG}title")]
    assert str(floatformat(25.465, 2)) == "25.47"
    assert any("WT 2024-01-01: 25.47 mL" in t for t in titles), titles


def test_pseudoprogression_is_shaded_from_the_growth_to_the_scan_that_settled_it() -> None:
    """The engine's ``pseudoprogression_of``: the span from the preliminary progression to
    the scan that did not confirm it, labelled, with the dates in its title."""
    settled = visit("2024-07-01", results(9.0, spd=330.0), "SD")
    settled["assessment"]["pseudoprogression_of"] = "visit-2024-05-06"
    data = timeline(
        [
            visit("2024-03-04", results(12.4, spd=400.0), "baseline"),
            visit("2024-05-06", results(16.0, spd=520.0), "PD"),
            settled,
        ]
    )
    root = parse(growth_chart_svg(data))
    (span,) = with_class(root, "marker-pseudoprogression")
    assert (span.get("data-from"), span.get("data-to")) == ("2024-05-06", "2024-07-01")
    assert "pseudoprogression" in "".join(span.itertext())
    assert "progression of 2024-05-06 was not confirmed by the scan of 2024-07-01" in title_of(span)
    (rect,) = span.iter(f"{SVG}rect")
    grew, later = (
        next(p for p in points(root, "SPD") if p.get("data-date") == day)
        for day in ("2024-05-06", "2024-07-01")
    )
    assert float(rect.get("x", "nan")) == pytest.approx(position(grew)[0], abs=0.11)
    right = float(rect.get("x", "nan")) + float(rect.get("width", "nan"))
    assert right == pytest.approx(position(later)[0], abs=0.11)
    assert not with_class(parse(growth_chart_svg(five_visits())), "marker-pseudoprogression")


def test_a_visit_whose_segmentation_was_corrected_is_starred_and_named() -> None:
    corrected = results(9.0, spd=330.0)
    corrected["segmentation"] = {"version": 2, "source": "edit", "corrected_by": "alice"}
    data = timeline(
        [
            visit("2024-03-04", results(12.4, spd=400.0), "baseline"),
            visit("2024-05-06", corrected, "SD"),
        ]
    )
    labels = {t.get("data-date"): t for t in with_class(parse(growth_chart_svg(data)), "category")}
    assert "".join(labels["2024-05-06"].itertext()).startswith("SD*")
    assert labels["2024-05-06"].get("data-corrected-by") == "alice"
    assert title_of(labels["2024-05-06"]) == "segmentation corrected by alice"
    assert "".join(labels["2024-03-04"].itertext()) == "BL"
