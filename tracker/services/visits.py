"""Writing patients, treatments and visits. Every write that changes what an assessment depends on
queues the work that must follow (after the transaction commits)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.files import File
from django.db import IntegrityError, transaction

from tracker.models import (
    OVERRIDE_CATEGORIES,
    AuditEvent,
    CareTeam,
    Patient,
    Review,
    Scan,
    SequenceName,
    TreatmentEvent,
    Visit,
)
from tracker.services.enqueue import next_visit_refresh_enqueue, patient_reassess
from tracker.services.runs import run_create
from tracker.services.uploads import StagedVisit, scan_date_resolve, stage_upload
from tracker.storage import original_folder, stored


class ConflictError(Exception):
    """A request that contradicts what is stored (a second visit on one day, say)."""


def audit(
    *, user: Any, action: str, patient: Patient | None, code: str = "", **detail: Any
) -> None:
    AuditEvent.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None,
        action=action,
        patient=patient,
        object_code=code,
        detail=detail,
    )


def patient_create(*, team: CareTeam, label: str, by: Any = None, **fields: Any) -> Patient:
    patient = Patient.objects.create(team=team, label=label, **fields)
    audit(user=by, action="create_patient", patient=patient, code=str(patient.code))
    return patient


def treatment_create(
    *,
    patient: Patient,
    kind: str,
    started_on: dt.date,
    ended_on: dt.date | None = None,
    dose_mg: Decimal | None = None,
    notes: str = "",
    by: Any = None,
) -> TreatmentEvent:
    """A treatment changes the assessment (radiotherapy dates, anti-angiogenic therapy):
    the patient's timeline is assessed again."""
    with transaction.atomic():
        event = TreatmentEvent.objects.create(
            patient=patient,
            kind=kind,
            started_on=started_on,
            ended_on=ended_on,
            dose_mg=dose_mg,
            notes=notes,
        )
        audit(user=by, action="create_treatment", patient=patient, code=str(event.code))
        patient_reassess(patient=patient)
    return event


def _store_originals(visit: Visit, staged: StagedVisit, written: list[Path]) -> None:
    """Move the staged files to the visit's folder of originals, read-only; each path is added
    to ``written`` as soon as it is there, so a failure part-way can remove them all."""
    folder = original_folder(visit)
    folder.mkdir(parents=True, exist_ok=True)
    for sequence, source in staged.files.items():
        suffix = ".nii.gz" if source.name.endswith(".gz") else ".nii"
        target = folder / f"{sequence.value}{suffix}"
        if target.exists():
            raise ConflictError(f"visit {visit.code} already has {sequence.long_name}")
        written.append(target)
        shutil.move(str(source), target)
        os.chmod(target, 0o444)
        Scan.objects.create(
            visit=visit,
            sequence=SequenceName(sequence.value),
            file=stored(target),
            sha256=staged.sha256[sequence],
            size_bytes=target.stat().st_size,
            geometry=staged.geometry.get(sequence, {}),
        )


def visit_create(
    *,
    patient: Patient,
    acquired_on: dt.date | None = None,
    files: dict[str, File[Any]],
    archive: File[Any] | None = None,
    clinical_status: str = "stable",
    steroid_dose_mg: Decimal = Decimal(0),
    non_target: str = "absent",
    notes: str = "",
    by: Any = None,
) -> Visit:
    """Validate the upload (``UploadError`` names each bad file), store the originals and queue
    the analysis. Either everything is stored or nothing is. Without ``acquired_on`` the
    date is the DICOM headers' (a DICOM archive); with it, it must agree with them."""
    if acquired_on is not None and _taken(patient, acquired_on):
        raise ConflictError(f"patient {patient.label} already has a visit on {acquired_on}")
    staged = stage_upload(files, archive)
    written: list[Path] = []
    try:
        acquired_on = scan_date_resolve(acquired_on, staged)
        if _taken(patient, acquired_on):
            raise ConflictError(f"patient {patient.label} already has a visit on {acquired_on}")
        with transaction.atomic():
            visit = Visit.objects.create(
                patient=patient,
                acquired_on=acquired_on,
                clinical_status=clinical_status,
                steroid_dose_mg=steroid_dose_mg,
                non_target=non_target,
                notes=notes,
            )
            _store_originals(visit, staged, written)
            run_create(visit=visit)
            audit(user=by, action="upload_visit", patient=patient, code=str(visit.code))
    except BaseException as error:
        for path in written:
            if path.exists():
                path.chmod(0o644)
                path.unlink()
        if isinstance(error, IntegrityError):  # a visit on that day was created meanwhile
            raise ConflictError(
                f"patient {patient.label} already has a visit on {acquired_on}"
            ) from error
        raise
    finally:
        staged.cleanup()
    return visit


def _taken(patient: Patient, on: dt.date) -> bool:
    return Visit.objects.filter(patient=patient, acquired_on=on).exists()


def visit_update(*, visit: Visit, by: Any = None, **fields: Any) -> Visit:
    """Clinical status, steroid dose, non-target status or notes changed: reassess."""
    allowed = {"clinical_status", "steroid_dose_mg", "non_target", "notes"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
    with transaction.atomic():
        for name, value in fields.items():
            setattr(visit, name, value)
        visit.save(update_fields=list(fields))
        audit(user=by, action="update_visit", patient=visit.patient, code=str(visit.code))
        patient_reassess(patient=visit.patient)
    return visit


def visit_delete(*, visit: Visit, by: Any = None) -> None:
    """Removes the visit and its results (originals are kept on disk under the visit's code for
    the record) and reassesses the patient. A visit a clinician has reviewed is not deleted
    (``ConflictError``): the review is part of the record."""
    patient = visit.patient
    review = visit.reviews.order_by("-reviewed_at").select_related("reviewer").first()
    if review is not None:
        raise ConflictError(
            f"this visit's assessment was reviewed by {review.reviewer} on "
            f"{review.reviewed_at:%Y-%m-%d}; a reviewed visit is kept for the record (correct "
            "its details or analyse it again instead)"
        )
    with transaction.atomic():
        audit(user=by, action="delete_visit", patient=patient, code=str(visit.code))
        on = visit.acquired_on
        visit.delete()
        patient_reassess(patient=patient)
        if patient.visits.filter(acquired_on__gt=on).exists():  # it had a successor
            next_visit_refresh_enqueue(patient=patient, after=on)


def review_create(
    *, visit: Visit, by: Any, action: str, category: str = "", reason: str = ""
) -> Review:
    """A person confirms the visit's current assessment or overrides it (with a category and a
    reason); shown with the assessment everywhere afterwards."""
    assessment = visit.assessments.filter(is_current=True).first()
    if assessment is None:
        raise ConflictError("this visit has no assessment to review yet")
    if action == Review.Action.OVERRIDE and (not category or not reason.strip()):
        raise ValueError("an override needs a category and a reason")
    if action == Review.Action.OVERRIDE and category == assessment.category:
        raise ValueError(f"the engine already says {category}: agree with it instead of overriding")
    if action == Review.Action.OVERRIDE and category not in OVERRIDE_CATEGORIES:
        raise ValueError(
            f"{category} is the engine's choice of reference scan, not a reading: override to "
            f"one of {', '.join(OVERRIDE_CATEGORIES)} (or change the treatment dates)"
        )
    with transaction.atomic():
        review = Review.objects.create(
            visit=visit,
            assessment=assessment,
            reviewer=by,
            action=action,
            category=category,
            reason=reason.strip(),
        )
        audit(
            user=by,
            action=f"review_{review.action}",
            patient=visit.patient,
            code=str(visit.code),
            category=review.category or assessment.category,
        )
    return review
