"""RANO 2.0 treatment response of a patient's timeline: a pure function of its visits.

Input and output follow the ``assess`` contract in DESIGN.md (``parse_timeline`` checks the input;
``assess`` computes every row; ``Assessment.as_dict`` is the output). Every row is prospective: it
is the assessment as of its visit, from that visit and earlier ones only. Any change of input is
handled by assessing the whole timeline again (it is cheap and has no state).

Sources, cited in each rule below:

- [RANO2] Wen PY, van den Bent M, Youssef G, et al. RANO 2.0: Update to the Response Assessment in
  Neuro-Oncology Criteria for High- and Low-Grade Gliomas in Adults. J Clin Oncol 2023;41:5187-99.
- [RANO2010] Wen PY, Macdonald DR, Reardon DA, et al. Updated response assessment criteria for
  high-grade gliomas. J Clin Oncol 2010;28:1963-72.
- [mRANO] Ellingson BM, Wen PY, Cloughesy TF. Modified criteria for radiographic response
  assessment in glioblastoma clinical trials. Neurotherapeutics 2017;14:307-20.
- [RANO-LGG] van den Bent MJ, Wefel JS, Schiff D, et al. Response assessment in neuro-oncology
  (a report of the RANO group): assessment of outcome in trials of diffuse low-grade gliomas.
  Lancet Oncol 2011;12:583-93.

Rules (the module's functions say which they implement):

- Baseline [RANO2]: newly diagnosed tumours are measured from the first scan after radiotherapy
  (the post-radiotherapy scan, not the post-operative one); recurrent tumours from the scan before
  the new treatment (the first visit given). Scans before the baseline are ``pre_baseline``.
- Measurable [RANO2010, RANO2]: both perpendicular diameters >= 10 mm on the axial plane.
- Target lesions [RANO2]: up to 3 measurable lesions, the largest products at baseline, followed
  by track; every other listed lesion is non-target.
- Burden: sum of target products (``rano2-2d``) or of target enhancing volumes
  (``rano2-volumetric``); for non-enhancing tumours the T2/FLAIR lesions' products or the
  non-enhancing volume [RANO2, RANO-LGG].
- References [RANO2010, RANO2]: response is measured against the baseline; progression against
  the nadir, the smallest burden from the baseline up to the previous visit.
- Thresholds, inclusive [RANO2]: 2-D PR <= -50 %, MR <= -25 % (non-enhancing only, from
  [RANO-LGG]), PD >= +25 %; volumetric PR <= -65 %, MR <= -40 %, PD >= +40 %. Compared exactly:
  each input number is the decimal it is written as; products, sums and ratios are fractions.
- CR [RANO2010, RANO2]: no enhancing disease (measurable or not), no new lesion, off
  corticosteroids (physiological replacement allowed), clinically stable or improved.
- PR/MR [RANO2010, RANO2]: the decrease above, no new lesion, no non-target progression,
  corticosteroids not above the baseline dose, clinically stable or improved.
- Confirmation of response [RANO2010, RANO2]: CR, PR and MR are preliminary until a scan at
  least 4 weeks later shows the same or a better response.
- PD [RANO2]: the increase above over the nadir; a new measurable lesion; unequivocal
  progression of non-target disease; clinical deterioration not attributable to other causes. A
  corticosteroid increase alone is not progression: with stable imaging it is ``indeterminate``.
- Confirmation of progression [RANO2, mRANO]: within 12 weeks after the end of radiotherapy
  (and whenever the trial asks, ``confirm_pd``) imaging progression is preliminary; a scan at least
  4 weeks later confirms it with a further increase of the PD threshold over the preliminary
  scan, a new measurable lesion or clinical deterioration; when that scan is no longer
  progression over the nadir it was pseudoprogression and the row gets its own category.
  Confirmed progression is dated back to the preliminary scan.
- New lesions [RANO2010]: a new non-measurable lesion is not progression by itself but rules out
  CR and PR; when it becomes measurable, progression is dated back to the scan where it first
  appeared.
- T2/FLAIR [RANO2]: no longer assessed for enhancing tumours, except under anti-angiogenic
  therapy, where a non-enhancing volume increase of the volumetric PD threshold over its nadir is
  progression.

Choices where the papers leave room are written where they are made (search "Choice:").
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from inference.errors import InputError

MEASURABLE_MM = Fraction(10)
MAX_TARGETS = 3
CONFIRMATION_DAYS = 28  # "at least 4 weeks" [RANO2010, RANO2]
RADIOTHERAPY_WINDOW_DAYS = 84  # "within 12 weeks after the end of radiotherapy" [RANO2]


class TimelineError(InputError):
    """A timeline the engine cannot assess; the message names the visit and the field."""


class Criteria(enum.StrEnum):
    BIDIMENSIONAL = "rano2-2d"
    VOLUMETRIC = "rano2-volumetric"


class Presentation(enum.StrEnum):
    ENHANCING = "ce"
    NON_ENHANCING = "non-ce"
    MIXED = "mixed"


class Setting(enum.StrEnum):
    NEWLY_DIAGNOSED = "newly_diagnosed"
    RECURRENT = "recurrent"


class Component(enum.StrEnum):
    ENHANCING = "ce"
    NON_ENHANCING = "non-ce"


class NonTarget(enum.StrEnum):
    ABSENT = "absent"
    STABLE = "stable"
    IMPROVED = "improved"
    WORSE = "worse"


class Clinical(enum.StrEnum):
    STABLE = "stable"
    IMPROVED = "improved"
    WORSE = "worse"


class Category(enum.StrEnum):
    PRE_BASELINE = "pre_baseline"
    BASELINE = "baseline"
    CR = "CR"
    PR = "PR"
    MR = "MR"
    SD = "SD"
    PD = "PD"
    INDETERMINATE = "indeterminate"


_RESPONSES = (Category.CR, Category.PR, Category.MR)
_RANK = {Category.CR: 3, Category.PR: 2, Category.MR: 1}


@dataclass(frozen=True)
class Thresholds:
    """Relative change, inclusive: decreases are negative."""

    partial: Fraction
    minor: Fraction
    progression: Fraction


# [RANO2]: 2-D PR >= 50 % decrease, PD >= 25 % increase; MR 25-50 % decrease [RANO-LGG].
# [RANO2]: volumetric PR >= 65 % decrease, PD >= 40 % increase; MR 40-65 % decrease.
THRESHOLDS = {
    Criteria.BIDIMENSIONAL: Thresholds(Fraction("-0.50"), Fraction("-0.25"), Fraction("0.25")),
    Criteria.VOLUMETRIC: Thresholds(Fraction("-0.65"), Fraction("-0.40"), Fraction("0.40")),
}


# --- input -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LesionInput:
    track: str
    component: Component
    longest_mm: Fraction
    perpendicular_mm: Fraction
    et_volume_ml: Fraction | None

    @property
    def product_mm2(self) -> Fraction:
        return self.longest_mm * self.perpendicular_mm

    @property
    def measurable(self) -> bool:
        """Both perpendicular diameters >= 10 mm [RANO2010, RANO2]."""
        return self.longest_mm >= MEASURABLE_MM and self.perpendicular_mm >= MEASURABLE_MM

    @property
    def present(self) -> bool:
        return self.longest_mm > 0 or (self.et_volume_ml is not None and self.et_volume_ml > 0)


@dataclass(frozen=True)
class VisitInput:
    id: str
    acquired_on: dt.date
    lesions: tuple[LesionInput, ...]
    non_enhancing_volume_ml: Fraction | None
    new_lesion: bool | None  # None: no new lesion; else whether it is measurable
    non_target: NonTarget
    clinical_status: Clinical
    steroid_dose_mg: Fraction

    def lesion(self, track: str) -> LesionInput:
        return next(x for x in self.lesions if x.track == track)


@dataclass(frozen=True)
class Timeline:
    criteria: Criteria
    presentation: Presentation
    setting: Setting
    radiotherapy_end_on: dt.date | None
    confirm_pd: bool
    physiologic_steroid_max_mg: Fraction
    antiangiogenic_therapy: bool
    visits: tuple[VisitInput, ...]


_TOP_FIELDS = {
    "criteria",
    "presentation",
    "setting",
    "radiotherapy_end_on",
    "confirm_pd",
    "physiologic_steroid_max_mg",
    "antiangiogenic_therapy",
    "visits",
}
_VISIT_FIELDS = {
    "id",
    "acquired_on",
    "lesions",
    "non_enhancing_volume_ml",
    "new_lesion",
    "non_target",
    "clinical_status",
    "steroid_dose_mg",
}
_VISIT_REQUIRED = {
    "id",
    "acquired_on",
    "lesions",
    "non_target",
    "clinical_status",
    "steroid_dose_mg",
}
_LESION_FIELDS = {"track", "component", "longest_mm", "perpendicular_mm", "et_volume_ml"}
_LESION_REQUIRED = {"track", "component", "longest_mm", "perpendicular_mm"}


class _Reader:
    """Reads one JSON object, naming where a bad value sits (``visit v2, lesion L1``)."""

    def __init__(self, data: Any, where: str, fields: set[str], required: set[str]) -> None:
        if not isinstance(data, Mapping):
            raise TimelineError(f"{where}: expected an object, got {_kind(data)}")
        unknown = sorted(set(data) - fields)
        if unknown:
            raise TimelineError(f"{where}: unknown field {unknown[0]!r} (not in the schema)")
        missing = sorted(required - set(data))
        if missing:
            raise TimelineError(f"{where}: missing field {missing[0]!r}")
        self.data, self.where = data, where

    def fail(self, name: str, problem: str) -> TimelineError:
        return TimelineError(f"{self.where}: field {name!r} {problem}")

    def text(self, name: str) -> str:
        value = self.data[name]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, f"must be a non-empty string, got {_kind(value)}")
        return value

    def choice(self, name: str, kind: type[enum.StrEnum]) -> Any:
        value = self.data.get(name)
        allowed = [member.value for member in kind]  # type: ignore[attr-defined]
        if value not in allowed:
            raise self.fail(name, f"is {value!r}; expected one of {', '.join(allowed)}")
        return kind(value)

    def flag(self, name: str) -> bool:
        value = self.data[name]
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {_kind(value)}")
        return value

    def number(self, name: str, *, optional: bool = False) -> Fraction | None:
        value = self.data.get(name)
        if value is None:
            if optional:
                return None
            raise self.fail(name, "is missing (null); a number is required")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise self.fail(name, f"must be a finite number, got {value}")
        if value < 0:
            raise self.fail(name, f"must not be negative, got {value}")
        # The exact value of the decimal number as written (str gives JSON's shortest repr);
        # every later product, sum and ratio is an exact fraction, so thresholds are exact.
        return Fraction(Decimal(str(value)))

    def date(self, name: str, *, optional: bool = False) -> dt.date | None:
        value = self.data.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"must be a date YYYY-MM-DD, got {_kind(value)}")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.fail(name, f"is {value!r}, not a date YYYY-MM-DD") from None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    return type(value).__name__ if not isinstance(value, int | float) else f"number {value}"


def _required(value: Fraction | None) -> Fraction:
    assert value is not None
    return value


def parse_timeline(data: Any) -> Timeline:
    """The timeline from its JSON form, checked: every problem is a ``TimelineError`` naming the
    visit and the field (unknown fields, unsorted or duplicate dates, negative or missing
    diameters, lesions missing at a visit, unknown categories...)."""
    top = _Reader(data, "timeline", _TOP_FIELDS, _TOP_FIELDS)
    criteria = top.choice("criteria", Criteria)
    presentation = top.choice("presentation", Presentation)
    visits_data = data["visits"]
    if not isinstance(visits_data, list) or not visits_data:
        raise top.fail("visits", "must be a non-empty list of visits")
    visits = tuple(_parse_visit(item, index, criteria) for index, item in enumerate(visits_data))
    _check_order(visits)
    timeline = Timeline(
        criteria=criteria,
        presentation=presentation,
        setting=top.choice("setting", Setting),
        radiotherapy_end_on=top.date("radiotherapy_end_on", optional=True),
        confirm_pd=top.flag("confirm_pd"),
        physiologic_steroid_max_mg=_required(top.number("physiologic_steroid_max_mg")),
        antiangiogenic_therapy=top.flag("antiangiogenic_therapy"),
        visits=visits,
    )
    _check_tracks(timeline)
    if criteria is Criteria.VOLUMETRIC and presentation is not Presentation.ENHANCING:
        for visit in visits[baseline_index(timeline)[0] or 0 :]:
            if visit.non_enhancing_volume_ml is None:
                raise TimelineError(
                    f"visit {visit.id}: field 'non_enhancing_volume_ml' is missing (null); "
                    f"rano2-volumetric needs it for a {presentation.value} tumour"
                )
    return timeline


def _parse_visit(data: Any, index: int, criteria: Criteria) -> VisitInput:
    where = f"visit {index + 1}"
    if isinstance(data, Mapping) and isinstance(data.get("id"), str) and data["id"].strip():
        where = f"visit {data['id']}"
    visit = _Reader(data, where, _VISIT_FIELDS, _VISIT_REQUIRED)
    lesions_data = data["lesions"]
    if not isinstance(lesions_data, list):
        raise visit.fail("lesions", f"must be a list of lesions, got {_kind(lesions_data)}")
    lesions = tuple(_parse_lesion(item, where, criteria) for item in lesions_data)
    tracks = [x.track for x in lesions]
    for track in tracks:
        if tracks.count(track) > 1:
            raise visit.fail("lesions", f"lists track {track!r} twice")
    new = data.get("new_lesion")
    if new is not None:
        new_reader = _Reader(new, f"{where}, new_lesion", {"measurable"}, {"measurable"})
        new_measurable: bool | None = new_reader.flag("measurable")
    else:
        new_measurable = None
    return VisitInput(
        id=visit.text("id"),
        acquired_on=visit.date("acquired_on"),  # type: ignore[arg-type]
        lesions=lesions,
        non_enhancing_volume_ml=visit.number("non_enhancing_volume_ml", optional=True),
        new_lesion=new_measurable,
        non_target=visit.choice("non_target", NonTarget),
        clinical_status=visit.choice("clinical_status", Clinical),
        steroid_dose_mg=_required(visit.number("steroid_dose_mg")),
    )


def _parse_lesion(data: Any, where: str, criteria: Criteria) -> LesionInput:
    name = data.get("track") if isinstance(data, Mapping) else None
    lesion = _Reader(
        data,
        f"{where}, lesion {name}" if isinstance(name, str) else f"{where}, a lesion",
        _LESION_FIELDS,
        _LESION_REQUIRED,
    )
    longest = _required(lesion.number("longest_mm"))
    perpendicular = _required(lesion.number("perpendicular_mm"))
    if perpendicular > longest:
        raise lesion.fail(
            "perpendicular_mm",
            f"({perpendicular}) is larger than longest_mm ({longest}); swap them",
        )
    et_volume = lesion.number("et_volume_ml", optional=True)
    component = lesion.choice("component", Component)
    if criteria is Criteria.VOLUMETRIC and component is Component.ENHANCING and et_volume is None:
        raise lesion.fail("et_volume_ml", "is missing (null); rano2-volumetric needs it")
    return LesionInput(lesion.text("track"), component, longest, perpendicular, et_volume)


def _check_order(visits: tuple[VisitInput, ...]) -> None:
    seen: dict[str, int] = {}
    for visit in visits:
        if visit.id in seen:
            raise TimelineError(f"visit {visit.id}: field 'id' is used by two visits")
        seen[visit.id] = 1
    for earlier, later in itertools.pairwise(visits):
        if later.acquired_on == earlier.acquired_on:
            raise TimelineError(
                f"visit {later.id}: field 'acquired_on' {later.acquired_on} is the same date as "
                f"visit {earlier.id}; one scan per date"
            )
        if later.acquired_on < earlier.acquired_on:
            raise TimelineError(
                f"visit {later.id}: field 'acquired_on' {later.acquired_on} is before visit "
                f"{earlier.id} ({earlier.acquired_on}); list visits in date order"
            )


def _check_tracks(timeline: Timeline) -> None:
    """Every lesion tracked since baseline is listed at every later visit; new lesions come
    through ``new_lesion`` (DESIGN.md)."""
    index = baseline_index(timeline)[0]
    if index is None:
        return
    baseline = timeline.visits[index]
    tracks = {x.track: x.component for x in baseline.lesions}
    for visit in timeline.visits[index + 1 :]:
        listed = {x.track for x in visit.lesions}
        for track in sorted(set(tracks) - listed):
            raise TimelineError(
                f"visit {visit.id}: field 'lesions' lacks {track}, tracked since baseline "
                f"{baseline.id} (list a vanished lesion as 0 x 0)"
            )
        for track in sorted(listed - set(tracks)):
            raise TimelineError(
                f"visit {visit.id}: field 'lesions' lists {track}, which is not at baseline "
                f"{baseline.id}; report new lesions through 'new_lesion'"
            )


# --- assessment ------------------------------------------------------------------------------


@dataclass
class Row:
    id: str
    category: Category
    confirmed: bool | None = None
    reference_visit: str | None = None
    relative_change: Fraction | None = None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        change = self.relative_change
        return {
            "id": self.id,
            "category": self.category.value,
            "confirmed": self.confirmed,
            "reference_visit": self.reference_visit,
            "relative_change": None if change is None else float(round(change, 4)),
            "reasons": list(self.reasons),
        }


@dataclass
class Assessment:
    visits: list[Row]
    progression_visit: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "visits": [row.as_dict() for row in self.visits],
            "progression_visit": self.progression_visit,
        }


def baseline_index(timeline: Timeline) -> tuple[int | None, str]:
    """The baseline visit and why it was chosen [RANO2]: for a newly diagnosed tumour the first
    scan on or after the end of radiotherapy; for a recurrent tumour the first scan given (the
    scan before the new treatment)."""
    visits = timeline.visits
    end = timeline.radiotherapy_end_on
    if timeline.setting is Setting.RECURRENT:
        return 0, "the scan before the new treatment (recurrent tumour, RANO 2.0)"
    if end is None:
        # Choice: without an end date the first visit is taken, and the row says so.
        return 0, (
            "the first visit, because no radiotherapy end date was given (RANO 2.0 takes "
            "the first scan after radiotherapy for a newly diagnosed tumour)"
        )
    for index, visit in enumerate(visits):
        if visit.acquired_on >= end:
            return index, (
                f"the first scan after radiotherapy ended on {end} (newly diagnosed "
                "tumour, RANO 2.0)"
            )
    return None, f"before the end of radiotherapy on {end}: no post-radiotherapy scan yet"


@dataclass(frozen=True)
class _Part:
    """One assessed component of the tumour: its name, targets and how its burden is read."""

    component: Component
    label: str  # "enhancing" / "non-enhancing"
    targets: tuple[str, ...]
    others: tuple[str, ...]  # listed non-target lesions of this component
    by_volume: bool

    def burden(self, visit: VisitInput) -> Fraction:
        if self.by_volume and self.component is Component.NON_ENHANCING:
            return visit.non_enhancing_volume_ml or Fraction(0)
        total = Fraction(0)
        for track in self.targets:
            lesion = visit.lesion(track)
            total += (lesion.et_volume_ml or Fraction(0)) if self.by_volume else lesion.product_mm2
        return total

    def quantity(self, count: int) -> str:
        if self.by_volume and self.component is Component.NON_ENHANCING:
            return "non-enhancing (T2/FLAIR) volume"
        what = "enhancing volume" if self.by_volume else "product"
        if count == 1:
            return f"{self.label} {what}"
        return f"{self.label} sum of {what}s of {count} target lesions"

    def unit(self) -> str:
        return "mL" if self.by_volume else "mm2"

    def disease_present(self, visit: VisitInput) -> bool:
        lesions = [x for x in visit.lesions if x.component is self.component]
        if any(x.present for x in lesions):
            return True
        if self.component is Component.NON_ENHANCING and visit.non_enhancing_volume_ml:
            return visit.non_enhancing_volume_ml > 0
        return False


def _parts(timeline: Timeline, baseline: VisitInput) -> list[_Part]:
    """The assessed components: enhancing disease for enhancing tumours, T2/FLAIR disease for
    non-enhancing ones, both for mixed tumours [RANO2]. Targets: up to 3 measurable lesions of
    the component with the largest products at baseline [RANO2]."""
    wanted = {
        Presentation.ENHANCING: [Component.ENHANCING],
        Presentation.NON_ENHANCING: [Component.NON_ENHANCING],
        Presentation.MIXED: [Component.ENHANCING, Component.NON_ENHANCING],
    }[timeline.presentation]
    by_volume = timeline.criteria is Criteria.VOLUMETRIC
    parts = []
    for component in wanted:
        lesions = [x for x in baseline.lesions if x.component is component]
        measurable = sorted(
            (x for x in lesions if x.measurable), key=lambda x: (-x.product_mm2, x.track)
        )
        targets = tuple(x.track for x in measurable[:MAX_TARGETS])
        others = tuple(x.track for x in lesions if x.track not in targets)
        label = "enhancing" if component is Component.ENHANCING else "non-enhancing"
        parts.append(_Part(component, label, targets, others, by_volume))
    return parts


def _shown(value: Fraction) -> Decimal:
    """An exact fraction as a decimal for display (28 significant digits, then rounded)."""
    return Decimal(value.numerator) / Decimal(value.denominator)


def _number(value: Fraction, unit: str) -> str:
    if unit == "mL":
        return f"{_shown(value):,.1f} mL"
    return f"{_shown(value):,.0f} mm2"


def _percent(change: Fraction) -> str:
    return f"{_shown(change * 100):+.1f} %"


def assess(timeline: Timeline) -> Assessment:
    """Every visit's RANO 2.0 category, as of that visit (see the module docstring)."""
    index, why = baseline_index(timeline)
    rows: list[Row] = []
    stop = len(timeline.visits) if index is None else index
    for visit in timeline.visits[:stop]:
        reason = why if index is None else f"before the baseline {timeline.visits[index].id}, {why}"
        rows.append(Row(visit.id, Category.PRE_BASELINE, reasons=[reason]))
    if index is None:
        return Assessment(rows, None)
    baseline = timeline.visits[index]
    engine = _Engine(timeline, baseline)
    rows.append(_baseline_row(timeline, baseline, engine.parts, why))
    progression_visit = None
    for visit in timeline.visits[index + 1 :]:
        row, dated = engine.follow_up(visit)
        rows.append(row)
        if dated is not None and progression_visit is None:
            progression_visit = dated
    return Assessment(rows, progression_visit)


def _baseline_row(timeline: Timeline, baseline: VisitInput, parts: list[_Part], why: str) -> Row:
    reasons = [f"baseline: {why}"]
    for part in parts:
        burden = part.burden(baseline)
        if part.targets:
            reasons.append(
                f"target {part.label} lesions {', '.join(part.targets)} (measurable: both "
                f"diameters >= 10 mm): {part.quantity(len(part.targets))} "
                f"{_number(burden, part.unit())}"
            )
        else:
            reasons.append(
                f"no measurable {part.label} disease: the response can only be SD or PD (RANO 2.0)"
            )
    if timeline.presentation is Presentation.ENHANCING:
        if timeline.antiangiogenic_therapy:
            if baseline.non_enhancing_volume_ml is None:
                reasons.append(
                    "non-enhancing (T2/FLAIR) volume not given: its progression under "
                    "anti-angiogenic therapy cannot be assessed"
                )
        else:
            reasons.append(
                "T2/FLAIR not assessed for an enhancing tumour without anti-angiogenic "
                "therapy (RANO 2.0)"
            )
    reasons.append(
        f"corticosteroids {_dose(baseline.steroid_dose_mg)}, clinically "
        f"{baseline.clinical_status.value}"
    )
    return Row(baseline.id, Category.BASELINE, reasons=reasons)


def _dose(mg: Fraction) -> str:
    return f"{_shown(mg).normalize():f} mg/day dexamethasone"


def _within_radiotherapy_window(timeline: Timeline, visit: VisitInput) -> bool:
    end = timeline.radiotherapy_end_on
    return end is not None and 0 <= (visit.acquired_on - end).days <= RADIOTHERAPY_WINDOW_DAYS


@dataclass
class _Findings:
    """What a follow-up scan shows, as sentences, before any category is chosen."""

    size: list[str]  # target burden over the nadir (or back after disappearing)
    other: list[str]  # new measurable lesion, non-target, new enhancement, T2/FLAIR
    clinical: bool
    changes: dict[Component, tuple[Fraction | None, Fraction | None]]  # vs baseline, vs nadir

    @property
    def imaging(self) -> list[str]:
        return self.size + self.other

    def all(self) -> list[str]:
        return self.imaging + (["clinical deterioration (clinical status worse)"] * self.clinical)


class _Engine:
    """Walks the visits after the baseline in date order, keeping what RANO needs from the past:
    the nadir, a response or progression awaiting confirmation, a recorded progression."""

    def __init__(self, timeline: Timeline, baseline: VisitInput) -> None:
        self.timeline, self.baseline = timeline, baseline
        self.parts = _parts(timeline, baseline)
        self.primary = _primary_part(self.parts)
        self.thresholds = THRESHOLDS[timeline.criteria]
        self.nadir = {
            p.component: (p.burden(baseline), baseline.id, baseline.acquired_on) for p in self.parts
        }
        self.baseline_burden = {p.component: p.burden(baseline) for p in self.parts}
        self.pending_response: tuple[Category, VisitInput] | None = None
        # (preliminary scan, its burdens, the scan progression will be dated to)
        self.pending_pd: tuple[VisitInput, dict[Component, Fraction], VisitInput] | None = None
        self.progressed: VisitInput | None = None
        self.new_lesion_since: VisitInput | None = None
        self.non_enhancing_nadir: tuple[Fraction, str] | None = None
        if baseline.non_enhancing_volume_ml is not None:
            self.non_enhancing_nadir = (baseline.non_enhancing_volume_ml, baseline.id)

    def follow_up(self, visit: VisitInput) -> tuple[Row, str | None]:
        """One follow-up row, and the date-of-progression visit when this row settles it."""
        row = Row(visit.id, Category.SD)
        dated: str | None = None
        if self.progressed is not None:
            row.category = Category.PD
            row.reasons.append(
                f"progression was recorded on {self.progressed.acquired_on} "
                f"({self.progressed.id}); response is not assessed again against this baseline"
            )
        else:
            findings = self._findings(visit)
            dated_back = self._track_new_lesion(visit)
            settled = self._confirm_pending(visit, findings, row)
            if settled is not None:
                dated = settled or None
            elif findings.imaging or findings.clinical:
                dated = self._progression(visit, findings, row, dated_back)
            else:
                self._no_progression(visit, findings, row)
        self._update_nadirs(visit)
        return row, dated

    def _findings(self, visit: VisitInput) -> _Findings:
        """Progression findings [RANO2]: target burden >= the PD threshold over the nadir, or
        measurable disease back after it had disappeared; a new measurable lesion; unequivocal
        non-target progression; new measurable enhancement in a non-enhancing tumour; T2/FLAIR
        growth under anti-angiogenic therapy; clinical deterioration."""
        size: list[str] = []
        changes: dict[Component, tuple[Fraction | None, Fraction | None]] = {}
        for part in self.parts:
            burden = part.burden(visit)
            base = self.baseline_burden[part.component]
            nadir, nadir_id, nadir_on = self.nadir[part.component]
            vs_base = (burden - base) / base if base > 0 else None
            vs_nadir = (burden - nadir) / nadir if nadir > 0 else None
            changes[part.component] = (vs_base, vs_nadir)
            if not part.targets:
                continue
            measure, unit = part.quantity(len(part.targets)), part.unit()
            if vs_nadir is not None and vs_nadir >= self.thresholds.progression:
                reference = "baseline" if nadir_id == self.baseline.id else "nadir"
                size.append(
                    f"{measure} {_number(burden, unit)} is {_percent(vs_nadir)} over "
                    f"{reference} {_number(nadir, unit)} on {nadir_on} ({nadir_id}; progression "
                    f"at {_percent(self.thresholds.progression)})"
                )
            elif nadir == 0 and any(visit.lesion(t).measurable for t in part.targets):
                size.append(
                    f"{part.label} disease is back after it disappeared on {nadir_on} "
                    f"({nadir_id}): {measure} {_number(burden, unit)}"
                )
        other: list[str] = []
        if visit.new_lesion is True:
            other.append("a new measurable lesion")
        if visit.non_target is NonTarget.WORSE:
            other.append("unequivocal progression of non-target disease")
        if self.timeline.presentation is Presentation.NON_ENHANCING:
            enhancing = [
                x for x in visit.lesions if x.component is Component.ENHANCING and x.measurable
            ]
            if enhancing:
                other.append(
                    f"new measurable enhancement in a non-enhancing tumour ({enhancing[0].track})"
                )
        other.extend(self._non_enhancing_growth(visit))
        return _Findings(size, other, visit.clinical_status is Clinical.WORSE, changes)

    def _non_enhancing_growth(self, visit: VisitInput) -> list[str]:
        """T2/FLAIR is assessed for an enhancing tumour only under anti-angiogenic therapy
        [RANO2]; Choice: a volume increase of the volumetric PD threshold over its nadir."""
        volume, nadir = visit.non_enhancing_volume_ml, self.non_enhancing_nadir
        if (
            self.timeline.presentation is not Presentation.ENHANCING
            or not self.timeline.antiangiogenic_therapy
            or volume is None
            or nadir is None
            or nadir[0] <= 0
        ):
            return []
        change = (volume - nadir[0]) / nadir[0]
        if change < THRESHOLDS[Criteria.VOLUMETRIC].progression:
            return []
        return [
            f"non-enhancing (T2/FLAIR) volume {_number(volume, 'mL')} is {_percent(change)} "
            f"over its nadir {_number(nadir[0], 'mL')} ({nadir[1]}) under anti-angiogenic therapy"
        ]

    def _track_new_lesion(self, visit: VisitInput) -> str | None:
        """A new non-measurable lesion that becomes measurable: progression is dated back to the
        scan where it first appeared [RANO2010]. Returns that visit's id when it applies."""
        if visit.new_lesion is None:
            self.new_lesion_since = None
            return None
        if self.new_lesion_since is None:
            self.new_lesion_since = visit
        if visit.new_lesion is True and self.new_lesion_since is not visit:
            return self.new_lesion_since.id
        return None

    def _confirm_pending(self, visit: VisitInput, findings: _Findings, row: Row) -> str | None:
        """A preliminary progression awaiting its confirmation [RANO2, mRANO]: confirmed, at
        least 4 weeks later, by a further increase of the PD threshold over the preliminary
        scan, a new measurable lesion or clinical deterioration (progression is dated back to
        the preliminary scan); still preliminary while the scan shows progression over the
        nadir; otherwise pseudoprogression. Returns the progression visit id when confirmed,
        '' when the row is settled without one, None when the rest of the rules apply."""
        if self.pending_pd is None:
            return None
        first, before, dated = self.pending_pd
        days = (visit.acquired_on - first.acquired_on).days
        confirmers = []
        for part in self.parts:
            then, now = before[part.component], part.burden(visit)
            if then > 0 and (now - then) / then >= self.thresholds.progression:
                confirmers.append(
                    f"{part.quantity(len(part.targets))} {_number(now, part.unit())} is "
                    f"{_percent((now - then) / then)} over {_number(then, part.unit())} at the "
                    f"preliminary progression ({first.id})"
                )
        confirmers += ["a new measurable lesion"] * (visit.new_lesion is True)
        confirmers += ["clinical deterioration"] * findings.clinical
        if confirmers and days >= CONFIRMATION_DAYS:
            self.pending_pd, self.progressed = None, dated
            row.category, row.confirmed, row.reference_visit = Category.PD, True, first.id
            row.relative_change = _change_vs(self.primary, visit, before)
            row.reasons.append(
                f"{'; '.join(confirmers)}: confirms the progression of {first.id} ({days} days "
                f"later); progression dated {dated.acquired_on}"
                + ("" if dated is first else f" ({dated.id}, where the new lesion first showed)")
            )
            return dated.id
        if findings.imaging or findings.clinical:
            row.category, row.confirmed = Category.PD, False
            row.reference_visit = self.nadir[self.primary.component][1]
            row.relative_change = findings.changes[self.primary.component][1]
            row.reasons.extend(findings.all())
            why = (
                f"only {days} days after {first.id}; confirmation needs >= 4 weeks"
                if days < CONFIRMATION_DAYS
                else f"not a further {_percent(self.thresholds.progression)} over {first.id}"
            )
            row.reasons.append(f"progression of {first.id} still preliminary: {why}")
            return ""
        self.pending_pd = None
        row.reasons.append(
            f"the preliminary progression of {first.id} is not confirmed: no longer progression "
            "over the nadir, so it was pseudoprogression (treatment effect)"
        )
        return None

    def _progression(
        self, visit: VisitInput, findings: _Findings, row: Row, dated_back: str | None
    ) -> str | None:
        """Progression on this scan: preliminary within 12 weeks after radiotherapy or when the
        trial confirms progression [RANO2]; Choice: clinical deterioration makes it definitive
        (RANO 2.0 counts it as progression by itself)."""
        row.category = Category.PD
        if findings.size:
            row.reference_visit = self.nadir[self.primary.component][1]
            row.relative_change = findings.changes[self.primary.component][1]
        self.pending_response = None
        in_window = _within_radiotherapy_window(self.timeline, visit)
        if not findings.clinical and (self.timeline.confirm_pd or in_window):
            because = (
                f"within 12 weeks of the end of radiotherapy on {self.timeline.radiotherapy_end_on}"
                if in_window
                else "the trial asks for progression to be confirmed"
            )
            row.confirmed = False
            row.reasons.append(
                f"{'; '.join(findings.all())}: progression, preliminary because {because}"
            )
            row.reasons.append("a scan >= 4 weeks later confirms it or shows pseudoprogression")
            dated = visit
            if dated_back is not None:
                assert self.new_lesion_since is not None
                dated = self.new_lesion_since
                row.reasons.append(
                    f"the new lesion first seen in {dated_back} is now measurable: once "
                    "confirmed, progression is dated back to that scan"
                )
            burdens = {p.component: p.burden(visit) for p in self.parts}
            self.pending_pd = (visit, burdens, dated)
            return None
        row.reasons.append(f"{'; '.join(findings.all())}: progression")
        self.progressed = visit
        if dated_back is None:
            return visit.id
        row.reasons.append(
            f"the new lesion first seen in {dated_back} is now measurable: progression dated "
            "back to that scan"
        )
        return dated_back

    def _no_progression(self, visit: VisitInput, findings: _Findings, row: Row) -> None:
        """Response from the baseline, its confirmation [RANO2010, RANO2], and corticosteroid
        increases: not progression by themselves; they keep a response from being declared and
        make stable imaging indeterminate [RANO2]."""
        row.reference_visit = self.baseline.id
        row.relative_change = findings.changes[self.primary.component][0]
        category, sentences = _response(
            self.timeline, self.baseline, self.primary, visit, self.thresholds
        )
        row.reasons.extend(sentences)
        if visit.new_lesion is False and not any("new non-measurable" in r for r in sentences):
            row.reasons.append(
                "a new non-measurable lesion: followed; progression if it becomes measurable"
            )
        increased = _steroids_increased(self.timeline, self.baseline, visit)
        if increased:
            row.category = Category.INDETERMINATE
            self.pending_response = None
            row.reasons.append(
                f"{increased}: no response can be declared, and RANO 2.0 does not call a "
                "corticosteroid increase alone progression: indeterminate until the next scan"
            )
            return
        if category not in _RESPONSES:
            row.category = category
            self.pending_response = None
            return
        row.category, row.confirmed = category, False
        pending = self.pending_response
        if pending is None or _RANK[category] < _RANK[pending[0]]:
            row.reasons.append("preliminary until a scan >= 4 weeks later shows it again")
            self.pending_response = (category, visit)
            return
        days = (visit.acquired_on - pending[1].acquired_on).days
        if days < CONFIRMATION_DAYS:
            row.reasons.append(
                f"{days} days after {pending[1].id}: too early to confirm (>= 4 weeks)"
            )
            return
        row.reasons.append(
            f"confirms the {pending[0].value} of {pending[1].id} ({days} days later)"
        )
        if category is pending[0]:
            row.confirmed = True
        else:
            row.reasons.append(f"the {category.value} itself awaits confirmation")
            self.pending_response = (category, visit)

    def _update_nadirs(self, visit: VisitInput) -> None:
        for part in self.parts:
            burden = part.burden(visit)
            if burden < self.nadir[part.component][0]:
                self.nadir[part.component] = (burden, visit.id, visit.acquired_on)
        volume = visit.non_enhancing_volume_ml
        if volume is not None and (
            self.non_enhancing_nadir is None or volume < self.non_enhancing_nadir[0]
        ):
            self.non_enhancing_nadir = (volume, visit.id)


def _primary_part(parts: list[_Part]) -> _Part:
    """The component whose change is reported: the enhancing one of a mixed tumour when it has
    target lesions (Choice: its response decides), else the one with targets."""
    for part in parts:
        if part.targets:
            return part
    return parts[0]


def _change_vs(
    part: _Part, visit: VisitInput, before: Mapping[Component, Fraction]
) -> Fraction | None:
    reference = before[part.component]
    return (part.burden(visit) - reference) / reference if reference > 0 else None


def _steroids_increased(timeline: Timeline, baseline: VisitInput, visit: VisitInput) -> str:
    """A dose above both the baseline dose and the physiological range [RANO2]; '' if not."""
    ceiling = max(baseline.steroid_dose_mg, timeline.physiologic_steroid_max_mg)
    if visit.steroid_dose_mg > ceiling:
        return (
            f"corticosteroids increased to {_dose(visit.steroid_dose_mg)} from "
            f"{_dose(baseline.steroid_dose_mg)} at baseline"
        )
    return ""


def _response(
    timeline: Timeline,
    baseline: VisitInput,
    primary: _Part,
    visit: VisitInput,
    thresholds: Thresholds,
) -> tuple[Category, list[str]]:
    """The response the imaging and clinical data allow when there is no progression
    [RANO2010, RANO2, RANO-LGG]; corticosteroid increases are handled by the caller."""
    if not primary.targets:
        return Category.SD, [
            f"no measurable {primary.label} disease at baseline: stable disease unless it "
            "progresses (RANO 2.0)"
        ]
    burden, base = primary.burden(visit), primary.burden(baseline)
    vs_base = (burden - base) / base if base > 0 else None
    unit = primary.unit()
    if vs_base is None:  # a zero burden at baseline cannot be: targets are measurable
        return Category.SD, [f"{primary.quantity(len(primary.targets))} is zero at baseline"]
    sentences = [
        f"{primary.quantity(len(primary.targets))} {_number(burden, unit)} is "
        f"{_percent(vs_base)} from baseline {_number(base, unit)} ({baseline.id})"
    ]
    gone = not primary.disease_present(visit) and visit.non_target is NonTarget.ABSENT
    if gone and visit.new_lesion is None:
        if visit.steroid_dose_mg <= timeline.physiologic_steroid_max_mg:
            sentences.append(
                f"no {primary.label} disease left, no new lesion, corticosteroids at most "
                f"physiological, clinically {visit.clinical_status.value}: complete response"
            )
            return Category.CR, sentences
        sentences.append(
            f"no {primary.label} disease left, but corticosteroids "
            f"{_dose(visit.steroid_dose_mg)} are above the physiological "
            f"{_dose(timeline.physiologic_steroid_max_mg)}: not a complete response"
        )
    if vs_base <= thresholds.partial:
        category, name, limit = Category.PR, "partial response", thresholds.partial
    elif vs_base <= thresholds.minor and primary.component is Component.NON_ENHANCING:
        category, name, limit = Category.MR, "minor response", thresholds.minor
    else:
        return Category.SD, sentences
    if visit.new_lesion is not None:
        sentences.append(
            f"a decrease of {name} size, but a new non-measurable lesion (followed; "
            "progression if it becomes measurable): stable disease"
        )
        return Category.SD, sentences
    sentences[-1] += f": {name} (at {_percent(limit)} or less)"
    return category, sentences


def assess_json(data: Any) -> dict[str, Any]:
    """``parse_timeline`` then ``assess``, as the command line and the service call it."""
    return assess(parse_timeline(data)).as_dict()
