"""Input and output shapes of the REST API (documented in the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from inference.response import NonTarget
from tracker import selectors
from tracker.models import (
    IDH_STATUS,
    TEXT_MAX,
    AnalysisRun,
    Assessment,
    Category,
    ClinicalStatus,
    Criteria,
    Lesion,
    LesionKind,
    Patient,
    Presentation,
    Registration,
    Review,
    Setting,
    TreatmentEvent,
    TreatmentKind,
    Visit,
)
from tracker.timeline import lesions_of_kind, sequence_fields

NON_TARGET = [value.value for value in NonTarget]


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
        choices=[*(value for value, _ in IDH_STATUS), ""], required=False, default=""
    )
    presentation = serializers.ChoiceField(
        choices=Presentation.values, default=Presentation.ENHANCING
    )
    setting = serializers.ChoiceField(choices=Setting.values, default=Setting.NEWLY_DIAGNOSED)
    criteria = serializers.ChoiceField(choices=Criteria.values, default=Criteria.BIDIMENSIONAL)
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
    non_target = serializers.ChoiceField(choices=NON_TARGET, default="absent")
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
    non_target = serializers.ChoiceField(choices=NON_TARGET, required=False)
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
            "lesions": LesionOutput(lesions_of_kind(run, LesionKind.CORE), many=True).data,
            "t2_flair_lesions": LesionOutput(
                lesions_of_kind(run, LesionKind.T2_FLAIR), many=True
            ).data,
            "registrations": RegistrationOutput(run.registrations.all(), many=True).data,
        }

    def get_assessment(self, visit: Visit) -> dict[str, Any] | None:
        current = next((a for a in visit.assessments.all() if a.is_current), None)
        return None if current is None else AssessmentOutput(current).data
