"""Growth analytics of a patient's tumour volumes: change, growth rate, doubling time, velocity of
diametric expansion, time to progression and a forecast with its prediction interval.

Pure functions of (date, volume) series, one series per compartment or region (ET, NCR, ED, TC,
WT, or any other named series such as the RANO sum of products). What each figure is:

- Change between consecutive visits: absolute (mL) and relative; growth rate in mL per month
  and in % per month, compounded (``(V2 / V1) ** (30.4375 / days) - 1``). A month is 30.4375 days.
- Trend: a log-linear least-squares fit ``ln V = a + k t`` (exponential growth, the usual model
  of tumour volume kinetics) over the *current* course: the visits from the smallest volume
  (nadir) on when there are at least three of them, else the last three visits. Doubling time
  ``ln 2 / k`` (halving time when ``k < 0``) with a 95 % confidence interval from the slope's
  t-interval; when that interval includes zero growth, the doubling time has no upper bound and
  the figure says so rather than printing a number.
- Velocity of diametric expansion (VDE, low-grade gliomas): the slope of the mean tumour diameter
  ``(2 V) ** (1/3)`` against time, in mm per year, with its 95 % confidence interval (Mandonnet
  et al., Ann Neurol 2003;53:524-8; Pallud et al., Ann Neurol 2006;60:380-3).
- Forecast: the trend's expected volume at a chosen date with a 95 % prediction interval
  (``t(n-2) * s * sqrt(1 + 1/n + (t - mean t)^2 / Sxx)`` on the log scale).
- Time to progression: days and months from the baseline to the date-of-progression visit.

Nothing is divided by zero or invented: one visit, equal dates, zero volumes and too few points
each give ``None`` with a ``note`` that says why.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from inference.errors import InputError

DAYS_PER_MONTH = 30.4375
DAYS_PER_YEAR = 365.25
LEVEL = 0.95
MIN_FIT_POINTS = 3
MAX_LOG_VALUE = 700.0  # exp() of more overflows a float


class SeriesError(InputError):
    """A growth series the analytics cannot use; the message names the visit and the field."""


@dataclass(frozen=True)
class Point:
    id: str
    acquired_on: dt.date
    value: float


@dataclass(frozen=True)
class Fit:
    """Least-squares line ``y = intercept + slope * x`` with what intervals need."""

    slope: float
    intercept: float
    n: int
    x_mean: float
    sxx: float
    residual_sd: float | None  # None with two points (an exact fit)

    def slope_interval(self, level: float = LEVEL) -> tuple[float, float] | None:
        if self.residual_sd is None:
            return None
        half = _t(level, self.n - 2) * self.residual_sd / math.sqrt(self.sxx)
        return self.slope - half, self.slope + half

    def predict(self, x: float, level: float = LEVEL) -> tuple[float, tuple[float, float] | None]:
        y = self.intercept + self.slope * x
        if self.residual_sd is None:
            return y, None
        spread = self.residual_sd * math.sqrt(1 + 1 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        half = _t(level, self.n - 2) * spread
        return y, (y - half, y + half)


def _t(level: float, freedom: int) -> float:
    return float(stats.t.ppf(0.5 + level / 2, freedom))


def fit_line(x: Sequence[float], y: Sequence[float]) -> Fit | None:
    """Ordinary least squares; None when the x values do not vary (equal dates)."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xs)
    if n < 2:
        return None
    x_mean = float(xs.mean())
    sxx = float(((xs - x_mean) ** 2).sum())
    if sxx <= 0:
        return None
    slope = float(((xs - x_mean) * (ys - ys.mean())).sum() / sxx)
    intercept = float(ys.mean() - slope * x_mean)
    residual_sd = None
    if n > 2:
        residuals = ys - (intercept + slope * xs)
        residual_sd = float(math.sqrt((residuals**2).sum() / (n - 2)))
    return Fit(slope, intercept, n, x_mean, sxx, residual_sd)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def changes(points: Sequence[Point]) -> list[dict[str, Any]]:
    """Absolute and relative change and growth rates between consecutive visits."""
    out = []
    for before, after in itertools.pairwise(points):
        days = (after.acquired_on - before.acquired_on).days
        absolute = after.value - before.value
        relative = absolute / before.value if before.value > 0 else None
        row: dict[str, Any] = {
            "from": before.id,
            "to": after.id,
            "days": days,
            "absolute": _round(absolute),
            "relative": _round(relative),
            "rate_per_month": None,
            "rate_percent_per_month": None,
            "note": None,
        }
        if days <= 0:
            row["note"] = "same date: no rate"
        else:
            months = days / DAYS_PER_MONTH
            row["rate_per_month"] = _round(absolute / months)
            if before.value > 0 and after.value > 0:
                row["rate_percent_per_month"] = _round(
                    100 * ((after.value / before.value) ** (1 / months) - 1), 2
                )
            else:
                row["note"] = "a zero volume: no relative rate"
        out.append(row)
    return out


def fit_window(points: Sequence[Point]) -> list[Point]:
    """The current course: the visits after the last zero volume (a log fit cannot use zeros,
    and a tumour that was gone has started a new course), from the nadir (the last smallest
    value) on when that holds at least three visits, else the last three of them."""
    zeros = [i for i, p in enumerate(points) if p.value <= 0]
    course = list(points[zeros[-1] + 1 :] if zeros else points)
    if not course:
        return []
    nadir = min(range(len(course)), key=lambda i: (course[i].value, -i))
    window = course[nadir:]
    return window if len(window) >= MIN_FIT_POINTS else course[-MIN_FIT_POINTS:]


def trend(points: Sequence[Point], *, origin: dt.date) -> dict[str, Any]:
    """Log-linear fit over the current course: doubling (or halving) time with its interval."""
    window = fit_window(points)
    result: dict[str, Any] = {
        "fit_visits": [p.id for p in window],
        "slope_per_day": None,
        "doubling_time_days": None,
        "doubling_time_interval_days": None,
        "halving_time_days": None,
        "halving_time_interval_days": None,
        "note": None,
    }
    fit = _log_fit(window, origin)
    if fit is None:
        result["note"] = _too_few(window)
        return result
    result["slope_per_day"] = _round(fit.slope, 6)
    interval = fit.slope_interval()
    if fit.slope > 0:
        result["doubling_time_days"] = _round(math.log(2) / fit.slope, 1)
        result["doubling_time_interval_days"] = _time_interval(interval, +1)
    elif fit.slope < 0:
        result["halving_time_days"] = _round(math.log(2) / -fit.slope, 1)
        result["halving_time_interval_days"] = _time_interval(interval, -1)
    else:
        result["note"] = "no change in volume: no doubling time"
    if interval is None:
        result["note"] = "two visits: an exact fit, no confidence interval (needs three)"
    elif interval[0] <= 0 <= interval[1]:
        result["note"] = (
            "the 95 % interval of the growth rate includes zero: the upper bound is unbounded"
        )
    return result


def _log_fit(window: Sequence[Point], origin: dt.date) -> Fit | None:
    if len(window) < 2:
        return None
    return fit_line(
        [(p.acquired_on - origin).days for p in window], [math.log(p.value) for p in window]
    )


def _too_few(window: Sequence[Point]) -> str:
    if not window:
        return "no visit with a volume above zero"
    if len(window) == 1:
        return "one visit with a volume above zero: no trend"
    return "the visits share one date: no trend"


def _time_interval(interval: tuple[float, float] | None, sign: int) -> list[float | None] | None:
    """Doubling (sign +1) or halving (-1) time interval from the slope interval; an end where
    the slope interval reaches zero or the other sign is unbounded (None)."""
    if interval is None:
        return None
    low, high = sorted(sign * k for k in interval)
    shortest = math.log(2) / high if high > 0 else None
    longest = math.log(2) / low if low > 0 else None
    return [_round(shortest, 1), _round(longest, 1)]


def diametric_expansion(points: Sequence[Point], *, origin: dt.date) -> dict[str, Any]:
    """Velocity of diametric expansion (mm/year) over all visits: slope of the mean tumour
    diameter (2 V)^(1/3) (V in mm3) against time (Mandonnet 2003, Pallud 2006)."""
    fit = fit_line(
        [(p.acquired_on - origin).days / DAYS_PER_YEAR for p in points],
        [(2 * p.value * 1000.0) ** (1 / 3) for p in points],
    )
    if fit is None:
        return {"mm_per_year": None, "interval_mm_per_year": None, "note": _too_few(points)}
    interval = fit.slope_interval()
    return {
        "mm_per_year": _round(fit.slope, 2),
        "interval_mm_per_year": None if interval is None else [_round(v, 2) for v in interval],
        "note": None if interval is not None else "two visits: no confidence interval",
    }


def forecast(points: Sequence[Point], on: dt.date, *, origin: dt.date) -> dict[str, Any]:
    """The trend's expected value on ``on`` with a 95 % prediction interval (log scale, then
    exponentiated). Needs three visits with a volume above zero on the current course."""
    window = fit_window(points)
    result: dict[str, Any] = {"on": on.isoformat(), "expected": None, "interval": None}
    fit = _log_fit(window, origin)
    if fit is None or fit.residual_sd is None:
        result["note"] = (
            _too_few(window) if fit is None else "two visits: no prediction interval (needs three)"
        )
        return result
    value, interval = fit.predict((on - origin).days)
    assert interval is not None
    if max(abs(value), abs(interval[0]), abs(interval[1])) > MAX_LOG_VALUE:
        result["note"] = "the trend is too steep to extrapolate to that date"
        return result
    result["expected"] = _round(math.exp(value))
    result["interval"] = [_round(math.exp(interval[0])), _round(math.exp(interval[1]))]
    result["fit_visits"] = [p.id for p in window]
    result["note"] = (
        "extrapolated beyond the last visit" if on > window[-1].acquired_on else "within the visits"
    )
    return result


def analyse_series(
    name: str, points: Sequence[Point], *, forecast_on: dt.date | None = None, unit: str = "mL"
) -> dict[str, Any]:
    """Every figure for one series (see the module docstring)."""
    if not points:
        raise SeriesError(f"series {name}: no visits")
    origin = points[0].acquired_on
    result: dict[str, Any] = {
        "name": name,
        "unit": unit,
        "points": [
            {"id": p.id, "acquired_on": p.acquired_on.isoformat(), "value": p.value} for p in points
        ],
        "changes": changes(points),
        "trend": trend(points, origin=origin),
    }
    if unit == "mL":
        result["diametric_expansion"] = diametric_expansion(points, origin=origin)
    if forecast_on is not None:
        result["forecast"] = forecast(points, forecast_on, origin=origin)
    return result


def time_to_progression(
    baseline_on: dt.date, progression_on: dt.date | None
) -> dict[str, float | None]:
    """Days and months from the baseline scan to the date of progression (None: none yet)."""
    if progression_on is None:
        return {"days": None, "months": None}
    days = (progression_on - baseline_on).days
    return {"days": days, "months": round(days / DAYS_PER_MONTH, 1)}


# --- the command line's input -----------------------------------------------------------------

_FIELDS = {"visits", "baseline_visit", "progression_visit", "forecast_on"}
_VISIT_FIELDS = {"id", "acquired_on", "volumes_ml", "sum_of_products_mm2"}


def parse_series(data: Any) -> tuple[dict[str, list[Point]], dict[str, Any]]:
    """Series from the ``growth`` command's JSON: ``{"visits": [{"id", "acquired_on",
    "volumes_ml": {"ET": .., ...}, "sum_of_products_mm2": ..}], "baseline_visit",
    "progression_visit", "forecast_on"}`` (all but ``visits`` optional). Visits in date order;
    equal dates are allowed (two scans of one day), unknown fields are errors."""
    if not isinstance(data, Mapping):
        raise SeriesError("growth input: expected an object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise SeriesError(f"growth input: unknown field {unknown[0]!r} (not in the schema)")
    visits = data.get("visits")
    if not isinstance(visits, list) or not visits:
        raise SeriesError("growth input: field 'visits' must be a non-empty list")
    series: dict[str, list[Point]] = {}
    ids: list[str] = []
    previous: dt.date | None = None
    for index, visit in enumerate(visits):
        where = f"visit {index + 1}"
        if not isinstance(visit, Mapping):
            raise SeriesError(f"{where}: expected an object")
        if isinstance(visit.get("id"), str):
            where = f"visit {visit['id']}"
        unknown = sorted(set(visit) - _VISIT_FIELDS)
        if unknown:
            raise SeriesError(f"{where}: unknown field {unknown[0]!r} (not in the schema)")
        identifier = visit.get("id")
        if not isinstance(identifier, str) or not identifier:
            raise SeriesError(f"{where}: field 'id' must be a non-empty string")
        if identifier in ids:
            raise SeriesError(f"{where}: field 'id' is used by two visits")
        ids.append(identifier)
        on = _date(visit.get("acquired_on"), where, "acquired_on")
        if previous is not None and on < previous:
            raise SeriesError(
                f"{where}: field 'acquired_on' {on} is before the visit listed before it"
            )
        previous = on
        volumes = visit.get("volumes_ml")
        if not isinstance(volumes, Mapping) or not volumes:
            raise SeriesError(f"{where}: field 'volumes_ml' must be an object of volumes")
        values = dict(volumes)
        if "sum_of_products_mm2" in visit:
            values["sum_of_products_mm2"] = visit["sum_of_products_mm2"]
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SeriesError(f"{where}: {name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise SeriesError(f"{where}: {name} must be a finite number >= 0, got {value}")
            series.setdefault(name, []).append(Point(identifier, on, float(value)))
    for name, points in series.items():
        if len(points) != len(visits):
            raise SeriesError(f"series {name}: given at {len(points)} of {len(visits)} visits")
    options = {
        "baseline_visit": _visit_id(data.get("baseline_visit"), ids, "baseline_visit"),
        "progression_visit": _visit_id(data.get("progression_visit"), ids, "progression_visit"),
        "forecast_on": None
        if data.get("forecast_on") is None
        else _date(data["forecast_on"], "growth input", "forecast_on"),
    }
    return series, options


def _date(value: Any, where: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise SeriesError(f"{where}: field {name!r} is {value!r}, not a date YYYY-MM-DD") from None


def _visit_id(value: Any, ids: list[str], name: str) -> str | None:
    if value is None:
        return None
    if value not in ids:
        raise SeriesError(f"growth input: field {name!r} is {value!r}, not one of the visits")
    return str(value)


def analyse(data: Any) -> dict[str, Any]:
    """The ``growth`` command: every series of the input analysed, and time to progression."""
    series, options = parse_series(data)
    by_id = {p.id: p.acquired_on for p in next(iter(series.values()))}
    baseline = options["baseline_visit"] or next(iter(by_id))
    progression = options["progression_visit"]
    return {
        "series": [
            analyse_series(
                name,
                points,
                forecast_on=options["forecast_on"],
                unit="mm2" if name.endswith("_mm2") else "mL",
            )
            for name, points in series.items()
        ],
        "baseline_visit": baseline,
        "progression_visit": progression,
        "time_to_progression": time_to_progression(
            by_id[baseline], None if progression is None else by_id[progression]
        ),
    }
