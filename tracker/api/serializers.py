"""Input and output shapes of the REST API (documented in the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from tracker import selectors
from tracker.models import (
    TEXT_MAX,
    AnalysisRun,
    Assessment,
    Category,
    ClinicalStatus,
    Lesion,
    LesionKind,
    Patient,
    Registration,
    Review,
    TreatmentEvent,
    TreatmentKind,
    Visit,
)


class StrictCharField(serializers.CharField):
    """A text field that takes only text: DRF's turns a number into its digits, so a client
    sending ``"reason": 0`` got a review with the reason "0"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        value: str = super().to_internal_value(data)
        return value


class DoseField(serializers.DecimalField):
    """A dose in mg: a decimal string ("4.00"), not negative, at most 2 decimals. JSON numbers
    are refused (a binary float can carry digits no one typed), as the schema says: there a
    decimal is a string with a pattern, where a minimum could not apply."""

    default_error_messages = {
        "not_a_string": 'a decimal as a string, e.g. "4.00" (not a JSON number)',
    }

    def __init__(self, *, max_digits: int = 6, **kwargs: Any) -> None:
        super().__init__(max_digits=max_digits, decimal_places=2, min_value=0, **kwargs)

    def run_validation(self, data: Any = empty) -> Any:
        if data == "":  # DRF reads an empty string as null for a nullable decimal
            self.fail("invalid")
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "string",
        "format": "decimal",
        "pattern": r"^\d{1,4}(\.\d{1,2})?$",
        "description": "mg/day dexamethasone-equivalent, 0 to 9999.99, as a decimal string",
        "example": "4.00",
    }
)
class SteroidDoseField(DoseField):
    pass


@extend_schema_field(
    {
        "type": "string",
        "format": "decimal",
        "pattern": r"^\d{1,6}(\.\d{1,2})?$",
        "description": "mg, 0 to 999999.99, as a decimal string",
        "example": "75.00",
        "nullable": True,
    }
)
class TreatmentDoseField(DoseField):
    pass


class PatientInput(serializers.Serializer):
    team = serializers.UUIDField(help_text="code of one of your care teams")
    label = StrictCharField(max_length=100)
    diagnosis = StrictCharField(max_length=200, required=False, default="")
    who_grade = serializers.IntegerField(min_value=1, max_value=4, required=False, allow_null=True)
    idh_status = serializers.ChoiceField(
        choices=["mutant", "wildtype", "unknown", ""], required=False, default=""
    )
    presentation = serializers.ChoiceField(choices=["ce", "non-ce", "mixed"], default="ce")
    setting = serializers.ChoiceField(
        choices=["newly_diagnosed", "recurrent"], default="newly_diagnosed"
    )
    criteria = serializers.ChoiceField(choices=["rano2-2d", "rano2-volumetric"], default="rano2-2d")
    confirm_progression = serializers.BooleanField(default=True)


class PatientOutput(serializers.ModelSerializer):
    team = serializers.CharField(source="team.name")
    team_code = serializers.UUIDField(source="team.code")

    class Meta:
        model = Patient
        fields = [
            "code",
            "label",
            "team",
            "team_code",
            "diagnosis",
            "who_grade",
            "idh_status",
            "presentation",
            "setting",
            "criteria",
            "confirm_progression",
            "created_at",
        ]


class TreatmentInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=TreatmentKind.choices)
    started_on = serializers.DateField()
    ended_on = serializers.DateField(required=False, allow_null=True)
    dose_mg = TreatmentDoseField(max_digits=8, required=False, allow_null=True)
    notes = StrictCharField(required=False, default="", allow_blank=True, max_length=TEXT_MAX)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("ended_on") and attrs["ended_on"] < attrs["started_on"]:
            raise serializers.ValidationError({"ended_on": "before started_on"})
        return attrs


class TreatmentOutput(serializers.ModelSerializer):
    class Meta:
        model = TreatmentEvent
        fields = ["code", "kind", "started_on", "ended_on", "dose_mg", "notes"]


EARLIEST_SCAN = dt.date(1980, 1, 1)


# The review rule as OpenAPI can say it: a confirmation needs nothing more; an override needs a
# category and a reason that is not blank.
REVIEW_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "title": "Confirm",
            "properties": {
                "action": {"type": "string", "enum": ["confirm"]},
                "category": {"type": "string", "enum": list(Category.values)},
                "reason": {"type": "string", "maxLength": TEXT_MAX},
            },
            "required": ["action"],
        },
        {
            "type": "object",
            "title": "Override",
            "properties": {
                "action": {"type": "string", "enum": ["override"]},
                "category": {"type": "string", "enum": list(Category.values)},
                "reason": {"type": "string", "maxLength": TEXT_MAX, "pattern": r"\S"},
            },
            "required": ["action", "category", "reason"],
        },
    ]
}


class VisitInput(serializers.Serializer):
    acquired_on = serializers.DateField()
    t1 = serializers.FileField(required=False)
    t1ce = serializers.FileField(required=False)
    t2 = serializers.FileField(required=False)
    flair = serializers.FileField(required=False)
    archive = serializers.FileField(required=False, help_text="one zip holding the four sequences")
    clinical_status = serializers.ChoiceField(choices=ClinicalStatus.choices, default="stable")
    steroid_dose_mg = SteroidDoseField(default=0)
    non_target = serializers.ChoiceField(
        choices=["absent", "stable", "improved", "worse"], default="absent"
    )
    notes = StrictCharField(required=False, default="", allow_blank=True, max_length=TEXT_MAX)

    def validate_acquired_on(self, value: dt.date) -> dt.date:
        """A scan date a visit can have: not in the future, not before MRI was in use."""
        today = timezone.localdate()
        if value > today:
            raise serializers.ValidationError(f"{value} is in the future (today is {today})")
        if value < EARLIEST_SCAN:
            raise serializers.ValidationError(
                f"{value} is before {EARLIEST_SCAN}: not a date of a digital MRI scan"
            )
        return value


class VisitUpdateInput(serializers.Serializer):
    clinical_status = serializers.ChoiceField(choices=ClinicalStatus.choices, required=False)
    steroid_dose_mg = SteroidDoseField(required=False)
    non_target = serializers.ChoiceField(
        choices=["absent", "stable", "improved", "worse"], required=False
    )
    notes = StrictCharField(required=False, allow_blank=True, max_length=TEXT_MAX)


class ReviewInput(serializers.Serializer):
    action = serializers.ChoiceField(choices=Review.Action.choices)
    category = serializers.ChoiceField(choices=Category.choices, required=False, default="")
    reason = StrictCharField(required=False, default="", allow_blank=True, max_length=TEXT_MAX)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["action"] == "override" and (not attrs["category"] or not attrs["reason"].strip()):
            raise serializers.ValidationError("an override needs a category and a reason")
        return attrs


class RunOutput(serializers.ModelSerializer):
    class Meta:
        model = AnalysisRun
        fields = [
            "code",
            "stage",
            "status",
            "stages",
            "error",
            "attempts",
            "model_name",
            "model_version",
            "weights_sha256",
            "is_current",
            "created_at",
            "finished_at",
        ]


class LesionOutput(serializers.ModelSerializer):
    class Meta:
        model = Lesion
        fields = [
            "kind",
            "number",
            "track",
            "volume_ml",
            "et_volume_ml",
            "longest_mm",
            "perpendicular_mm",
            "product_mm2",
            "measurable",
            "target",
            "centroid_mm",
        ]


class RegistrationOutput(serializers.ModelSerializer):
    to_visit = serializers.UUIDField(source="to_visit.code")

    class Meta:
        model = Registration
        fields = ["role", "to_visit", "passed", "quality"]


class AssessmentOutput(serializers.ModelSerializer):
    reference_visit = serializers.UUIDField(source="reference_visit.code", allow_null=True)

    class Meta:
        model = Assessment
        fields = [
            "category",
            "confirmed",
            "reference_visit",
            "relative_change",
            "reasons",
            "is_progression_visit",
            "criteria",
            "model_versions",
            "assessed_at",
        ]


class ReviewOutput(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username")

    class Meta:
        model = Review
        fields = ["action", "category", "reason", "reviewer", "reviewed_at"]


def sequence_fields(run: AnalysisRun) -> dict[str, Any]:
    """The sequences a run's segmentation used and what they let it measure: a volume that is
    not supported is null in ``volumes_ml`` and ``not_measured`` says why (the same keys as
    ``segmentation.json``)."""
    support = _support(tuple(run.sequences_used))
    return {
        "sequences_used": list(support["sequences_used"]),
        "sequences_missing": list(support["sequences_missing"]),
        "supported_regions": list(run.supported_regions),
        "not_measured": dict(support["not_measured"]),
        "sequences": support["sequences"],
    }


@functools.lru_cache(maxsize=64)
def _support(sequences_used: tuple[str, ...]) -> dict[str, Any]:
    """What a set of sequences supports (there are 15 sets; each is worked out once)."""
    from inference.segment import sequence_support  # noqa: PLC0415

    support = sequence_support(sequences_used)
    return {
        "sequences_used": tuple(s.value for s in support.used),
        "sequences_missing": tuple(s.value for s in support.missing),
        "not_measured": support.not_measured(),
        "sequences": support.summary(),
    }


class VisitOutput(serializers.ModelSerializer):
    patient = serializers.UUIDField(source="patient.code")
    analysis = serializers.SerializerMethodField()
    results = serializers.SerializerMethodField()
    assessment = serializers.SerializerMethodField()
    reviews = ReviewOutput(many=True, read_only=True)

    class Meta:
        model = Visit
        fields = [
            "code",
            "patient",
            "acquired_on",
            "clinical_status",
            "steroid_dose_mg",
            "non_target",
            "notes",
            "analysis",
            "results",
            "assessment",
            "reviews",
        ]

    def get_analysis(self, visit: Visit) -> dict[str, Any] | None:
        run = selectors.latest_run(visit)
        return None if run is None else RunOutput(run).data

    def get_results(self, visit: Visit) -> dict[str, Any] | None:
        run = selectors.current_run(visit)
        if run is None or not hasattr(run, "measurement"):
            return None
        measurement = run.measurement
        return {
            "run": str(run.code),
            "model": {
                "name": run.model_name,
                "version": run.model_version,
                "weights_sha256": run.weights_sha256,
            },
            **sequence_fields(run),
            "volumes_ml": measurement.volumes_ml,
            "volume_intervals_ml": measurement.volume_intervals_ml,
            "sum_of_products_mm2": measurement.sum_of_products_mm2,
            "lesions": LesionOutput(_of_kind(run, LesionKind.CORE), many=True).data,
            "t2_flair_lesions": LesionOutput(_of_kind(run, LesionKind.T2_FLAIR), many=True).data,
            "registrations": RegistrationOutput(run.registrations.all(), many=True).data,
        }

    def get_assessment(self, visit: Visit) -> dict[str, Any] | None:
        current = next((a for a in visit.assessments.all() if a.is_current), None)
        return None if current is None else AssessmentOutput(current).data


# --- fast output -------------------------------------------------------------------------------
# DRF builds a ModelSerializer's fields for every instance; for a 20-visit timeline that is most
# of the response time. The views render with these functions; the serializers above document
# the same shapes in the OpenAPI schema (a test checks they agree).


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    text: str = value.isoformat()
    return text.replace("+00:00", "Z")


def run_dict(run: AnalysisRun) -> dict[str, Any]:
    return {
        "code": str(run.code),
        "stage": run.stage,
        "status": run.status,
        "stages": run.stages,
        "error": run.error,
        "attempts": run.attempts,
        "model_name": run.model_name,
        "model_version": run.model_version,
        "weights_sha256": run.weights_sha256,
        "is_current": run.is_current,
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
    }


def _of_kind(run: Any, kind: str) -> list[Lesion]:
    return [x for x in selectors.related(run, "lesions") if x.kind == kind]


def lesion_dict(lesion: Lesion) -> dict[str, Any]:
    return {
        "kind": lesion.kind,
        "number": lesion.number,
        "track": lesion.track,
        "volume_ml": lesion.volume_ml,
        "et_volume_ml": lesion.et_volume_ml,
        "longest_mm": lesion.longest_mm,
        "perpendicular_mm": lesion.perpendicular_mm,
        "product_mm2": lesion.product_mm2,
        "measurable": lesion.measurable,
        "target": lesion.target,
        "centroid_mm": lesion.centroid_mm,
    }


def visit_dict(visit: Visit) -> dict[str, Any]:
    run = selectors.current_run(visit)
    latest = selectors.latest_run(visit)
    results = None
    if run is not None and hasattr(run, "measurement"):
        measurement = run.measurement
        results = {
            "run": str(run.code),
            "model": {
                "name": run.model_name,
                "version": run.model_version,
                "weights_sha256": run.weights_sha256,
            },
            **sequence_fields(run),
            "volumes_ml": measurement.volumes_ml,
            "volume_intervals_ml": measurement.volume_intervals_ml,
            "sum_of_products_mm2": measurement.sum_of_products_mm2,
            "lesions": [lesion_dict(x) for x in _of_kind(run, LesionKind.CORE)],
            "t2_flair_lesions": [lesion_dict(x) for x in _of_kind(run, LesionKind.T2_FLAIR)],
            "registrations": [
                {
                    "role": r.role,
                    "to_visit": str(r.to_visit.code),
                    "passed": r.passed,
                    "quality": r.quality,
                }
                for r in selectors.related(run, "registrations")
            ],
        }
    current = next((a for a in selectors.related(visit, "assessments") if a.is_current), None)
    assessment = None
    if current is not None:
        assessment = {
            "category": current.category,
            "confirmed": current.confirmed,
            "reference_visit": str(current.reference_visit.code)
            if current.reference_visit
            else None,
            "relative_change": current.relative_change,
            "reasons": current.reasons,
            "is_progression_visit": current.is_progression_visit,
            "criteria": current.criteria,
            "model_versions": current.model_versions,
            "assessed_at": _iso(current.assessed_at),
        }
    return {
        "code": str(visit.code),
        "patient": str(visit.patient.code),
        "acquired_on": visit.acquired_on.isoformat(),
        "clinical_status": visit.clinical_status,
        "steroid_dose_mg": f"{visit.steroid_dose_mg:.2f}",
        "non_target": visit.non_target,
        "notes": visit.notes,
        "analysis": None if latest is None else run_dict(latest),
        "results": results,
        "assessment": assessment,
        "reviews": [
            {
                "action": r.action,
                "category": r.category,
                "reason": r.reason,
                "reviewer": r.reviewer.username,
                "reviewed_at": _iso(r.reviewed_at),
            }
            for r in selectors.related(visit, "reviews")
        ],
    }


def timeline_dict(patient: Patient) -> dict[str, Any]:
    """The patient's whole timeline as ``GET /api/patients/{id}/timeline/`` returns it; the pages
    and every export are built from the same dict."""
    timeline = selectors.patient_timeline(patient)
    visits = timeline["visits"]
    return {
        "patient": PatientOutput(patient).data,
        "treatments": TreatmentOutput(timeline["treatments"], many=True).data,
        "visits": [visit_dict(v) for v in visits],
        "progression_visit": next(
            (
                str(v.code)
                for v in visits
                for a in selectors.related(v, "assessments")
                if a.is_progression_visit
            ),
            None,
        ),
    }
