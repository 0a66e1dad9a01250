"""One vocabulary (issue 16, item 3): the service's choices are the engine's terms, and the API
offers exactly the choices the models store."""

from __future__ import annotations

import enum
from typing import Any

import pytest
from django.db import models as django_models

from inference import response
from tracker import models
from tracker.api import serializers as s


@pytest.mark.parametrize(
    ("choices", "terms"),
    [
        (models.Criteria, response.Criteria),
        (models.Presentation, response.Presentation),
        (models.Setting, response.Setting),
        (models.ClinicalStatus, response.Clinical),
        (models.Category, response.Category),
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
        (s.PatientInput, "presentation", models.Patient, "presentation"),
        (s.PatientInput, "setting", models.Patient, "setting"),
        (s.PatientInput, "criteria", models.Patient, "criteria"),
        (s.PatientInput, "idh_status", models.Patient, "idh_status"),
        (s.VisitInput, "clinical_status", models.Visit, "clinical_status"),
        (s.VisitInput, "non_target", models.Visit, "non_target"),
        (s.VisitUpdateInput, "non_target", models.Visit, "non_target"),
    ],
)
def test_the_api_offers_the_choices_the_models_store(
    serializer: Any, name: str, model: Any, field_name: str
) -> None:
    offered = set(serializer().fields[name].choices) - {""}
    stored = {value for value, _ in model._meta.get_field(field_name).choices}
    assert offered == stored
