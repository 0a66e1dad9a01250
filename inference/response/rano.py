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
- [RECIST 1.1] Eisenhauer EA, Therasse P, Bogaerts J, et al. New response evaluation criteria in
  solid tumours: revised RECIST guideline (version 1.1). Eur J Cancer 2009;45:228-47 (split and
  merged lesions, not-evaluable time points; RANO leaves both unsaid).

Rules (the module's functions say which they implement):

- Baseline [RANO2]: newly diagnosed tumours are measured from the first scan after radiotherapy
  (the post-radiotherapy scan, not the post-operative one); recurrent tumours from the scan before
  the new treatment (the first visit given). Scans before the baseline are ``pre_baseline``.
- Not evaluable (Choice, after RECIST 1.1): a scan marked ``not_evaluable`` is ``NE``; it is
  never the baseline or a nadir, and confirmation windows run across it.
- Measurable [RANO2010, RANO2]: both perpendicular diameters >= 10 mm on the axial plane.
- Target lesions [RANO2]: up to 3 measurable lesions (2 enhancing + 2 non-enhancing for a mixed
  tumour), the largest products at baseline, followed by track; every other listed lesion is
  non-target. A lesion that splits is summed with its fragments; lesions that merge are measured
  as one [RECIST 1.1]. A lesion that appears later has a track of its own.
- Mixed tumours [RANO2]: the enhancing and non-enhancing components are assessed separately
  and combined: PD in either is PD; CR with SD/MR/PR is that SD/MR/PR; MR/PR with SD is that
  MR/PR; the row reports the component that decided it.
- Burden: sum of target products (``rano2-2d``) or of target enhancing volumes
  (``rano2-volumetric``); for non-enhancing tumours the T2/FLAIR lesions' products or the
  non-enhancing volume [RANO2, RANO-LGG].
- References [RANO2010, RANO2]: response is measured against the baseline; progression against
  the nadir, the smallest burden from the baseline up to the previous visit.
- Thresholds, inclusive [RANO2]: 2-D PR <= -50 %, MR <= -25 % (non-enhancing only, from
  [RANO-LGG]), PD >= +25 %; volumetric PR <= -65 %, MR <= -40 %, PD >= +40 %. Compared exactly:
  each input number is the decimal it is written as; products, sums and ratios are fractions.
- CR [RANO2010, RANO2]: no enhancing disease (measurable or not), no new lesion, off
  corticosteroids (physiological replacement allowed), clinically stable or improved; for a
  non-enhancing tumour no T2/FLAIR disease and no enhancement either [RANO-LGG].
- PR/MR [RANO2010, RANO2]: the decrease above, no new lesion, no non-target progression,
  corticosteroids not above the baseline dose, clinically stable or improved.
- Confirmation of response [RANO2010, RANO2]: CR, PR and MR are preliminary until a scan at
  least 4 weeks later shows a response at least as good after one (a CR confirms an earlier PR;
  a PR after a preliminary CR is a confirmed PR).
- PD [RANO2]: the increase above over the nadir; a new measurable lesion; unequivocal
  progression of non-target disease (flagged, or measured: non-target products +25 % over their
  nadir with a measurable lesion); clinical deterioration not attributable to other causes. A
  corticosteroid increase alone is not progression: with stable imaging it is ``indeterminate``,
  and a progression that follows is dated to the first scan of the increase.
- Confirmation of progression [RANO2, mRANO]: within 12 weeks after the end of chemoradiotherapy
  of a newly diagnosed tumour (and whenever the trial asks, ``confirm_pd``; not otherwise in the
  recurrent setting) imaging progression is preliminary; a scan at least 4 weeks later confirms
  it by any progression criterion (a further increase of the PD threshold over the preliminary
  scan, a new measurable lesion, non-target progression that persists), clinical deterioration
  at any time; when that scan is no longer progression over the nadir it was pseudoprogression.
  Confirmed progression is dated back to the preliminary scan and reported against the nadir.
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

MEASURABLE_MM = Fraction(10)  # both diameters at least this [RANO2]; measure.py uses it too
MAX_TARGETS = 3
MAX_TARGETS_MIXED = 2  # per component: up to 2 enhancing + 2 non-enhancing [RANO2]
CONFIRMATION_DAYS = 28  # "at least 4 weeks" [RANO2010, RANO2]
# The words a row's reasons use when a preliminary progression turned out not to be one.
PSEUDOPROGRESSION = "pseudoprogression (treatment effect)"
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
    NOT_EVALUABLE = "NE"


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
    split_from: str | None = None  # a fragment of this track (measured into it)
    merged_into: str | None = None  # measured as one with this track (listed 0 x 0)

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
    not_evaluable: str | None = None  # why the scan cannot be assessed (category NE)

    def lesion(self, track: str) -> LesionInput:
        return next(x for x in self.lesions if x.track == track)

    def find(self, track: str) -> LesionInput | None:
        return next((x for x in self.lesions if x.track == track), None)


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
    "not_evaluable",
}
_VISIT_REQUIRED = {
    "id",
    "acquired_on",
    "lesions",
    "non_target",
    "clinical_status",
    "steroid_dose_mg",
}
_LESION_FIELDS = {
    "track",
    "component",
    "longest_mm",
    "perpendicular_mm",
    "et_volume_ml",
    "split_from",
    "merged_into",
}
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

    def optional_text(self, name: str) -> str | None:
        return None if self.data.get(name) is None else self.text(name)

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
            if visit.non_enhancing_volume_ml is None and visit.not_evaluable is None:
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
        not_evaluable=visit.optional_text("not_evaluable"),
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
    track = lesion.text("track")
    split_from, merged_into = (
        lesion.optional_text("split_from"),
        lesion.optional_text("merged_into"),
    )
    if track in (split_from, merged_into):
        raise lesion.fail(
            "split_from" if track == split_from else "merged_into",
            f"names the lesion itself ({track})",
        )
    if merged_into is not None and (longest or perpendicular):
        raise lesion.fail(
            "merged_into",
            f"is {merged_into!r}, but the lesion is still measured ({longest} x {perpendicular} "
            f"mm); merged lesions are measured as one, on {merged_into}: list this one as 0 x 0",
        )
    return LesionInput(track, component, longest, perpendicular, et_volume, split_from, merged_into)


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
    """Lesion tracks agree with each other (DESIGN.md): every track seen since the baseline is
    listed at every later evaluable scan (a vanished one as 0 x 0); a track that first shows after
    the baseline is a fragment of a tracked lesion (``split_from``) or a new lesion reported
    through ``new_lesion`` at that scan (a measurable one only when ``new_lesion`` says so); a
    lesion merges only into a lesion listed at the same scan that has not merged itself."""
    index = baseline_index(timeline)[0]
    if index is None:
        return
    baseline = timeline.visits[index]
    for lesion in baseline.lesions:
        for name in ("split_from", "merged_into"):
            if getattr(lesion, name) is not None:
                raise TimelineError(
                    f"visit {baseline.id}, lesion {lesion.track}: field {name!r} is set at the "
                    "baseline, where every lesion is measured as found"
                )
    seen = {x.track: baseline.id for x in baseline.lesions}
    for visit in timeline.visits[index + 1 :]:
        if visit.not_evaluable is not None:
            continue
        listed = {x.track: x for x in visit.lesions}
        for track in sorted(set(seen) - set(listed)):
            raise TimelineError(
                f"visit {visit.id}: field 'lesions' lacks {track}, tracked since {seen[track]} "
                "(list a vanished lesion as 0 x 0)"
            )
        for lesion in visit.lesions:
            where = f"visit {visit.id}, lesion {lesion.track}"
            if lesion.split_from is not None and lesion.split_from not in {*seen, *listed}:
                raise TimelineError(
                    f"{where}: field 'split_from' names {lesion.split_from}, which is not a "
                    "tracked lesion"
                )
            if lesion.merged_into is not None:
                into = listed.get(lesion.merged_into)
                if into is None:
                    raise TimelineError(
                        f"{where}: field 'merged_into' names {lesion.merged_into}, which is not "
                        "listed at this visit"
                    )
                if into.merged_into is not None:
                    raise TimelineError(
                        f"{where}: field 'merged_into' names {into.track}, which has itself "
                        f"merged into {into.merged_into}; name the lesion that is measured"
                    )
            if lesion.track in seen or lesion.split_from is not None:
                continue
            if visit.new_lesion is None:
                raise TimelineError(
                    f"visit {visit.id}: field 'lesions' lists {lesion.track}, which is not "
                    f"tracked before; a lesion that appears after the baseline {baseline.id} "
                    "needs 'new_lesion' at this visit (or 'split_from' for a fragment)"
                )
            if lesion.measurable and visit.new_lesion is False:
                raise TimelineError(
                    f"visit {visit.id}: field 'new_lesion' says the new lesion is not "
                    f"measurable, but {lesion.track} is listed at {_mm(lesion.longest_mm)} x "
                    f"{_mm(lesion.perpendicular_mm)} mm (both >= 10 mm: measurable)"
                )
        for track in listed:
            seen.setdefault(track, visit.id)


# --- assessment ------------------------------------------------------------------------------


@dataclass
class Row:
    id: str
    category: Category
    confirmed: bool | None = None
    reference_visit: str | None = None
    relative_change: Fraction | None = None
    reasons: list[str] = field(default_factory=list)
    # the visit whose preliminary progression this scan did not confirm (pseudoprogression)
    pseudoprogression_of: str | None = None

    def as_dict(self) -> dict[str, Any]:
        change = self.relative_change
        return {
            "id": self.id,
            "category": self.category.value,
            "confirmed": self.confirmed,
            "reference_visit": self.reference_visit,
            "relative_change": None if change is None else float(round(change, 4)),
            "reasons": list(self.reasons),
            "pseudoprogression_of": self.pseudoprogression_of,
        }


@dataclass
class Assessment:
    """Every visit's row, and the timeline's landmarks as the engine sees them: the
    progression (the scan it is dated to), the baseline, and the nadir of the primary
    component's burden (the smallest from the baseline to the latest evaluable scan, the
    earliest on a tie). Charts and reports mark these; they never work them out again."""

    visits: list[Row]
    progression_visit: str | None
    baseline_visit: str | None = None
    nadir_visit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "visits": [row.as_dict() for row in self.visits],
            "progression_visit": self.progression_visit,
            "baseline_visit": self.baseline_visit,
            "nadir_visit": self.nadir_visit,
        }


def baseline_index(timeline: Timeline) -> tuple[int | None, str]:
    """The baseline visit and why it was chosen [RANO2]: for a newly diagnosed tumour the first
    scan on or after the end of radiotherapy; for a recurrent tumour the first scan given (the
    scan before the new treatment). A scan marked not evaluable is never the baseline."""
    visits = timeline.visits
    end = timeline.radiotherapy_end_on
    evaluable = [i for i, v in enumerate(visits) if v.not_evaluable is None]
    if not evaluable:
        return None, "no evaluable scan yet: every scan is marked not evaluable"
    if timeline.setting is Setting.RECURRENT:
        return evaluable[0], "the scan before the new treatment (recurrent tumour, RANO 2.0)"
    if end is None:
        # Choice: without an end date the first visit is taken, and the row says so.
        return evaluable[0], (
            "the first visit, because no radiotherapy end date was given (RANO 2.0 takes "
            "the first scan after radiotherapy for a newly diagnosed tumour)"
        )
    for index in evaluable:
        if visits[index].acquired_on >= end:
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
    others: tuple[str, ...]  # listed non-target lesions of this component at baseline
    by_volume: bool

    def quantity(self, count: int) -> str:
        if self.by_volume and self.component is Component.NON_ENHANCING:
            return "non-enhancing (T2/FLAIR) volume"
        what = "enhancing volume" if self.by_volume else "product"
        if count == 1:
            return f"{self.label} {what}"
        return f"{self.label} sum of {what}s of {count} target lesions"

    def unit(self) -> str:
        return "mL" if self.by_volume else "mm²"


def _parts(timeline: Timeline, baseline: VisitInput) -> list[_Part]:
    """The assessed components: enhancing disease for enhancing tumours, T2/FLAIR disease for
    non-enhancing ones, both for mixed tumours, each assessed on its own and then combined
    [RANO2]. Targets: the measurable lesions of the component with the largest products at
    baseline, up to 3, or up to 2 enhancing and 2 non-enhancing for a mixed tumour [RANO2]."""
    wanted = {
        Presentation.ENHANCING: [Component.ENHANCING],
        Presentation.NON_ENHANCING: [Component.NON_ENHANCING],
        Presentation.MIXED: [Component.ENHANCING, Component.NON_ENHANCING],
    }[timeline.presentation]
    most = MAX_TARGETS_MIXED if timeline.presentation is Presentation.MIXED else MAX_TARGETS
    by_volume = timeline.criteria is Criteria.VOLUMETRIC
    parts = []
    for component in wanted:
        lesions = [x for x in baseline.lesions if x.component is component]
        measurable = sorted(
            (x for x in lesions if x.measurable), key=lambda x: (-x.product_mm2, x.track)
        )
        targets = tuple(x.track for x in measurable[:most])
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
    return f"{_shown(value):,.0f} mm²"


def _mm(value: Fraction) -> str:
    return f"{_shown(value).normalize():f}"


def _percent(change: Fraction) -> str:
    return f"{_shown(change * 100):+.1f} %"


def assess(timeline: Timeline) -> Assessment:
    """Every visit's RANO 2.0 category, as of that visit (see the module docstring)."""
    index, why = baseline_index(timeline)
    rows: list[Row] = []
    engine = None if index is None else _Engine(timeline, timeline.visits[index])
    progression_visit = None
    for position, visit in enumerate(timeline.visits):
        if visit.not_evaluable is not None:
            rows.append(_not_evaluable_row(visit))
        elif engine is None or index is None or position < index:
            reason = (
                why if index is None else f"before the baseline {timeline.visits[index].id}, {why}"
            )
            rows.append(Row(visit.id, Category.PRE_BASELINE, reasons=[reason]))
        elif position == index:
            rows.append(_baseline_row(timeline, visit, engine, why))
        else:
            row, dated = engine.follow_up(visit)
            rows.append(row)
            if dated is not None and progression_visit is None:
                progression_visit = dated
    if engine is None or index is None:
        return Assessment(rows, progression_visit)
    nadir = engine.nadir[engine.primary.component][1]
    return Assessment(rows, progression_visit, timeline.visits[index].id, nadir)


def _not_evaluable_row(visit: VisitInput) -> Row:
    """A scan that cannot be assessed (missing sequence, motion, wrong protocol): category NE,
    never the baseline or a nadir, and the confirmation windows run across it (Choice: RANO 2.0
    names no such category; [RECIST 1.1]'s 'not evaluable' is followed)."""
    return Row(
        visit.id,
        Category.NOT_EVALUABLE,
        reasons=[
            f"not evaluable: {visit.not_evaluable}; this scan is neither a baseline nor a nadir, "
            "and a pending confirmation waits for the next evaluable scan"
        ],
    )


def _baseline_row(timeline: Timeline, baseline: VisitInput, engine: _Engine, why: str) -> Row:
    reasons = [f"baseline: {why}"]
    for part in engine.parts:
        burden = engine.burden(part, baseline)
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
    if timeline.presentation is Presentation.MIXED:
        reasons.append(
            "mixed tumour: the enhancing and the non-enhancing disease are assessed separately "
            "and their categories combined (RANO 2.0)"
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
    if _no_radiotherapy_date(timeline):
        reasons.append(_NO_WINDOW)
    reasons.append(
        f"corticosteroids {_dose(baseline.steroid_dose_mg)}, clinically "
        f"{baseline.clinical_status.value}"
    )
    return Row(baseline.id, Category.BASELINE, reasons=reasons)


_NO_WINDOW = (
    "no radiotherapy end date: the 12-week rule (progression after chemoradiotherapy is "
    "preliminary until confirmed) could not be applied"
)


def _no_radiotherapy_date(timeline: Timeline) -> bool:
    return timeline.setting is Setting.NEWLY_DIAGNOSED and timeline.radiotherapy_end_on is None


def _dose(mg: Fraction) -> str:
    return f"{_shown(mg).normalize():f} mg/day dexamethasone"


def _within_radiotherapy_window(timeline: Timeline, visit: VisitInput) -> bool:
    """The 12-week window after chemoradiotherapy of a newly diagnosed tumour [RANO2]; in the
    recurrent setting (re-irradiation included) progression is not held for confirmation unless
    the trial asks (``confirm_pd``) [RANO2]."""
    end = timeline.radiotherapy_end_on
    return (
        timeline.setting is Setting.NEWLY_DIAGNOSED
        and end is not None
        and 0 <= (visit.acquired_on - end).days <= RADIOTHERAPY_WINDOW_DAYS
    )


@dataclass
class _Findings:
    """What a follow-up scan shows, as sentences, before any category is chosen."""

    size: list[str]  # target burden over the nadir (or back after disappearing)
    other: list[str]  # new measurable lesion, non-target, new enhancement, T2/FLAIR
    clinical: bool
    changes: dict[Component, tuple[Fraction | None, Fraction | None]]  # vs baseline, vs nadir
    grew: list[Component] = field(default_factory=list)  # components whose targets progressed
    notes: list[str] = field(default_factory=list)  # said whatever the category

    @property
    def imaging(self) -> list[str]:
        return self.size + self.other

    def all(self) -> list[str]:
        return self.imaging + (["clinical deterioration (clinical status worse)"] * self.clinical)


@dataclass
class _PendingProgression:
    first: VisitInput  # the preliminary scan
    burdens: dict[Component, Fraction]  # its target burdens
    dated: VisitInput  # the scan progression will be dated to
    component: Component  # the component reported on the rows


_RESPONSE_RANK = {Category.SD: 0, Category.MR: 1, Category.PR: 2, Category.CR: 3}


def _combine(categories: list[Category]) -> tuple[Category, int]:
    """The overall category of a mixed tumour from its components' categories, and the index of
    the component that decides it [RANO2]: PD in either is PD; CR with SD/MR/PR is that SD/MR/PR;
    MR/PR with SD is that MR/PR; SD with SD is SD; Choice: PR with MR (not in the table) is the
    lesser, MR. No progression reaches here (it is found first)."""
    result = 0
    for index in range(1, len(categories)):
        a, b = categories[result], categories[index]
        if a is Category.CR:
            result = index if b is not Category.CR else result
        elif b is Category.CR or b is Category.SD:
            continue
        elif a is Category.SD or _RESPONSE_RANK[b] < _RESPONSE_RANK[a]:
            result = index
    return categories[result], result


class _Engine:
    """Walks the visits after the baseline in date order, keeping what RANO needs from the past:
    the nadirs, the lesion tracks (fragments, new lesions), a response or progression awaiting
    confirmation, a corticosteroid increase, a recorded progression."""

    def __init__(self, timeline: Timeline, baseline: VisitInput) -> None:
        self.timeline, self.baseline = timeline, baseline
        self.parts = _parts(timeline, baseline)
        self.primary = _primary_part(self.parts)
        self.thresholds = THRESHOLDS[timeline.criteria]
        # track -> the track it is measured into: itself, or for a fragment its parent's
        self.root = {x.track: x.track for x in baseline.lesions}
        self.new_since: dict[str, VisitInput] = {}  # new lesion track -> scan it appeared on
        self.nadir = {
            p.component: (self.burden(p, baseline), baseline.id, baseline.acquired_on)
            for p in self.parts
        }
        self.baseline_burden = {p.component: self.burden(p, baseline) for p in self.parts}
        self.non_target_nadir = {
            p.component: (self.non_target(p, baseline), baseline.id) for p in self.parts
        }
        self.responses: list[tuple[Category, VisitInput]] = []  # the current run of responses
        self.cr_confirmed = False
        self.pending_pd: _PendingProgression | None = None
        self.progressed: VisitInput | None = None
        self.flagged_since: VisitInput | None = None  # consecutive 'new_lesion' flags from
        self.steroids_since: VisitInput | None = None  # first scan of a steroid increase
        self.non_enhancing_nadir: tuple[Fraction, str] | None = None
        if baseline.non_enhancing_volume_ml is not None:
            self.non_enhancing_nadir = (baseline.non_enhancing_volume_ml, baseline.id)

    # -- measuring ------------------------------------------------------------------------

    def _measured(self, visit: VisitInput, tracks: set[str]) -> list[LesionInput]:
        """The lesions measured for ``tracks`` at ``visit`` [RECIST 1.1]: each
        track, the fragments it split into (their products summed into it), and for a lesion
        merged into another, that other lesion, once."""
        chosen: dict[str, LesionInput] = {}
        for lesion in visit.lesions:
            if self.root.get(lesion.track, lesion.track) not in tracks:
                continue
            measured = lesion if lesion.merged_into is None else visit.lesion(lesion.merged_into)
            chosen[measured.track] = measured
        return list(chosen.values())

    def burden(self, part: _Part, visit: VisitInput) -> Fraction:
        if part.by_volume and part.component is Component.NON_ENHANCING:
            return visit.non_enhancing_volume_ml or Fraction(0)
        lesions = self._measured(visit, set(part.targets))
        if part.by_volume:
            return sum((x.et_volume_ml or Fraction(0) for x in lesions), Fraction(0))
        return sum((x.product_mm2 for x in lesions), Fraction(0))

    def non_target(self, part: _Part, visit: VisitInput) -> Fraction:
        """Sum of products of the component's non-target lesions (those merged into a target
        are measured with the target)."""
        counted = {x.track for x in self._measured(visit, set(part.targets))}
        lesions = self._measured(visit, set(part.others))
        return sum((x.product_mm2 for x in lesions if x.track not in counted), Fraction(0))

    def _learn_tracks(self, visit: VisitInput) -> None:
        for lesion in visit.lesions:
            if lesion.track in self.root:
                continue
            if lesion.split_from is not None:
                self.root[lesion.track] = self.root.get(lesion.split_from, lesion.split_from)
            else:
                self.root[lesion.track] = lesion.track
                self.new_since[lesion.track] = visit

    def _new_lesions(self, visit: VisitInput) -> list[LesionInput]:
        """Lesions of new tracks (and their fragments) present at this scan."""
        return [
            x
            for x in visit.lesions
            if self.root.get(x.track) in self.new_since and x.present and x.merged_into is None
        ]

    def _new_lesion_present(self, visit: VisitInput) -> bool:
        return visit.new_lesion is not None or bool(self._new_lesions(visit))

    def _disease_present(self, part: _Part, visit: VisitInput) -> bool:
        """Any disease of the component at this scan; for a non-enhancing tumour any
        enhancing disease too (a complete response of a non-enhancing tumour needs no
        enhancement [RANO-LGG, RANO2])."""
        components = {part.component}
        if self.timeline.presentation is Presentation.NON_ENHANCING:
            components.add(Component.ENHANCING)  # a mixed tumour's enhancing part has its own
        if any(x.present for x in visit.lesions if x.component in components):
            return True
        if part.component is Component.NON_ENHANCING and visit.non_enhancing_volume_ml:
            return visit.non_enhancing_volume_ml > 0
        return False

    # -- one follow-up --------------------------------------------------------------------

    def follow_up(self, visit: VisitInput) -> tuple[Row, str | None]:
        """One follow-up row, and the date-of-progression visit when this row settles it."""
        row = Row(visit.id, Category.SD)
        dated: str | None = None
        self._learn_tracks(visit)
        if self.progressed is not None:
            row.category = Category.PD
            row.reasons.append(
                f"progression was recorded on {self.progressed.acquired_on} "
                f"({self.progressed.id}); response is not assessed again against this baseline"
            )
        else:
            findings = self._findings(visit)
            dated_to = self._dated_to(visit)
            settled = self._confirm_pending(visit, findings, row)
            if settled is not None:
                dated = settled or None
            elif findings.imaging or findings.clinical:
                dated = self._progression(visit, findings, row, dated_to)
            else:
                self._no_progression(visit, findings, row)
            row.reasons.extend(findings.notes)
        self._update_nadirs(visit)
        return row, dated

    def _findings(self, visit: VisitInput) -> _Findings:
        """Progression findings [RANO2]: target burden >= the PD threshold over the nadir, or
        measurable disease back after it had disappeared; a new measurable lesion (flagged, or a
        new track now measurable); unequivocal non-target progression (flagged, or measured:
        the non-target products >= +25 % over their nadir with a non-target lesion measurable
        [RANO2]); new measurable enhancement in a non-enhancing tumour; T2/FLAIR growth under
        anti-angiogenic therapy; clinical deterioration."""
        findings = _Findings([], [], visit.clinical_status is Clinical.WORSE, {})
        for part in self.parts:
            burden = self.burden(part, visit)
            base = self.baseline_burden[part.component]
            nadir, nadir_id, nadir_on = self.nadir[part.component]
            vs_base = (burden - base) / base if base > 0 else None
            vs_nadir = (burden - nadir) / nadir if nadir > 0 else None
            findings.changes[part.component] = (vs_base, vs_nadir)
            if not part.targets:
                continue
            measure, unit = part.quantity(len(part.targets)), part.unit()
            if vs_nadir is not None and vs_nadir >= self.thresholds.progression:
                reference = "baseline" if nadir_id == self.baseline.id else "nadir"
                named = "" if nadir_id == nadir_on.isoformat() else f"{nadir_id}; "
                findings.size.append(
                    f"{measure} {_number(burden, unit)} is {_percent(vs_nadir)} over "
                    f"{reference} {_number(nadir, unit)} on {nadir_on} ({named}progression "
                    f"at {_percent(self.thresholds.progression)})"
                )
                findings.grew.append(part.component)
            elif (
                nadir == 0
                and any(x.measurable for x in self._measured(visit, set(part.targets)))
                and not self._complete_response_was_missed(vs_base)
            ):
                findings.size.append(
                    f"{part.label} disease is back after it disappeared on {nadir_on} "
                    f"({nadir_id}): {measure} {_number(burden, unit)}"
                )
                findings.grew.append(part.component)
        new = [x for x in self._new_lesions(visit) if x.measurable]
        if new:
            first = min((self.new_since[self.root[x.track]] for x in new), key=_on)
            findings.other.append(
                f"a new measurable lesion ({new[0].track}, {_mm(new[0].longest_mm)} x "
                f"{_mm(new[0].perpendicular_mm)} mm; first seen {_scan(first)})"
            )
        elif visit.new_lesion is True:
            findings.other.append("a new measurable lesion")
        self._non_target_findings(visit, findings)
        if self.timeline.presentation is Presentation.NON_ENHANCING:
            enhancing = [
                x for x in visit.lesions if x.component is Component.ENHANCING and x.measurable
            ]
            if enhancing:
                findings.other.append(
                    f"new measurable enhancement in a non-enhancing tumour ({enhancing[0].track})"
                )
        findings.other.extend(self._non_enhancing_growth(visit))
        if _no_radiotherapy_date(self.timeline) and (findings.imaging or findings.clinical):
            findings.notes.append(_NO_WINDOW)
        return findings

    def _complete_response_was_missed(self, vs_base: Fraction | None) -> bool:
        """Disease measured again after a preliminary, unconfirmed CR, still a partial response
        from the baseline: the CR missed residual disease and this is a PR, not a return
        [RANO2010, RECIST 1.1: a PR after a preliminary CR confirms a PR]."""
        return (
            not self.cr_confirmed
            and any(c is Category.CR for c, _ in self.responses)
            and vs_base is not None
            and vs_base <= self.thresholds.partial
        )

    def _non_target_findings(self, visit: VisitInput, findings: _Findings) -> None:
        """Non-target disease, flagged by the reader (``non_target``) and measured from the
        listed non-target lesions [RANO2]: progression when their sum of products is >= +25 %
        over its nadir (or back from nothing) and one of them is measurable (>= 10 x 10 mm).
        Where the flag and the measurements disagree, the row says so."""
        flagged = visit.non_target is NonTarget.WORSE
        measured: list[str] = []
        listed = False
        for part in self.parts:
            if not part.others:
                continue
            listed = True
            now, (nadir, nadir_id) = (
                self.non_target(part, visit),
                self.non_target_nadir[part.component],
            )
            others = self._measured(visit, set(part.others))
            if not any(x.measurable for x in others):
                continue
            threshold = THRESHOLDS[Criteria.BIDIMENSIONAL].progression
            if nadir == 0 or (now - nadir) / nadir >= threshold:
                grown = "from nothing" if nadir == 0 else _percent((now - nadir) / nadir)
                measured.append(
                    f"non-target {part.label} disease measured: sum of products "
                    f"{_number(now, 'mm²')}, {grown} over its nadir {_number(nadir, 'mm²')} "
                    f"({nadir_id}), with a measurable non-target lesion"
                )
        if flagged:
            findings.other.append("unequivocal progression of non-target disease")
            if listed and not measured:
                findings.notes.append(
                    "the non-target flag says worse, but the listed non-target lesions do not "
                    "reach +25 % over their nadir with a measurable lesion: the reader's call "
                    "stands"
                )
        elif measured:
            findings.other.extend(measured)
            findings.notes.append(
                f"the non-target flag says {visit.non_target.value}, but the listed non-target "
                "lesions have grown past the threshold: the measurements decide"
            )

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

    def _dated_to(self, visit: VisitInput) -> tuple[VisitInput, str] | None:
        """An earlier scan a progression at this one is dated back to, and why: a new lesion
        that becomes measurable dates progression to the scan where it first appeared
        [RANO2010]; a patient whose corticosteroids had to be raised on stable imaging and who
        then progresses is dated to the first scan of that increase [RANO2, footnote on
        corticosteroids]. The earliest applies."""
        candidates: list[tuple[VisitInput, str]] = []
        if visit.new_lesion is None:
            self.flagged_since = None
        elif self.flagged_since is None:
            self.flagged_since = visit
        if visit.new_lesion is True and self.flagged_since not in (None, visit):
            assert self.flagged_since is not None
            candidates.append((self.flagged_since, _new_lesion_why(self.flagged_since)))
        for lesion in self._new_lesions(visit):
            first = self.new_since[self.root[lesion.track]]
            if lesion.measurable and first is not visit:
                candidates.append((first, _new_lesion_why(first)))
        if self.steroids_since is not None:
            since = self.steroids_since
            candidates.append(
                (
                    since,
                    f"corticosteroids had to be raised on stable imaging since {since.id}: "
                    "progression is dated to the first scan of that increase (RANO 2.0)",
                )
            )
        return min(candidates, key=lambda c: _on(c[0])) if candidates else None

    def _confirm_pending(self, visit: VisitInput, findings: _Findings, row: Row) -> str | None:
        """A preliminary progression awaiting its confirmation [RANO2, mRANO]: confirmed, at
        least 4 weeks later, by any progression criterion: a further increase of the PD
        threshold over the preliminary scan, a new measurable lesion, non-target progression
        that persists or worsens, T2/FLAIR or enhancement progression where it counts; clinical
        deterioration confirms it at any time [RANO2]. Progression is dated back to the
        preliminary scan (or earlier, ``_dated_to``) and reported against the nadir. Still
        preliminary while the scan shows progression over the nadir; otherwise
        pseudoprogression. Returns the progression visit id when confirmed, '' when the row is
        settled without one, None when the rest of the rules apply."""
        pending = self.pending_pd
        if pending is None:
            return None
        first = pending.first
        days = (visit.acquired_on - first.acquired_on).days
        confirmers, deciding = [], pending.component
        for part in self.parts:
            then, now = pending.burdens[part.component], self.burden(part, visit)
            if then > 0 and (now - then) / then >= self.thresholds.progression:
                confirmers.append(
                    f"{part.quantity(len(part.targets))} {_number(now, part.unit())} is "
                    f"{_percent((now - then) / then)} over {_number(then, part.unit())} at the "
                    f"preliminary progression ({first.id})"
                )
                deciding = part.component if len(confirmers) == 1 else deciding
        confirmers += findings.other
        if findings.clinical or (confirmers and days >= CONFIRMATION_DAYS):
            confirmers += ["clinical deterioration"] * findings.clinical
            dated = pending.dated
            self.pending_pd, self.progressed = None, dated
            nadir, nadir_id, _ = self.nadir[deciding]
            row.category, row.confirmed, row.reference_visit = Category.PD, True, nadir_id
            part = next(p for p in self.parts if p.component is deciding)
            now = self.burden(part, visit)
            row.relative_change = (now - nadir) / nadir if nadir > 0 else None
            row.reasons.append(
                f"{'; '.join(confirmers)}: confirms the progression of {first.id} ({days} days "
                f"later); progression dated {dated.acquired_on}"
                + ("" if dated is first else f" ({dated.id})")
            )
            return dated.id
        if findings.imaging:
            row.category, row.confirmed = Category.PD, False
            self._report_progression(row, findings)
            row.reasons.extend(findings.all())
            why = (
                f"only {days} days after {first.id}; confirmation needs >= 4 weeks"
                if days < CONFIRMATION_DAYS
                else f"not a further {_percent(self.thresholds.progression)} over {first.id}"
            )
            row.reasons.append(f"progression of {first.id} still preliminary: {why}")
            return ""
        self.pending_pd = None
        row.pseudoprogression_of = first.id
        row.reasons.append(
            f"the preliminary progression of {first.id} is not confirmed: no longer progression "
            f"over the nadir, so it was {PSEUDOPROGRESSION}"
        )
        return None

    def _report_progression(self, row: Row, findings: _Findings) -> Component:
        """Reference and change of a progression row: the nadir and change of the component
        whose targets grew (the primary one when progression came by other criteria)."""
        component = findings.grew[0] if findings.grew else self.primary.component
        if findings.grew:
            row.reference_visit = self.nadir[component][1]
            row.relative_change = findings.changes[component][1]
        return component

    def _progression(
        self,
        visit: VisitInput,
        findings: _Findings,
        row: Row,
        dated_to: tuple[VisitInput, str] | None,
    ) -> str | None:
        """Progression on this scan: preliminary within 12 weeks after chemoradiotherapy of a
        newly diagnosed tumour, or when the trial confirms progression [RANO2]; clinical
        deterioration makes it definitive (RANO 2.0 counts it as progression by itself)."""
        row.category = Category.PD
        component = self._report_progression(row, findings)
        self.responses = []
        in_window = _within_radiotherapy_window(self.timeline, visit)
        dated = visit if dated_to is None else dated_to[0]
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
            if dated_to is not None:
                row.reasons.append(f"{dated_to[1]}; once confirmed")
            burdens = {p.component: self.burden(p, visit) for p in self.parts}
            self.pending_pd = _PendingProgression(visit, burdens, dated, component)
            return None
        row.reasons.append(f"{'; '.join(findings.all())}: progression")
        self.progressed = dated
        if dated_to is not None:
            row.reasons.append(dated_to[1])
        return dated.id

    def _part_response(self, part: _Part, visit: VisitInput) -> tuple[Category, list[str]]:
        """The response of one component when there is no progression [RANO2010, RANO2,
        RANO-LGG]: CR when its disease is gone (a non-enhancing one with no enhancement
        either), no non-target disease, no new lesion and corticosteroids at most physiological;
        PR and (non-enhancing only) MR by the thresholds from the baseline."""
        if not part.targets:
            return Category.SD, [
                f"no measurable {part.label} disease at baseline: stable disease unless it "
                "progresses (RANO 2.0)"
            ]
        burden, base = self.burden(part, visit), self.baseline_burden[part.component]
        unit = part.unit()
        if base <= 0:  # cannot be: targets are measurable
            return Category.SD, [f"{part.quantity(len(part.targets))} is zero at baseline"]
        vs_base = (burden - base) / base
        sentences = [
            f"{part.quantity(len(part.targets))} {_number(burden, unit)} is "
            f"{_percent(vs_base)} from baseline {_number(base, unit)} ({self.baseline.id})"
        ]
        gone = not self._disease_present(part, visit) and visit.non_target is NonTarget.ABSENT
        enhancing_left = (
            self.timeline.presentation is Presentation.NON_ENHANCING
            and not gone
            and any(x.present for x in visit.lesions if x.component is Component.ENHANCING)
        )
        if enhancing_left and burden == 0:
            sentences.append(
                "no non-enhancing disease left, but enhancing disease is present: not a complete "
                "response (RANO-LGG, RANO 2.0)"
            )
        if gone and not self._new_lesion_present(visit):
            if visit.steroid_dose_mg <= self.timeline.physiologic_steroid_max_mg:
                sentences.append(
                    f"no {part.label} disease left, no new lesion, corticosteroids at most "
                    f"physiological, clinically {visit.clinical_status.value}: complete response"
                )
                return Category.CR, sentences
            sentences.append(
                f"no {part.label} disease left, but corticosteroids "
                f"{_dose(visit.steroid_dose_mg)} are above the physiological "
                f"{_dose(self.timeline.physiologic_steroid_max_mg)}: not a complete response"
            )
        thresholds = self.thresholds
        if vs_base <= thresholds.partial:
            sentences[-1] += f": partial response (at {_percent(thresholds.partial)} or less)"
            return Category.PR, sentences
        if vs_base <= thresholds.minor and part.component is Component.NON_ENHANCING:
            sentences[-1] += f": minor response (at {_percent(thresholds.minor)} or less)"
            return Category.MR, sentences
        return Category.SD, sentences

    def _no_progression(self, visit: VisitInput, findings: _Findings, row: Row) -> None:
        """Response from the baseline, each component on its own and combined for a mixed
        tumour [RANO2]; its confirmation [RANO2010, RANO2]; corticosteroid increases: not
        progression by themselves; they keep a response from being declared and make stable
        imaging indeterminate [RANO2]."""
        answers = [self._part_response(part, visit) for part in self.parts]
        category, deciding = _combine([c for c, _ in answers])
        part = self.parts[deciding]
        for sentences in (s for _, s in answers):
            row.reasons.extend(sentences)
        if len(self.parts) > 1:
            row.reasons.append(
                f"mixed tumour: enhancing {answers[0][0].value}, non-enhancing "
                f"{answers[1][0].value}: {category.value} overall (RANO 2.0 combination)"
            )
        row.reference_visit = self.baseline.id
        row.relative_change = findings.changes[part.component][0]
        if category in (Category.PR, Category.MR) and self._new_lesion_present(visit):
            row.reasons.append(
                f"a decrease of {'partial' if category is Category.PR else 'minor'} response "
                "size, but a new non-measurable lesion (followed; progression if it becomes "
                "measurable): stable disease"
            )
            category = Category.SD
        elif self._new_lesion_present(visit):
            row.reasons.append(
                "a new non-measurable lesion: followed; progression if it becomes measurable"
            )
        increased = _steroids_increased(self.timeline, self.baseline, visit)
        if increased:
            row.category = Category.INDETERMINATE
            self.responses = []
            self.steroids_since = self.steroids_since or visit
            row.reasons.append(
                f"{increased}: no response can be declared, and RANO 2.0 does not call a "
                "corticosteroid increase alone progression: indeterminate until the next scan"
            )
            return
        self.steroids_since = None
        row.category = category
        if category not in _RESPONSES:
            self.responses = []
            return
        self._confirm_response(visit, category, row)

    def _confirm_response(self, visit: VisitInput, category: Category, row: Row) -> None:
        """A response is confirmed by a scan >= 4 weeks after one that showed a response at
        least as good, responses all the way between [RANO2010, RANO2]: CR confirms an earlier
        PR (this CR itself awaits confirmation); a PR after a preliminary CR is a confirmed PR."""
        row.confirmed = False
        earlier = [
            (c, v) for c, v in self.responses if (visit.acquired_on - v.acquired_on).days >= 28
        ]
        self.responses.append((category, visit))
        good = [(c, v) for c, v in earlier if _RANK[c] >= _RANK[category]]
        if good:
            _, since = good[0]
            days = (visit.acquired_on - since.acquired_on).days
            row.confirmed = True
            self.cr_confirmed = self.cr_confirmed or category is Category.CR
            row.reasons.append(
                f"confirms the {category.value}: {since.id} ({days} days earlier) showed "
                f"{'the same response' if good[0][0] is category else 'a better response'}"
            )
            return
        if earlier:
            lesser, since = max(earlier, key=lambda e: (_RANK[e[0]], -_on(e[1]).toordinal()))
            days = (visit.acquired_on - since.acquired_on).days
            row.reasons.append(
                f"confirms the {lesser.value} of {since.id} ({days} days later); the "
                f"{category.value} itself awaits confirmation by a scan >= 4 weeks later"
            )
            return
        if len(self.responses) > 1:
            since = self.responses[0][1]
            days = (visit.acquired_on - since.acquired_on).days
            row.reasons.append(f"{days} days after {since.id}: too early to confirm (>= 4 weeks)")
            return
        row.reasons.append("preliminary until a scan >= 4 weeks later shows it again")

    def _update_nadirs(self, visit: VisitInput) -> None:
        for part in self.parts:
            burden = self.burden(part, visit)
            if burden < self.nadir[part.component][0]:
                self.nadir[part.component] = (burden, visit.id, visit.acquired_on)
            others = self.non_target(part, visit)
            if others < self.non_target_nadir[part.component][0]:
                self.non_target_nadir[part.component] = (others, visit.id)
        volume = visit.non_enhancing_volume_ml
        if volume is not None and (
            self.non_enhancing_nadir is None or volume < self.non_enhancing_nadir[0]
        ):
            self.non_enhancing_nadir = (volume, visit.id)


def _scan(visit: VisitInput) -> str:
    """'on 2024-02-12 (v1)', or the date alone where it is the id."""
    on = visit.acquired_on.isoformat()
    return f"on {on}" if visit.id == on else f"on {on} ({visit.id})"


def _on(visit: VisitInput) -> dt.date:
    return visit.acquired_on


def _new_lesion_why(first: VisitInput) -> str:
    return (
        f"the new lesion first seen in {first.id} is now measurable: progression dated back to "
        "that scan"
    )


def _primary_part(parts: list[_Part]) -> _Part:
    """The component reported when no other decides: the enhancing one of a mixed tumour when it
    has target lesions, else the one with targets."""
    for part in parts:
        if part.targets:
            return part
    return parts[0]


def _steroids_increased(timeline: Timeline, baseline: VisitInput, visit: VisitInput) -> str:
    """A dose above both the baseline dose and the physiological range [RANO2]; '' if not."""
    ceiling = max(baseline.steroid_dose_mg, timeline.physiologic_steroid_max_mg)
    if visit.steroid_dose_mg > ceiling:
        return (
            f"corticosteroids increased to {_dose(visit.steroid_dose_mg)} from "
            f"{_dose(baseline.steroid_dose_mg)} at baseline"
        )
    return ""


def assess_json(data: Any) -> dict[str, Any]:
    """``parse_timeline`` then ``assess``, as the command line and the service call it."""
    return assess(parse_timeline(data)).as_dict()
