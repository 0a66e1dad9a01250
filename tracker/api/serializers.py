"""Input and output shapes of the REST API (documented in the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tracker import selectors
from tracker.models import (
    OVERRIDE_CATEGORIES,
    TEXT_MAX,
    AnalysisRun,
    Assessment,
    Lesion,
    LesionKind,
    Patient,
    Registration,
    Review,
    TreatmentEvent,
    Visit,
)
from tracker.timeline import (
    lesions_of_kind,
    registration_problems,
    segmentation_dict,
    sequence_fields,
)


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


class TreatmentOutput(serializers.ModelSerializer):
    class Meta:
        model = TreatmentEvent
        fields = ["code", "kind", "started_on", "ended_on", "dose_mg", "notes"]


# The review rule as OpenAPI can say it: a confirmation needs nothing more; an override needs a
# category and a reason that is not blank.
REVIEW_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "title": "Confirm",
            "properties": {
                "action": {"type": "string", "enum": ["confirm"]},
                "category": {"type": "string", "enum": list(OVERRIDE_CATEGORIES)},
                "reason": {"type": "string", "maxLength": TEXT_MAX},
            },
            "required": ["action"],
        },
        {
            "type": "object",
            "title": "Override",
            "properties": {
                "action": {"type": "string", "enum": ["override"]},
                "category": {"type": "string", "enum": list(OVERRIDE_CATEGORIES)},
                "reason": {"type": "string", "maxLength": TEXT_MAX, "pattern": r"\S"},
            },
            "required": ["action", "category", "reason"],
        },
    ]
}


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
    problems = serializers.SerializerMethodField(
        help_text="why the registration failed its quality check ([] when it passed)"
    )

    class Meta:
        model = Registration
        fields = ["role", "to_visit", "passed", "quality", "problems"]

    def get_problems(self, registration: Registration) -> list[str]:
        return registration_problems(registration)


class AssessmentOutput(serializers.ModelSerializer):
    reference_visit = serializers.UUIDField(source="reference_visit.code", allow_null=True)
    pseudoprogression_of = serializers.UUIDField(
        source="pseudoprogression_of.code", allow_null=True
    )

    class Meta:
        model = Assessment
        fields = [
            "category",
            "confirmed",
            "reference_visit",
            "relative_change",
            "reasons",
            "is_progression_visit",
            "is_nadir_visit",
            "pseudoprogression_of",
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
            "segmentation": segmentation_dict(run),
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
