"""What the service accepts, validated once: the API's request bodies and the pages' forms
use these serializers (the pages never import the API package). Choices come from the models,
and those from ``inference`` where they are clinical or imaging terms; upload field names from
``tracker.services.uploads``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty

from inference.response.rano import NonTarget
from tracker.models import (
    IDH_STATUS,
    OVERRIDE_CATEGORIES,
    TEXT_MAX,
    Category,
    ClinicalStatus,
    Criteria,
    Presentation,
    Review,
    SegmentationVersion,
    Setting,
    TreatmentKind,
)
from tracker.services.uploads import ARCHIVE_FIELD, UPLOAD_FIELDS, scan_date_problem

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


class VisitInput(serializers.Serializer):
    """A visit's upload: its date and clinical details, and the NIfTI files, one field per
    sequence (``UPLOAD_FIELDS``), or one zip (``archive``) of NIfTI files or DICOM series. The
    date may be left out for DICOM, whose headers carry it."""

    acquired_on = serializers.DateField(
        required=False,
        help_text="the scan date; may be left out for a DICOM archive (its StudyDate is used)",
    )
    clinical_status = serializers.ChoiceField(choices=ClinicalStatus.choices, default="stable")
    steroid_dose_mg = SteroidDoseField(default=0)
    non_target = serializers.ChoiceField(choices=NON_TARGET, default="absent")
    notes = StrictCharField(required=False, default="", allow_blank=True, max_length=TEXT_MAX)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields: dict[str, serializers.Field] = super().get_fields()
        for name, (sequence, note) in UPLOAD_FIELDS.items():
            fields[name] = serializers.FileField(
                required=False, help_text=f"{sequence.long_name}, NIfTI{note}"
            )
        fields[ARCHIVE_FIELD] = serializers.FileField(
            required=False, help_text="one zip holding the sequences"
        )
        return fields

    def files(self) -> tuple[dict[str, Any], Any]:
        """The validated upload fields (by field name) and the archive, taken out of
        ``validated_data`` so the rest are the visit's fields."""
        data = self.validated_data
        files = {name: data.pop(name) for name in UPLOAD_FIELDS if name in data}
        return files, data.pop(ARCHIVE_FIELD, None)

    def validate_acquired_on(self, value: dt.date) -> dt.date:
        problem = scan_date_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("acquired_on") is None and attrs.get(ARCHIVE_FIELD) is None:
            raise serializers.ValidationError(
                {"acquired_on": "the scan date is required (only a DICOM archive carries its own)"}
            )
        return attrs


class VisitUpdateInput(serializers.Serializer):
    clinical_status = serializers.ChoiceField(choices=ClinicalStatus.choices, required=False)
    steroid_dose_mg = SteroidDoseField(required=False)
    non_target = serializers.ChoiceField(choices=NON_TARGET, required=False)
    notes = StrictCharField(required=False, allow_blank=True, max_length=TEXT_MAX)


class ReviewInput(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=Review.Action.choices,
        help_text="confirm: agree with the engine's category; override: replace it",
    )
    category = serializers.ChoiceField(
        choices=[c for c in Category.choices if c[0] in OVERRIDE_CATEGORIES],
        required=False,
        default="",
        help_text="the category an override sets (a response category, not the engine's own)",
    )
    reason = StrictCharField(required=False, default="", allow_blank=True, max_length=TEXT_MAX)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["action"] == "override" and (not attrs["category"] or not attrs["reason"].strip()):
            raise serializers.ValidationError("an override needs a category and a reason")
        return attrs


class CorrectionInput(serializers.Serializer):
    """A corrected segmentation: the label map (NIfTI on the grid of the segmentation it
    corrects; BraTS 2023 labels 1 NCR, 2 ED, 3 ET), why, and the run it was drawn on."""

    labels = serializers.FileField(help_text="the corrected label map, NIfTI (.nii or .nii.gz)")
    reason = StrictCharField(
        max_length=TEXT_MAX, min_length=1, help_text="why the segmentation is corrected"
    )
    source = serializers.ChoiceField(
        choices=SegmentationVersion.Source.choices,
        default=SegmentationVersion.Source.UPLOAD,
        help_text="edit: drawn in the viewer; upload: a label map made elsewhere",
    )
    parent = serializers.UUIDField(
        help_text="the run whose segmentation was corrected (results.run of the visit as read)"
    )
