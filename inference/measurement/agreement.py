"""Agreement between a model's segmentations and the clinicians' corrections of them: the
evidence a team gathers about a model on its own patients.

Each corrected visit is one case: per region the Dice of the model's segmentation against the
corrected one and the two volumes. Per model version the cases give the mean Dice and the mean
volume difference (corrected minus model) with 95 % t-intervals (the visits are the sampling
unit; an interval needs two of them), how often the correction changed the visit's RANO category
(Wilson 95 % interval), and the visits that disagree most.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

REGIONS = ("ET", "TC", "WT")
WORST_SHOWN = 10


@dataclass(frozen=True)
class Case:
    """One corrected visit: what the model gave and what the clinician made of it."""

    model: str  # "name version"
    visit: str
    label: str  # the patient's pseudonym and the visit's date, to find it
    dice: Mapping[str, float]
    model_ml: Mapping[str, float]
    corrected_ml: Mapping[str, float]
    category_before: str | None = None
    category_after: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def mean_interval(
    values: Sequence[float], *, bounds: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Mean with a 95 % t-interval (``low``/``high`` None below two values).

    >>> mean_interval([0.8, 0.9, 1.0])["mean"]
    0.9
    """
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "low": None, "high": None}
    array = np.asarray(values, dtype=float)
    mean = float(array.mean())
    if n < 2:
        return {"n": n, "mean": round(mean, 4), "low": None, "high": None}
    sem = float(array.std(ddof=1)) / math.sqrt(n)
    if sem == 0:
        low = high = mean
    else:
        low, high = (float(v) for v in stats.t.interval(0.95, n - 1, loc=mean, scale=sem))
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"n": n, "mean": round(mean, 4), "low": round(low, 4), "high": round(high, 4)}


def proportion_interval(count: int, n: int) -> dict[str, Any]:
    """A proportion with its Wilson 95 % interval.

    >>> proportion_interval(0, 0)["fraction"] is None
    True
    """
    if n == 0:
        return {"count": 0, "n": 0, "fraction": None, "low": None, "high": None}
    interval = stats.binomtest(count, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {
        "count": count,
        "n": n,
        "fraction": round(count / n, 4),
        "low": round(float(interval.low), 4),
        "high": round(float(interval.high), 4),
    }


def summarise(cases: Iterable[Case]) -> list[dict[str, Any]]:
    """Per model version (most cases first): Dice and volume difference per region, category
    changes, and the worst visits (the lowest Dice of any region first)."""
    by_model: dict[str, list[Case]] = {}
    for case in cases:
        by_model.setdefault(case.model, []).append(case)
    out = []
    for model, group in sorted(by_model.items(), key=lambda item: (-len(item[1]), item[0])):
        regions = {}
        for region in REGIONS:
            with_region = [c for c in group if region in c.dice]
            regions[region] = {
                "dice": mean_interval([c.dice[region] for c in with_region], bounds=(0.0, 1.0)),
                "volume_difference_ml": mean_interval(
                    [c.corrected_ml[region] - c.model_ml[region] for c in with_region]
                ),
            }
        assessed = [c for c in group if c.category_before and c.category_after]
        changed = sum(1 for c in assessed if c.category_before != c.category_after)
        worst = sorted(group, key=lambda c: (min(c.dice.values(), default=1.0), c.label))
        out.append(
            {
                "model": model,
                "visits": len(group),
                "regions": regions,
                "category_changed": proportion_interval(changed, len(assessed)),
                "worst": [
                    {
                        "visit": c.visit,
                        "label": c.label,
                        "dice": dict(c.dice),
                        "category_before": c.category_before,
                        "category_after": c.category_after,
                        **c.details,
                    }
                    for c in worst[:WORST_SHOWN]
                ],
            }
        )
    return out
