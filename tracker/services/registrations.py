"""Registering a visit onto the patient's earlier ones: onto the prior visit (for the side-by-side
comparison) and onto the first (the space lesions are tracked in). Each registration is stored
with its transform file and its quality checks.

A registration reads the visits' original scans, not their analyses, so a follow-up is
registered to its prior and its first visit whatever order the visits are analysed in (a
history sent at once, a PACS catching up). A visit that lands before an analysed one (uploaded
late) becomes that one's prior: ``next_visit_refresh`` registers the later visit to it again and
rebuilds its display, as it does for a follow-up whose prior is analysed after it, or whose
prior is deleted (``next_visit_refresh``)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from inference.imaging.io import read_visit
from inference.imaging.register import register_visits, save_transform
from tracker.models import AnalysisRun, Registration, RegistrationRole, Visit
from tracker.services.display import display_build
from tracker.storage import original_folder, run_files, stored

log = logging.getLogger(__name__)


def _raw_images(visit: Visit) -> dict[Any, Any]:
    return read_visit(original_folder(visit)).images


def _scanned(patient: Any) -> Any:
    """The patient's visits whose scans are stored, in date order."""
    return (
        Visit.objects.filter(patient=patient, scans__isnull=False)
        .distinct()
        .order_by("acquired_on")
    )


def registration_create(
    *, fixed: Visit, moving: AnalysisRun, role: RegistrationRole
) -> Registration:
    """Register ``moving``'s visit onto ``fixed`` (T1 post-contrast first) and store it."""
    registration = register_visits(_raw_images(fixed), _raw_images(moving.visit))
    path = run_files(moving).transform_to(fixed)
    save_transform(registration.result.transform, path)
    registered, _ = Registration.objects.update_or_create(
        run=moving,
        role=role,
        defaults={
            "to_visit": fixed,
            "transform": stored(path),
            "quality": registration.as_dict(),
            "passed": registration.ok,
        },
    )
    return registered


def run_register(*, run: AnalysisRun) -> None:
    """Register the run's visit to the visit before it and to the patient's first visit (the
    first visit's registration is the prior's when they are one)."""
    visit = run.visit
    scanned = _scanned(visit.patient)
    prior = scanned.filter(acquired_on__lt=visit.acquired_on).last()
    first = scanned.first()
    if prior is not None:
        registration_create(fixed=prior, moving=run, role=RegistrationRole.PRIOR)
    if first is None or first.acquired_on >= visit.acquired_on:
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


def next_visit_refresh(*, patient: Any, after: dt.date) -> AnalysisRun | None:
    """The first analysed visit after ``after`` brought up to date with the visit now before
    it: registered to it where its prior registration points elsewhere (a visit was uploaded
    between them, or analysed after it) or is gone (the visit before was deleted), and its
    display rebuilt with that prior. Returns that visit's run (None if there is none yet: its
    own stages will find the prior)."""
    scanned = _scanned(patient)
    following = scanned.filter(acquired_on__gt=after).first()
    if following is None:
        return None
    later = AnalysisRun.objects.filter(visit=following, is_current=True).first()
    if later is None:
        return None
    prior_visit = scanned.filter(acquired_on__lt=following.acquired_on).last()
    registered = Registration.objects.filter(run=later, role=RegistrationRole.PRIOR).first()
    if prior_visit is None:
        if registered is not None:
            registered.delete()
    elif registered is None or registered.to_visit_id != prior_visit.pk:
        registration_create(fixed=prior_visit, moving=later, role=RegistrationRole.PRIOR)
    display_build(run=later)
    return later
