"""Registering a visit onto the patient's earlier ones: onto the prior visit (for the side-by-side
comparison) and onto the first (the space lesions are tracked in). Each registration is stored
with its transform file and its quality checks."""

from __future__ import annotations

from typing import Any

from inference.imaging.io import read_visit
from inference.imaging.register import register_visits, save_transform
from tracker.models import AnalysisRun, Registration, RegistrationRole
from tracker.storage import original_folder, run_files, stored


def _raw_images(run: AnalysisRun) -> dict[Any, Any]:
    return read_visit(original_folder(run.visit)).images


def registration_create(
    *, fixed: AnalysisRun, moving: AnalysisRun, role: RegistrationRole
) -> Registration:
    """Register ``moving``'s visit onto ``fixed``'s (T1 post-contrast first) and store it."""
    registration = register_visits(_raw_images(fixed), _raw_images(moving))
    path = run_files(moving).transform_to(fixed.visit)
    save_transform(registration.result.transform, path)
    registered, _ = Registration.objects.update_or_create(
        run=moving,
        role=role,
        defaults={
            "to_visit": fixed.visit,
            "transform": stored(path),
            "quality": registration.as_dict(),
            "passed": registration.ok,
        },
    )
    return registered


def run_register(*, run: AnalysisRun) -> None:
    """Register the run's visit to the prior visit and to the patient's first visit, where they
    have been analysed (the first visit's registration is the prior's when they are one)."""
    visit = run.visit
    analysed = AnalysisRun.objects.select_related("visit").filter(
        visit__patient=visit.patient, is_current=True
    )
    prior = (
        analysed.filter(visit__acquired_on__lt=visit.acquired_on)
        .order_by("-visit__acquired_on")
        .first()
    )
    first = analysed.order_by("visit__acquired_on").first()
    if prior is not None:
        registration_create(fixed=prior, moving=run, role=RegistrationRole.PRIOR)
    if first is None or first.visit.acquired_on >= visit.acquired_on:
        return
    if prior is not None and prior.pk == first.pk:
        same = Registration.objects.get(run=run, role=RegistrationRole.PRIOR)
        Registration.objects.update_or_create(
            run=run,
            role=RegistrationRole.BASELINE,
            defaults={
                "to_visit": same.to_visit,
                "transform": same.transform,
                "quality": same.quality,
                "passed": same.passed,
            },
        )
    else:
        registration_create(fixed=first, moving=run, role=RegistrationRole.BASELINE)
