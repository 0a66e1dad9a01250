"""One vocabulary (issue 16, item 3): the service's choices are the engine's terms, and the API
offers exactly the choices the models store."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from django.db import models as django_models

from inference.response import rano as response
from inference.response import timeline
from tracker import inputs, models


@pytest.mark.parametrize(
    ("choices", "terms"),
    [
        (models.Criteria, response.Criteria),
        (models.Presentation, response.Presentation),
        (models.Setting, response.Setting),
        (models.ClinicalStatus, response.Clinical),
        (models.Category, response.Category),
        (models.LesionKind, timeline.LesionKind),
    ],
)
def test_the_models_choices_are_the_engines_terms(
    choices: type[django_models.TextChoices], terms: type[enum.StrEnum]
) -> None:
    assert list(choices.values) == [term.value for term in terms]


def test_the_stored_sequences_are_inferences() -> None:
    from inference.labels import Sequence

    assert list(models.SequenceName.choices) == [(s.value, s.long_name) for s in Sequence]


def test_non_target_status_is_the_engines() -> None:
    field: Any = models.Visit._meta.get_field("non_target")
    assert [value for value, _ in field.choices] == [term.value for term in response.NonTarget]


@pytest.mark.parametrize(
    ("serializer", "name", "model", "field_name"),
    [
        (inputs.PatientInput, "presentation", models.Patient, "presentation"),
        (inputs.PatientInput, "setting", models.Patient, "setting"),
        (inputs.PatientInput, "criteria", models.Patient, "criteria"),
        (inputs.PatientInput, "idh_status", models.Patient, "idh_status"),
        (inputs.VisitInput, "clinical_status", models.Visit, "clinical_status"),
        (inputs.VisitInput, "non_target", models.Visit, "non_target"),
        (inputs.VisitUpdateInput, "non_target", models.Visit, "non_target"),
    ],
)
def test_the_api_offers_the_choices_the_models_store(
    serializer: Any, name: str, model: Any, field_name: str
) -> None:
    offered = set(serializer().fields[name].choices) - {""}
    stored = {value for value, _ in model._meta.get_field(field_name).choices}
    assert offered == stored


def test_the_upload_fields_are_the_sequence_names() -> None:
    """One field per sequence, named as ``inference.labels.Sequence`` (``t1ce``, the former name
    of ``t1c``, is still accepted: tested in test_api)."""
    from inference.labels import Sequence
    from tracker.services.uploads import FIELDS

    assert {sequence.value: sequence for sequence in Sequence} == FIELDS
    fields = inputs.VisitInput().fields.items()
    files = {name for name, field in fields if type(field).__name__ == "FileField"}
    assert files == {*FIELDS, "t1ce", "archive"}
