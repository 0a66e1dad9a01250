"""The patient growth chart: one server-rendered SVG of the tumour volumes and the RANO sum of
products over time, with the treatments in a strip above and the steroid dose in a strip below.

The same markup serves the web page and the PDF report. WeasyPrint runs no JavaScript and the
report loads no style sheet, so everything visible is drawn with presentation attributes
(``fill``, ``stroke``, ``font-family="sans-serif"``) and every point carries a ``<title>`` (hover
works without script). ``static/tracker/chart.js`` only adds behaviour, through these names:

- ``svg.growth-chart`` the chart (``data-interactive`` "true" or "false");
- ``g.series[data-series]`` one line with its points per series (ET, NCR, ED, WT, SPD);
- ``.point[data-series][data-date][data-value][data-visit]`` one marker per analysed visit;
- ``.band[data-series][data-from][data-to]`` the probability range of WT and ET (the volume
  the model gives a probability >= 0.75 to >= 0.25: not a confidence interval);
- ``.threshold[data-kind]`` the RANO lines on the sum of products: -50 % of baseline (PR),
  +25 % over the nadir (PD); ``.category[data-date]`` each visit's RANO category;
- ``.marker-nadir[data-series]`` the nadir ring, hidden with its series;
- ``g.legend-item[data-series]`` the legend, buttons with ``aria-pressed`` when interactive;
- ``.marker-baseline``, ``.marker-progression``, ``.treatment``, ``.visit-tick`` with ``data-date``;
- ``.marker-pseudoprogression[data-from][data-to]`` a preliminary progression the engine did not
  see confirmed, shaded from that scan to the one that settled it.

The input is the timeline dict exactly as ``GET /api/patients/{id}/timeline/`` returns it
(``tracker.timeline.visit_dict`` per visit); nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from django.template.defaultfilters import floatformat

__all__ = ["growth_chart_svg"]


@dataclass(frozen=True, slots=True)
class _Series:
    key: str
    label: str
    colour: str
    shape: str
    unit: str
    dashed: bool = False


# Okabe-Ito colours (safe for the common colour-vision deficiencies), and a marker shape per
# series so that colour is never the only cue. SPD is drawn dashed, on the right-hand axis.
SERIES: tuple[_Series, ...] = (
    _Series("ET", "Enhancing (ET)", "#D55E00", "circle", "mL"),
    _Series("NCR", "Necrosis (NCR)", "#0072B2", "square", "mL"),
    _Series("ED", "Oedema (ED)", "#E69F00", "triangle", "mL"),
    _Series("WT", "Whole tumour (WT)", "#009E73", "diamond", "mL"),
    _Series("SPD", "Sum of products (SPD)", "#CC79A7", "triangle-down", "mm²", dashed=True),
)
VOLUME_SERIES = ("ET", "NCR", "ED", "WT")
BAND_SERIES = ("WT", "ET")

# Marker geometry centred on (0, 0); each marker is placed with a translate transform.
_MARKERS: dict[str, tuple[str, str]] = {
    "circle": ("circle", 'r="4.5"'),
    "square": ("rect", 'x="-4" y="-4" width="8" height="8"'),
    "triangle": ("polygon", 'points="0,-5.5 5,3.5 -5,3.5"'),
    "diamond": ("polygon", 'points="0,-5.5 5.5,0 0,5.5 -5.5,0"'),
    "triangle-down": ("polygon", 'points="0,5.5 5,-3.5 -5,-3.5"'),
}

# Treatment lanes, top to bottom. Steroid courses with a dose go to the steroid strip instead.
_LANES: tuple[tuple[str, str], ...] = (
    ("surgery", "Surgery"),
    ("radiotherapy", "Radiotherapy"),
    ("chemotherapy", "Chemotherapy"),
    ("antiangiogenic", "Anti-angiogenic"),
    ("steroids", "Steroids"),
    ("other", "Other"),
)
_LANE_LABELS = dict(_LANES)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Layout, in SVG user units (px on screen).
_MARGIN_LEFT = 104  # room for the lane labels and "Steroids (mg/day)"
_MARGIN_RIGHT = 64  # room for the SPD axis
_LEGEND_ROW = 18
_LANE = 13
_STEROID_STRIP = 30
_AXIS_AREA = 30
_MIN_PLOT = 100
_X_PAD = 12  # keeps the first and last markers off the axes
_CHAR_EM = 0.64  # sans-serif glyph width (DejaVu Sans runs wide), in em, to estimate text widths

_GRID = "#E6E6E6"
_AXIS = "#8C8C8C"
_INK = "#222222"
_MUTED = "#555555"

# Characters XML 1.0 forbids (and lone surrogates, which cannot be encoded): dropped from text.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


# --- input -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Visit:
    code: str
    on: dt.date
    analysed: bool
    values: dict[str, float]  # series key -> mL, or mm² for SPD
    intervals: dict[str, tuple[float, float]]  # region -> (low_ml, high_ml)
    steroid_dose_mg: float | None
    category: str
    is_progression: bool
    is_nadir: bool
    pseudoprogression_of: str  # the visit whose preliminary progression this one did not confirm
    corrected_by: str = ""  # a clinician who corrected the segmentation these values measure


@dataclass(frozen=True, slots=True)
class _Treatment:
    kind: str
    started_on: dt.date
    ended_on: dt.date | None
    dose_mg: float | None
    notes: str


def _date(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _number(value: Any) -> float | None:
    """A finite float from a JSON number or a decimal string ("4.00"), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _parse_visits(timeline: Mapping[str, Any]) -> list[_Visit]:
    progression_code = timeline.get("progression_visit")
    nadir_code = timeline.get("nadir_visit")
    visits: list[_Visit] = []
    for raw in timeline.get("visits") or ():
        on = _date(raw.get("acquired_on"))
        if on is None:
            continue
        results = raw.get("results")
        values: dict[str, float] = {}
        intervals: dict[str, tuple[float, float]] = {}
        if isinstance(results, Mapping):
            volumes = results.get("volumes_ml") or {}
            for key in VOLUME_SERIES:
                volume = _number(volumes.get(key))
                if volume is not None:
                    values[key] = volume
            spd = _number(results.get("sum_of_products_mm2"))
            if spd is not None:
                values["SPD"] = spd
            for region, interval in (results.get("volume_intervals_ml") or {}).items():
                if region not in BAND_SERIES or not isinstance(interval, Mapping):
                    continue
                low, high = _number(interval.get("low_ml")), _number(interval.get("high_ml"))
                if low is not None and high is not None:
                    intervals[region] = (min(low, high), max(low, high))
        assessment = raw.get("assessment") or {}
        code = str(raw.get("code") or "")
        visits.append(
            _Visit(
                code=code,
                on=on,
                analysed=isinstance(results, Mapping),
                values=values,
                intervals=intervals,
                steroid_dose_mg=_number(raw.get("steroid_dose_mg")),
                category=str(assessment.get("category") or ""),
                is_progression=bool(assessment.get("is_progression_visit"))
                or (bool(code) and code == str(progression_code or "")),
                is_nadir=bool(assessment.get("is_nadir_visit"))
                or (bool(code) and code == str(nadir_code or "")),
                pseudoprogression_of=str(assessment.get("pseudoprogression_of") or ""),
                corrected_by=_corrected_by(results),
            )
        )
    visits.sort(key=lambda visit: visit.on)
    return visits


def _corrected_by(results: Any) -> str:
    segmentation = results.get("segmentation") if isinstance(results, Mapping) else None
    return str((segmentation or {}).get("corrected_by") or "")


def _parse_treatments(timeline: Mapping[str, Any]) -> list[_Treatment]:
    treatments: list[_Treatment] = []
    for raw in timeline.get("treatments") or ():
        started_on = _date(raw.get("started_on"))
        if started_on is None:
            continue
        ended_on = _date(raw.get("ended_on"))
        if ended_on is not None and ended_on < started_on:
            ended_on = started_on
        kind = str(raw.get("kind") or "other")
        treatments.append(
            _Treatment(
                kind=kind if kind in _LANE_LABELS else "other",
                started_on=started_on,
                ended_on=ended_on,
                dose_mg=_number(raw.get("dose_mg")),
                notes=str(raw.get("notes") or ""),
            )
        )
    treatments.sort(key=lambda treatment: treatment.started_on)
    return treatments


# --- text and numbers --------------------------------------------------------------------------


def _text(value: str) -> str:
    """Element content: XML-escaped, with characters XML cannot hold dropped."""
    return escape(_XML_INVALID.sub("", value))


def _attr(value: str) -> str:
    """An attribute value with its quotes, escaped the same way."""
    return quoteattr(_XML_INVALID.sub("", value))


def _n(value: float) -> str:
    """A coordinate, to a tenth of a unit (enough on screen and on paper, and short)."""
    return f"{value:.1f}"


def _value_text(value: float, unit: str) -> str:
    """Rounded as the pages' tables round (Django's ``floatformat``: half up on the decimal
    value), so the chart and a table never differ in the last digit."""
    return f"{floatformat(value, 2 if unit == 'mL' else 1)} {unit}"


def _dose_text(dose_mg: float) -> str:
    return f"{dose_mg:g} mg"


def _fits(text: str, font_size: float) -> float:
    return len(text) * font_size * _CHAR_EM


def _truncate(text: str, width: float, font_size: float) -> str:
    """``text`` cut (with an ellipsis) to about ``width`` units; "" when under three letters fit."""
    room = int(width / (font_size * _CHAR_EM))
    if len(text) <= room:
        return text
    return text[: room - 1].rstrip() + "…" if room >= 4 else ""


def nice_step(minimum: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``minimum``, so axis ticks
    land on round numbers.

    >>> [nice_step(x) for x in (0.3, 1.0, 2.8, 7, 130)]
    [0.5, 1.0, 5.0, 10.0, 200.0]
    """
    if minimum <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(minimum))
    for multiple in (1.0, 2.0, 5.0, 10.0):
        step = multiple * magnitude
        if step >= minimum * (1 - 1e-9):
            return step
    return 10.0 * magnitude  # pragma: no cover - the loop always returns


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}"


def month_ticks(first: dt.date, last: dt.date, most: int) -> list[dt.date]:
    """Month starts between ``first`` and ``last`` every 1, 2, 3, 6, 12, 24... months, the
    finest spacing that gives at most ``most`` ticks (quarters start in Jan/Apr/Jul/Oct, years
    in January).

    >>> [d.isoformat() for d in month_ticks(dt.date(2024, 1, 15), dt.date(2024, 9, 1), 3)]
    ['2024-04-01', '2024-07-01']
    """
    start = first.year * 12 + first.month - 1 + (first.day != 1)
    end = last.year * 12 + last.month - 1
    ticks = range(0)
    for step in (1, 2, 3, 6, 12, 24, 60, 120):
        ticks = range(-(-start // step) * step, end + 1, step)
        if len(ticks) <= max(most, 1):
            break
    return [dt.date(index // 12, index % 12 + 1, 1) for index in ticks]


# --- scales ------------------------------------------------------------------------------------


class _DateScale:
    """Dates to x, by real elapsed days."""

    def __init__(self, first: dt.date, last: dt.date, left: float, right: float) -> None:
        if last <= first:  # a single date sits in the middle of a month-wide window
            first, last = first - dt.timedelta(days=15), last + dt.timedelta(days=15)
        self.first, self.last = first, last
        self._origin = first.toordinal()
        self._left = left
        self._per_day = (right - left) / (last.toordinal() - self._origin)

    def __call__(self, on: dt.date) -> float:
        return self._left + (on.toordinal() - self._origin) * self._per_day


class _LinearScale:
    """Values from 0 to ``top`` to y, bottom up."""

    def __init__(self, top: float, bottom_y: float, top_y: float) -> None:
        self._bottom_y = bottom_y
        self._per_unit = (bottom_y - top_y) / top

    def __call__(self, value: float) -> float:
        return self._bottom_y - value * self._per_unit


# --- layout ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _LegendEntry:
    series: _Series | None  # None: the "shaded: probability range" note
    label: str
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class _Layout:
    width: int
    height: int
    left: float
    right: float
    legend: list[_LegendEntry]
    lanes: list[str]
    strip_top: float
    plot_top: float
    plot_bottom: float
    steroid_top: float
    steroid_bottom: float
    axis_y: float


def _layout(
    width: int, height: int, series: Sequence[_Series], has_bands: bool, lanes: list[str]
) -> _Layout:
    left, right = float(_MARGIN_LEFT), float(width - _MARGIN_RIGHT)
    labels: list[tuple[_Series | None, str]] = [(s, s.label) for s in series]
    if has_bands:
        labels.append((None, "Shaded: probability range (not a confidence interval)"))
    legend: list[_LegendEntry] = []
    x, y = left, 6 + _LEGEND_ROW / 2
    for entry_series, label in labels:
        entry_width = 30 + _fits(label, 11) + 20
        if x > left and x + entry_width > width - 8:
            x, y = left, y + _LEGEND_ROW
        legend.append(_LegendEntry(entry_series, label, x, y))
        x += entry_width
    strip_top = y + _LEGEND_ROW / 2 + 4
    plot_top = strip_top + len(lanes) * _LANE + (8 if lanes else 2)
    needed = plot_top + _MIN_PLOT + 12 + _STEROID_STRIP + 4 + _AXIS_AREA
    height = max(height, math.ceil(needed))
    axis_y = height - _AXIS_AREA
    steroid_bottom = axis_y - 4
    steroid_top = steroid_bottom - _STEROID_STRIP
    return _Layout(
        width=width,
        height=height,
        left=left,
        right=right,
        legend=legend,
        lanes=lanes,
        strip_top=strip_top,
        plot_top=plot_top,
        plot_bottom=steroid_top - 12,
        steroid_top=steroid_top,
        steroid_bottom=steroid_bottom,
        axis_y=axis_y,
    )


# --- drawing -----------------------------------------------------------------------------------


def _marker(shape: str, x: float, y: float, attributes: str, title: str = "") -> str:
    tag, geometry = _MARKERS[shape]
    opening = f'<{tag} {geometry} transform="translate({_n(x)} {_n(y)})" {attributes}'
    if not title:
        return opening + "/>"
    return f"{opening}><title>{_text(title)}</title></{tag}>"


def _legend(layout: _Layout, interactive: bool) -> Iterable[str]:
    yield '<g class="legend">'
    for entry in layout.legend:
        translate = f'transform="translate({_n(entry.x)} {_n(entry.y)})"'
        if entry.series is None:
            yield (
                f'<g class="legend-note" {translate}>'
                f'<rect x="0" y="-6" width="22" height="12" fill="{_MUTED}" fill-opacity="0.18"/>'
                f'<text x="28" y="4" fill="{_INK}">{_text(entry.label)}</text></g>'
            )
            continue
        s = entry.series
        button = ' role="button" tabindex="0" aria-pressed="true"' if interactive else ""
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        hit_width = _n(30 + _fits(entry.label, 11) + 8)
        yield (
            f'<g class="legend-item" data-series="{s.key}"{button} {translate}>'
            f'<rect x="-4" y="-9" width="{hit_width}" height="18" fill="#FFFFFF" '
            'fill-opacity="0"/>'
            f'<line x1="0" y1="0" x2="22" y2="0" stroke="{s.colour}" stroke-width="2"{dash}/>'
            + _marker(s.shape, 11, 0, f'fill="{s.colour}" stroke="#FFFFFF" stroke-width="1"')
            + f'<text x="28" y="4" fill="{_INK}">{_text(entry.label)}</text></g>'
        )
    yield "</g>"


def _value_axes(
    layout: _Layout, volume_ticks: list[float], spd_ticks: list[float] | None
) -> Iterable[str]:
    """Gridlines at the volume ticks; the SPD ticks share them (same count, its own values)."""
    volume_step = volume_ticks[1] - volume_ticks[0]
    y_of = _LinearScale(volume_ticks[-1], layout.plot_bottom, layout.plot_top)
    yield '<g class="axis axis-volume" font-size="10">'
    for index, tick in enumerate(volume_ticks):
        y = _n(y_of(tick))
        yield (
            f'<line x1="{_n(layout.left)}" y1="{y}" x2="{_n(layout.right)}" y2="{y}" '
            f'stroke="{_GRID}" stroke-width="1"/>'
            f'<text x="{_n(layout.left - 6)}" y="{_n(y_of(tick) + 3.5)}" text-anchor="end" '
            f'fill="{_MUTED}">{_tick_label(tick, volume_step)}</text>'
        )
        if spd_ticks is not None:
            spd_step = spd_ticks[1] - spd_ticks[0]
            yield (
                f'<text x="{_n(layout.right + 6)}" y="{_n(y_of(tick) + 3.5)}" '
                f'fill="{_MUTED}">{_tick_label(spd_ticks[index], spd_step)}</text>'
            )
    middle = _n((layout.plot_top + layout.plot_bottom) / 2)
    left_title_x = _n(layout.left - 44)
    yield (
        f'<text x="{left_title_x}" y="{middle}" text-anchor="middle" font-size="11" '
        f'fill="{_INK}" transform="rotate(-90 {left_title_x} {middle})">Volume (mL)</text>'
    )
    if spd_ticks is not None:
        right_title_x = _n(layout.right + 50)
        yield (
            f'<text x="{right_title_x}" y="{middle}" text-anchor="middle" font-size="11" '
            f'fill="{_INK}" transform="rotate(90 {right_title_x} {middle})">'
            "Sum of products (mm²)</text>"
        )
    yield (
        f'<line x1="{_n(layout.left)}" y1="{_n(layout.plot_top)}" x2="{_n(layout.left)}" '
        f'y2="{_n(layout.plot_bottom)}" stroke="{_AXIS}" stroke-width="1"/>'
        f'<line x1="{_n(layout.left)}" y1="{_n(layout.plot_bottom)}" x2="{_n(layout.right)}" '
        f'y2="{_n(layout.plot_bottom)}" stroke="{_AXIS}" stroke-width="1"/>'
    )
    if spd_ticks is not None:
        yield (
            f'<line x1="{_n(layout.right)}" y1="{_n(layout.plot_top)}" x2="{_n(layout.right)}" '
            f'y2="{_n(layout.plot_bottom)}" stroke="{_AXIS}" stroke-width="1"/>'
        )
    yield "</g>"


def _time_axis(layout: _Layout, x_of: _DateScale, visits: Sequence[_Visit]) -> Iterable[str]:
    """Month/year ticks with vertical gridlines through every strip, and a thin tick per visit."""
    most = max(2, int((layout.right - layout.left) // 72))
    ticks = month_ticks(x_of.first, x_of.last, most)
    yearly = (
        len(ticks) > 1
        and (ticks[1].year * 12 + ticks[1].month) - (ticks[0].year * 12 + ticks[0].month) >= 12
    )
    axis_y = layout.axis_y
    yield '<g class="axis axis-time" font-size="10">'
    for index, tick in enumerate(ticks):
        x = _n(x_of(tick))
        yield (
            f'<line x1="{x}" y1="{_n(layout.strip_top)}" x2="{x}" y2="{_n(axis_y)}" '
            f'stroke="{_GRID}" stroke-width="1"/>'
            f'<line x1="{x}" y1="{_n(axis_y)}" x2="{x}" y2="{_n(axis_y + 4)}" '
            f'stroke="{_AXIS}" stroke-width="1"/>'
        )
        if yearly:
            yield (
                f'<text x="{x}" y="{_n(axis_y + 15)}" text-anchor="middle" '
                f'fill="{_MUTED}">{tick.year}</text>'
            )
            continue
        yield (
            f'<text x="{x}" y="{_n(axis_y + 15)}" text-anchor="middle" '
            f'fill="{_MUTED}">{_MONTHS[tick.month - 1]}</text>'
        )
        if index == 0 or tick.month == 1:
            yield (
                f'<text x="{x}" y="{_n(axis_y + 27)}" text-anchor="middle" '
                f'fill="{_MUTED}">{tick.year}</text>'
            )
    yield (
        f'<line x1="{_n(layout.left)}" y1="{_n(axis_y)}" x2="{_n(layout.right)}" '
        f'y2="{_n(axis_y)}" stroke="{_AXIS}" stroke-width="1"/>'
    )
    yield "</g>"
    yield '<g class="visit-ticks">'
    for visit in visits:
        x = _n(x_of(visit.on))
        note = "" if visit.analysed else " (not analysed)"
        yield (
            f'<line class="visit-tick" data-date="{visit.on.isoformat()}" x1="{x}" '
            f'y1="{_n(axis_y - 6)}" x2="{x}" y2="{_n(axis_y)}" stroke="{_INK}" '
            f'stroke-width="1.5"><title>Visit {visit.on.isoformat()}{note}</title></line>'
        )
    yield "</g>"


def _treatment_title(treatment: _Treatment, end: dt.date) -> str:
    label = _LANE_LABELS[treatment.kind]
    if treatment.kind == "surgery" and treatment.ended_on in (None, treatment.started_on):
        when = treatment.started_on.isoformat()
    elif treatment.ended_on is None:
        when = f"from {treatment.started_on.isoformat()} (ongoing at {end.isoformat()})"
    else:
        when = f"{treatment.started_on.isoformat()} to {treatment.ended_on.isoformat()}"
    dose = f", {_dose_text(treatment.dose_mg)}" if treatment.dose_mg is not None else ""
    notes = f": {treatment.notes}" if treatment.notes.strip() else ""
    return f"{label} {when}{dose}{notes}"


def _treatment_strip(
    layout: _Layout, x_of: _DateScale, treatments: Sequence[_Treatment], last_on: dt.date
) -> Iterable[str]:
    """One lane per kind: a band from start to end (to the last visit while open), surgery a
    narrow mark; each with its lane label on the left, a label where it fits, and a title."""
    if not layout.lanes:
        return
    yield '<g class="treatments" font-size="10">'
    for lane_index, kind in enumerate(layout.lanes):
        top = layout.strip_top + lane_index * _LANE
        yield (
            f'<text x="{_n(layout.left - 6)}" y="{_n(top + 9)}" text-anchor="end" '
            f'fill="{_INK}">{_text(_LANE_LABELS[kind])}</text>'
        )
        in_lane = [t for t in treatments if t.kind == kind]
        for index, treatment in enumerate(in_lane):
            x0 = x_of(treatment.started_on)
            end = treatment.ended_on or max(last_on, treatment.started_on)
            x1 = x_of(end)
            if kind == "surgery" or x1 - x0 < 4:
                x0, x1 = x0 - 2, x0 + 2
            fill = "#4D4D4D" if kind == "surgery" else "#DDDDDD"
            title = _treatment_title(treatment, last_on)
            yield (
                f'<rect class="treatment" data-kind="{kind}" '
                f'data-date="{treatment.started_on.isoformat()}" x="{_n(x0)}" '
                f'y="{_n(top + 1)}" width="{_n(x1 - x0)}" height="{_LANE - 2}" fill="{fill}" '
                f'stroke="#8C8C8C" stroke-width="0.5"><title>{_text(title)}</title></rect>'
            )
            label = treatment.notes.strip() or _LANE_LABELS[kind]
            next_x = (
                x_of(in_lane[index + 1].started_on) - 2
                if index + 1 < len(in_lane)
                else layout.right
            )
            text_x = x0 + 3 if x1 - x0 >= 30 else x1 + 3
            room = (x1 - 3 if x1 - x0 >= 30 else next_x) - text_x
            label = _truncate(" ".join(label.split()), room, 10)
            if label:
                yield (
                    f'<text x="{_n(text_x)}" y="{_n(top + 9.5)}" fill="{_INK}">'
                    f"{_text(label)}<title>{_text(title)}</title></text>"
                )
    yield "</g>"


def _steroid_steps(
    visits: Sequence[_Visit], treatments: Sequence[_Treatment]
) -> list[tuple[dt.date, float]]:
    """The steroid dose as (from date, mg) steps. A visit's dose holds until the next visit;
    a steroid course with a dose counts from its start to its end (inclusive, open while no
    end); where both speak, the larger wins, so a course also entered on visits counts once."""
    courses = [
        (t.started_on, t.ended_on, t.dose_mg)
        for t in treatments
        if t.kind == "steroids" and t.dose_mg is not None
    ]
    reported = [(v.on, v.steroid_dose_mg) for v in visits if v.steroid_dose_mg is not None]
    breaks = {on for on, _ in reported} | {start for start, _, _ in courses}
    breaks |= {end + dt.timedelta(days=1) for _, end, _ in courses if end is not None}
    steps: list[tuple[dt.date, float]] = []
    carried, next_report = 0.0, 0
    for on in sorted(breaks):
        while next_report < len(reported) and reported[next_report][0] <= on:
            carried = reported[next_report][1] or 0.0
            next_report += 1
        active = sum(
            dose or 0.0
            for start, end, dose in courses
            if start <= on and (end is None or on <= end)
        )
        dose = max(carried, active)
        if not steps or steps[-1][1] != dose:
            steps.append((on, dose))
    return steps


def _steroid_strip(
    layout: _Layout, x_of: _DateScale, steps: Sequence[tuple[dt.date, float]]
) -> Iterable[str]:
    top, bottom = layout.steroid_top, layout.steroid_bottom
    yield '<g class="steroids" font-size="10">'
    yield (
        f'<line x1="{_n(layout.left)}" y1="{_n(bottom)}" x2="{_n(layout.right)}" '
        f'y2="{_n(bottom)}" stroke="{_GRID}" stroke-width="1"/>'
        # two lines: "Steroids (mg/day)" on one would run past the left edge
        f'<text x="{_n(layout.left - 26)}" y="{_n((top + bottom) / 2 - 2)}" '
        f'text-anchor="end" fill="{_INK}">Steroids<tspan x="{_n(layout.left - 26)}" '
        'dy="11">(mg/day)</tspan></text>'
    )
    if not steps:
        yield (
            f'<text x="{_n(layout.left + 6)}" y="{_n(bottom - 4)}" fill="{_MUTED}">'
            "no steroid doses recorded</text></g>"
        )
        return
    dose_top = nice_step(max(dose for _, dose in steps))
    y_of = _LinearScale(dose_top, bottom, top + 4)
    yield (
        f'<text x="{_n(layout.left - 6)}" y="{_n(top + 7.5)}" text-anchor="end" '
        f'fill="{_MUTED}">{dose_top:g}</text>'
        f'<text x="{_n(layout.left - 6)}" y="{_n(bottom)}" text-anchor="end" '
        f'fill="{_MUTED}">0</text>'
    )
    right = x_of(x_of.last)
    path = [f"M{_n(min(x_of(steps[0][0]), right))} {_n(y_of(steps[0][1]))}"]
    for on, dose in steps[1:]:
        path.append(f"H{_n(min(x_of(on), right))}V{_n(y_of(dose))}")
    path.append(f"H{_n(right)}")
    line = "".join(path)
    area = f"{line}V{_n(bottom)}H{_n(min(x_of(steps[0][0]), right))}Z"
    title = "Steroid dose: " + "; ".join(
        f"{_dose_text(dose)}/day from {on.isoformat()}" for on, dose in steps
    )
    yield (
        f'<path class="steroid-area" d="{area}" fill="{_MUTED}" fill-opacity="0.12" '
        'stroke="none"/>'
        f'<path class="steroid-step" d="{line}" fill="none" stroke="{_MUTED}" '
        f'stroke-width="1.5"><title>{_text(title)}</title></path>'
    )
    yield "</g>"


def _bands(
    x_of: _DateScale, y_of: _LinearScale, analysed: Sequence[_Visit], series: Sequence[_Series]
) -> Iterable[str]:
    """Shaded low..high intervals, one path per run of consecutive analysed visits that have
    one (an analysed visit without an interval breaks the run); a lone visit gets a bar."""
    yield '<g class="bands">'
    for s in series:
        if s.key not in BAND_SERIES:
            continue
        runs: list[list[_Visit]] = [[]]
        for visit in analysed:
            if s.key not in visit.values:
                continue
            if s.key in visit.intervals:
                runs[-1].append(visit)
            elif runs[-1]:
                runs.append([])
        for run in runs:
            if not run:
                continue
            first, last = run[0].on.isoformat(), run[-1].on.isoformat()
            head = (
                f'class="band" data-series="{s.key}" data-from="{first}" data-to="{last}" '
                f'fill="{s.colour}" fill-opacity="0.18" stroke="none"'
            )
            title = (
                f"<title>{s.key} probability range (volume with p >= 0.75 to p >= 0.25), "
                f"{first} to {last}</title>"
            )
            if len(run) == 1:
                low, high = run[0].intervals[s.key]
                x = x_of(run[0].on)
                yield (
                    f'<rect {head} x="{_n(x - 4)}" y="{_n(y_of(high))}" width="8" '
                    f'height="{_n(y_of(low) - y_of(high))}">{title}</rect>'
                )
                continue
            upper = [f"{_n(x_of(v.on))} {_n(y_of(v.intervals[s.key][1]))}" for v in run]
            lower = [f"{_n(x_of(v.on))} {_n(y_of(v.intervals[s.key][0]))}" for v in run]
            yield f'<path {head} d="M{"L".join(upper)}L{"L".join(reversed(lower))}Z">{title}</path>'
    yield "</g>"


def _series_groups(
    x_of: _DateScale,
    scales: Mapping[str, _LinearScale],
    analysed: Sequence[_Visit],
    series: Sequence[_Series],
    interactive: bool,
) -> Iterable[str]:
    focus = ' tabindex="0"' if interactive else ""
    for s in series:
        y_of = scales[s.key]
        points = [(v, v.values[s.key]) for v in analysed if s.key in v.values]
        coordinates = [(x_of(v.on), y_of(value)) for v, value in points]
        yield f'<g class="series" data-series="{s.key}">'
        if len(points) > 1:
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            line = " ".join(f"{_n(x)},{_n(y)}" for x, y in coordinates)
            yield (
                f'<polyline class="line" points="{line}" fill="none" stroke="{s.colour}" '
                f'stroke-width="2" stroke-linejoin="round"{dash}/>'
            )
        for (visit, value), (x, y) in zip(points, coordinates, strict=True):
            on, shown = visit.on.isoformat(), _value_text(value, s.unit)
            yield _marker(
                s.shape,
                x,
                y,
                f'class="point" data-series="{s.key}" data-date="{on}" '
                f'data-value="{shown}" data-visit={_attr(visit.code)} fill="{s.colour}" '
                f'stroke="#FFFFFF" stroke-width="1"{focus}',
                f"{s.key} {on}: {shown}",
            )
        yield "</g>"


def _nadir(analysed: Sequence[_Visit]) -> tuple[_Visit, str] | None:
    """The nadir the RANO engine found (never worked out again here), ringed on its sum of
    products, or on its whole-tumour volume where it has none. None without one."""
    nadir = next((v for v in analysed if v.is_nadir), None)
    if nadir is None:
        return None
    key = "SPD" if "SPD" in nadir.values else "WT"
    return (nadir, key) if key in nadir.values else None


def _threshold_lines(
    layout: _Layout, scales: Mapping[str, _LinearScale], analysed: Sequence[_Visit]
) -> Iterable[str]:
    """The RANO lines on the sum-of-products axis: a partial response is -50 % of the
    baseline's, progression +25 % over the nadir's (the engine's baseline and nadir). A line
    above the axis is left out. The axis is mm², never a volume."""
    if "SPD" not in scales:
        return
    scale = scales["SPD"]
    baseline = next((v for v in analysed if v.category == "baseline"), None)
    nadir = next((v for v in analysed if v.is_nadir), None)
    lines = []
    if baseline is not None and "SPD" in baseline.values:
        lines.append(("pr", baseline.values["SPD"] * 0.5, "SPD -50 % of baseline (PR)"))
    if nadir is not None and "SPD" in nadir.values:
        lines.append(("pd", nadir.values["SPD"] * 1.25, "SPD +25 % over nadir (PD)"))
    colour = next(s.colour for s in SERIES if s.key == "SPD")
    for kind, value, label in lines:
        y = scale(value)
        if not layout.plot_top <= y <= layout.plot_bottom:
            continue
        yield (
            f'<g class="threshold" data-kind="{kind}" data-value="{_n(value)}">'
            f'<line x1="{_n(layout.left)}" y1="{_n(y)}" x2="{_n(layout.right)}" y2="{_n(y)}" '
            f'stroke="{colour}" stroke-width="1" stroke-dasharray="2 4"/>'
            f'<text x="{_n(layout.right - 4)}" y="{_n(y - 3)}" text-anchor="end" font-size="10" '
            f'fill="{_INK}">{_text(label)} {_value_text(value, "mm²")}</text>'
            f"<title>{_text(label)}: {_value_text(value, 'mm²')}</title></g>"
        )


def _category_labels(
    layout: _Layout, x_of: _DateScale, analysed: Sequence[_Visit]
) -> Iterable[str]:
    """Each assessed visit's RANO category, just above the time axis; ``*`` where a clinician
    corrected the segmentation behind it (named in the title)."""
    yield '<g class="categories">'
    for visit in analysed:
        if not visit.category:
            continue
        label = {"baseline": "BL", "pre_baseline": "pre"}.get(visit.category, visit.category)
        corrected = ""
        if visit.corrected_by:
            label += "*"
            title = f"segmentation corrected by {visit.corrected_by}"
            corrected = f" data-corrected-by={_attr(visit.corrected_by)}"
            label_markup = f"{_text(label)}<title>{_text(title)}</title>"
        else:
            label_markup = _text(label)
        yield (
            f'<text class="category" data-date="{visit.on.isoformat()}"{corrected} '
            f'x="{_n(x_of(visit.on))}" y="{_n(layout.plot_bottom - 4)}" text-anchor="middle" '
            f'font-size="9" fill="{_INK}">{label_markup}</text>'
        )
    yield "</g>"


def _pseudoprogression_spans(
    layout: _Layout, x_of: _DateScale, visits: Sequence[_Visit]
) -> Iterable[str]:
    """Where the RANO engine found pseudoprogression: a shaded span from the preliminary
    progression to the scan that did not confirm it, labelled (behind the series)."""
    by_code = {v.code: v for v in visits if v.code}
    for visit in visits:
        grew = by_code.get(visit.pseudoprogression_of)
        if grew is None:
            continue
        left, right = x_of(grew.on), x_of(visit.on)
        title = (
            f"Pseudoprogression: the preliminary progression of {grew.on.isoformat()} was not "
            f"confirmed by the scan of {visit.on.isoformat()}"
        )
        yield (
            f'<g class="marker-pseudoprogression" data-from="{grew.on.isoformat()}" '
            f'data-to="{visit.on.isoformat()}">'
            f'<rect x="{_n(left)}" y="{_n(layout.plot_top)}" width="{_n(max(right - left, 1))}" '
            f'height="{_n(layout.plot_bottom - layout.plot_top)}" fill="#999999" '
            'fill-opacity="0.15"/>'
            f'<text x="{_n((left + right) / 2)}" y="{_n(layout.plot_top + 34)}" '
            f'text-anchor="middle" font-size="10" fill="{_INK}">pseudoprogression</text>'
            f"<title>{_text(title)}</title></g>"
        )


def _event_lines(layout: _Layout, x_of: _DateScale, visits: Sequence[_Visit]) -> Iterable[str]:
    """Baseline and progression as labelled vertical lines (behind the series)."""

    def vertical(kind: str, visit: _Visit, dash: str, label_y: float) -> str:
        x = x_of(visit.on)
        anchor = (
            f'x="{_n(x - 3)}" text-anchor="end"' if x > layout.right - 80 else f'x="{_n(x + 3)}"'
        )
        return (
            f'<g class="marker-{kind}" data-date="{visit.on.isoformat()}">'
            f'<line x1="{_n(x)}" y1="{_n(layout.plot_top)}" x2="{_n(x)}" '
            f'y2="{_n(layout.plot_bottom)}" stroke="{_INK}" stroke-width="1.2"{dash}/>'
            f'<text {anchor} y="{_n(label_y)}" font-size="10" fill="{_INK}">{kind}</text>'
            f"<title>{kind.capitalize()} {visit.on.isoformat()}</title></g>"
        )

    yield '<g class="markers">'
    for visit in visits:
        if visit.category == "baseline":
            yield vertical("baseline", visit, "", layout.plot_top + 10)
        if visit.is_progression:
            yield vertical("progression", visit, ' stroke-dasharray="5 3"', layout.plot_top + 22)
    yield "</g>"


def _nadir_marker(
    layout: _Layout,
    x_of: _DateScale,
    scales: Mapping[str, _LinearScale],
    analysed: Sequence[_Visit],
) -> Iterable[str]:
    """A ring round the nadir point, labelled above it (on a white patch, as lines may cross
    there) or below when the top of the plot is too near; drawn over the series."""
    nadir = _nadir(analysed)
    if nadir is None:
        return
    visit, key = nadir
    unit = "mm²" if key == "SPD" else "mL"
    x, y = x_of(visit.on), scales[key](visit.values[key])
    label_y = y - 14 if y - 14 > layout.plot_top + 30 else y + 22
    yield (
        f'<g class="marker-nadir" data-series="{key}" data-date="{visit.on.isoformat()}">'
        f'<circle cx="{_n(x)}" cy="{_n(y)}" r="9" fill="none" stroke="{_INK}" '
        f'stroke-width="1.5"/><rect x="{_n(x - 15)}" y="{_n(label_y - 9)}" width="30" '
        'height="12" rx="2" fill="#FFFFFF" fill-opacity="0.85"/>'
        f'<text x="{_n(x)}" y="{_n(label_y)}" text-anchor="middle" font-size="10" '
        f'fill="{_INK}">nadir</text><title>Nadir {visit.on.isoformat()}: '
        f"{key} {_value_text(visit.values[key], unit)}</title></g>"
    )


def _summary(
    visits: Sequence[_Visit],
    analysed: Sequence[_Visit],
    treatments: Sequence[_Treatment],
    label: str,
) -> tuple[str, str]:
    """The chart's title and description, so a screen reader (or a reader of the PDF's text)
    gets the gist without the picture."""
    first, last = analysed[0].on.isoformat(), analysed[-1].on.isoformat()
    count = len(analysed)
    span = first if count == 1 else f"{first} to {last}"
    title = f"Tumour volumes over {count} visit{'s' * (count != 1)}, {span}"
    parts = [f"Patient {label}." if label else ""]
    wt = [v.values["WT"] for v in analysed if "WT" in v.values]
    if wt:
        parts.append(f"Whole tumour {wt[0]:.2f} mL at the first and {wt[-1]:.2f} mL at the latest.")
    spd = [v.values["SPD"] for v in analysed if "SPD" in v.values]
    if spd:
        parts.append(f"Sum of products {spd[0]:.1f} mm² at the first, {spd[-1]:.1f} at the latest.")
    baselines = [v.on.isoformat() for v in visits if v.category == "baseline"]
    if baselines:
        parts.append(f"Baseline {', '.join(baselines)}.")
    nadir = _nadir(analysed)
    if nadir is not None:
        parts.append(f"Nadir {nadir[0].on.isoformat()}.")
    progressions = [v.on.isoformat() for v in visits if v.is_progression]
    if progressions:
        parts.append(f"Progression {', '.join(progressions)}.")
    pending = len(visits) - count
    if pending:
        parts.append(f"{pending} visit{'s' * (pending != 1)} not analysed yet.")
    if treatments:
        parts.append(
            "Treatments: " + "; ".join(_treatment_title(t, visits[-1].on) for t in treatments) + "."
        )
    return title, " ".join(p for p in parts if p)


def _dom_id(timeline: Mapping[str, Any]) -> str:
    patient = timeline.get("patient") or {}
    code = _ID_UNSAFE.sub("", str(patient.get("code") or ""))[:64]
    return f"growth-chart-{code}" if code else "growth-chart"


def _empty_svg(width: int, dom_id: str, visits: Sequence[_Visit]) -> str:
    height = 60
    message = "No analysed visits yet"
    recorded = len(visits)
    desc = (
        f"{recorded} visit{'s' * (recorded != 1)} recorded, none analysed yet."
        if recorded
        else "No visits recorded yet."
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="growth-chart growth-chart-empty" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{dom_id}-title {dom_id}-desc" font-family="sans-serif" '
        f'font-size="13" data-interactive="false">'
        f'<title id="{dom_id}-title">Tumour volumes: no analysed visits yet</title>'
        f'<desc id="{dom_id}-desc">{_text(desc)}</desc>'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="#FAFAFA" '
        f'stroke="{_GRID}"/>'
        f'<text x="{width / 2:g}" y="{height / 2 + 4:g}" text-anchor="middle" '
        f'fill="{_MUTED}">{message}</text></svg>'
    )


def growth_chart_svg(
    timeline: dict[str, Any], *, width: int = 960, height: int = 420, interactive: bool = True
) -> str:
    """The patient's growth chart as one ``<svg>`` element (a string to put in a page or a
    WeasyPrint report as it is).

    Volumes (ET, NCR, ED, WT, mL, left axis) and the sum of products (SPD, mm², right axis)
    over real time, one marker per analysed visit (unanalysed visits only get an x-axis tick),
    probability-range bands for WT and ET where the visit has one, baseline, nadir and
    progression marked, the RANO lines on the sum of products and each visit's category,
    treatments in a strip above and the steroid dose in a strip below.
    ``interactive=False`` (the PDF) leaves out the keyboard stops (``tabindex``) and the legend's
    button semantics. ``height`` grows when the legend and treatment lanes need more room.
    """
    visits = _parse_visits(timeline)
    analysed = [v for v in visits if v.analysed]
    dom_id = _dom_id(timeline)
    if not analysed:
        return _empty_svg(width, dom_id, visits)
    treatments = _parse_treatments(timeline)
    present = {key for v in analysed for key in v.values}
    series = [s for s in SERIES if s.key in present]
    has_bands = any(key in v.intervals for v in analysed for key in BAND_SERIES)
    # Steroid courses with a dose are drawn in the steroid strip; the rest get a band.
    banded = [t for t in treatments if not (t.kind == "steroids" and t.dose_mg is not None)]
    kinds = {t.kind for t in banded}
    lanes = [kind for kind, _ in _LANES if kind in kinds]
    layout = _layout(width, height, series, has_bands, lanes)

    dates = [v.on for v in visits] + [t.started_on for t in treatments]
    dates += [t.ended_on for t in treatments if t.ended_on is not None]
    x_of = _DateScale(min(dates), max(dates), layout.left + _X_PAD, layout.right - _X_PAD)

    volume_max = max(
        [v.values[key] for v in analysed for key in VOLUME_SERIES if key in v.values]
        + [high for v in analysed for _, high in v.intervals.values()]
        + [0.0]
    )
    volume_step = nice_step(volume_max / 5)
    intervals = max(1, math.ceil(volume_max / volume_step - 1e-9))
    volume_ticks = [i * volume_step for i in range(intervals + 1)]
    volume_scale = _LinearScale(volume_ticks[-1], layout.plot_bottom, layout.plot_top)
    scales = dict.fromkeys(VOLUME_SERIES, volume_scale)
    spd_ticks = None
    if "SPD" in present:
        spd_step = nice_step(max(v.values.get("SPD", 0.0) for v in analysed) / intervals)
        spd_ticks = [i * spd_step for i in range(intervals + 1)]
        scales["SPD"] = _LinearScale(spd_ticks[-1], layout.plot_bottom, layout.plot_top)

    patient = timeline.get("patient") or {}
    title, desc = _summary(visits, analysed, treatments, str(patient.get("label") or ""))
    # An image for readers; a group when its legend buttons and points take the keyboard (ARIA
    # makes the inside of role="img" presentational).
    role = "group" if interactive else "img"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="growth-chart" width="{width}" '
        f'height="{layout.height}" viewBox="0 0 {width} {layout.height}" role="{role}" '
        f'aria-labelledby="{dom_id}-title {dom_id}-desc" font-family="sans-serif" '
        f'font-size="11" data-interactive="{"true" if interactive else "false"}">',
        f'<title id="{dom_id}-title">{_text(title)}</title>',
        f'<desc id="{dom_id}-desc">{_text(desc)}</desc>',
        f'<rect class="background" x="0" y="0" width="{width}" height="{layout.height}" '
        'fill="#FFFFFF"/>',
    ]
    parts += _value_axes(layout, volume_ticks, spd_ticks)
    parts += _time_axis(layout, x_of, visits)
    parts += _treatment_strip(layout, x_of, banded, visits[-1].on)
    parts += _steroid_strip(layout, x_of, _steroid_steps(visits, treatments))
    parts += _bands(x_of, volume_scale, analysed, series)
    parts += _pseudoprogression_spans(layout, x_of, visits)
    parts += _event_lines(layout, x_of, visits)
    parts += _threshold_lines(layout, scales, analysed)
    parts += _category_labels(layout, x_of, analysed)
    parts += _series_groups(x_of, scales, analysed, series, interactive)
    parts += _nadir_marker(layout, x_of, scales, analysed)
    parts += _legend(layout, interactive)
    parts.append("</svg>")
    return "".join(parts)
