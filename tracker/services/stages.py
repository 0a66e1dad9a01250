"""The five stages of a visit's analysis, each a function of the run that writes its outputs
(whole or not at all) under the run's folder and its records in the database. ``runs`` claims,
times and advances them; a stage raises ``StageError`` (or ``inference.errors.InputError``) for
an input it cannot analyse, which fails the run with that message."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference.imaging.io import (
    read_image,
    read_label_map,
    read_probability_map,
    read_visit,
    write_image,
)
from inference.imaging.preprocess import prepare_visit, read_prepared, write_prepared
from inference.imaging.validate import reference_sequence
from inference.labels import Region
from inference.measurement.measure import measure
from inference.segmentation.segment import (
    DEFAULT_WEIGHTS,
    Segmenter,
    sequence_support,
    write_segmentation,
)
from tracker.models import (
    AnalysisRun,
    Assessment,
    Lesion,
    LesionKind,
    Measurement,
    ModelVersion,
    RunStatus,
    SegmentationVersion,
    Stage,
    Visit,
)
from tracker.services.assessments import patient_assess
from tracker.services.display import display_build
from tracker.services.registrations import next_visit_refresh, run_register
from tracker.storage import media, original_folder, run_files, stored

if TYPE_CHECKING:
    import SimpleITK as sitk

log = logging.getLogger(__name__)


class StageError(Exception):
    """A stage that cannot complete for this input (not transient): the run fails with it."""


def stages_with(run: AnalysisRun, stage: Stage, **values: Any) -> dict[str, Any]:
    """The run's per-stage record with ``values`` set for ``stage``."""
    stages = dict(run.stages)
    stages[stage.value] = {**stages.get(stage.value, {}), **values}
    return stages


def stage_prepare(run: AnalysisRun) -> None:
    visit = read_visit(original_folder(run.visit))
    write_prepared(prepare_visit(visit), run_files(run).prepared)


def segmenter() -> Segmenter:
    """The model new analyses use: the registered model an administrator activated
    (``activate_model``), else ``TRACKER_WEIGHTS_DIR``, else the shipped one; each loaded once
    per worker process, on first use (Keras is imported then)."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is not None:
        return _segmenter_at(str(media(active.folder)))
    return _segmenter_at(str(settings.TRACKER_WEIGHTS_DIR or DEFAULT_WEIGHTS))


@functools.lru_cache(maxsize=2)  # the active model and the one before: no more held in memory
def _segmenter_at(folder: str) -> Segmenter:
    return Segmenter(
        folder, runtime=settings.TRACKER_SEGMENTER_RUNTIME, cache=settings.TRACKER_MODEL_CACHE
    )


def stage_segment(run: AnalysisRun) -> None:
    """Segment the prepared visit onto its original T1 post-contrast (else FLAIR) grid; the run
    records the sequences used and the regions they support."""
    model = segmenter()
    files = run_files(run)
    images, mask, _ = read_prepared(files.prepared)
    reference = reference_sequence(images)
    original = next(original_folder(run.visit).glob(f"{reference.value}.nii*"))
    result = model.segment(images, mask, geometry=read_image(original))
    write_segmentation(result, model, files.segmentation, source=str(run.visit.code))
    identity = model.identity
    AnalysisRun.objects.filter(pk=run.pk).update(
        model_name=identity["model"] or "",
        model_version=identity["version"] or "",
        weights_sha256=identity["weights_sha256"] or "",
        sequences_used=result.details["sequences_used"],
        supported_regions=result.details["supported_regions"],
    )


def stage_register(run: AnalysisRun) -> None:
    run_register(run=run)


def stage_measure(run: AnalysisRun) -> None:
    files = run_files(run)
    labels, _ = read_label_map(files.labels)
    # a clinician's correction has none: the model's probabilities are not about it
    probabilities = (
        read_probability_map(files.probabilities) if files.probabilities.is_file() else None
    )
    result = measure(labels, probabilities=probabilities)
    assert result.lesion_map is not None
    assert result.t2_flair_lesion_map is not None
    lesion_map = write_image(result.lesion_map, files.lesions)
    report = json.loads(files.segmentation_report.read_text(encoding="utf-8"))
    unmeasured = set(sequence_support(run.sequences_used).not_measured())
    # Lesions are components of the tumour core, measured on it: without the core (no T1
    # post-contrast) there are no lesions, products or sum to report. T2/FLAIR lesions are
    # components of the whole tumour: without FLAIR or T2 there are none.
    core = Region.TC.value not in unmeasured
    whole = Region.WT.value not in unmeasured
    t2_flair_map = (
        write_image(result.t2_flair_lesion_map, files.t2_flair_lesions) if whole else None
    )
    with transaction.atomic():
        Measurement.objects.filter(run=run).delete()
        Lesion.objects.filter(run=run).delete()
        Measurement.objects.create(
            run=run,
            volumes_ml={k: None if k in unmeasured else v for k, v in result.volumes_ml.items()},
            # the model's probability range; none for a clinician's correction (it says nothing
            # about a segmentation a person drew)
            volume_intervals_ml={} if "correction" in report else report.get("volumes_ml", {}),
            sum_of_products_mm2=result.sum_of_products_mm2 if core else None,
            lesion_map=stored(lesion_map),
            t2_flair_lesion_map="" if t2_flair_map is None else stored(t2_flair_map),
            segmentation=stored(files.labels),
            probabilities=stored(files.probabilities) if probabilities is not None else "",
            details=_measured_only(result.as_dict(), unmeasured),
        )
        Lesion.objects.bulk_create(
            Lesion(
                run=run,
                kind=kind,
                number=lesion.id,
                volume_ml=lesion.volume_ml,
                et_volume_ml=lesion.et_volume_ml,
                longest_mm=lesion.bidimensional.longest_mm,
                perpendicular_mm=lesion.bidimensional.perpendicular_mm,
                product_mm2=lesion.bidimensional.product_mm2,
                measurable=lesion.bidimensional.measurable,
                target=lesion.target,
                centroid_mm=lesion.centroid_mm,
            )
            for kind, lesions in (
                (LesionKind.CORE, result.lesions if core else []),
                (LesionKind.T2_FLAIR, result.t2_flair_lesions if whole else []),
            )
            for lesion in lesions
        )
    _display(run, labels, probabilities)


def _measured_only(details: dict[str, Any], unmeasured: set[str]) -> dict[str, Any]:
    """The measurement record without the numbers the sequences do not support."""
    if not unmeasured:
        return details
    out = dict(details)
    for key in ("volumes_ml", "soft_volumes_ml", "equivalent_diameter_mm"):
        if isinstance(out.get(key), dict):
            out[key] = {k: None if k in unmeasured else v for k, v in out[key].items()}
    if Region.TC.value in unmeasured:
        out.update(lesions=[], lesion_count=None, measurable_count=None, sum_of_products_mm2=None)
    if Region.WT.value in unmeasured:
        out.update(t2_flair_lesions=[], t2_flair_sum_of_products_mm2=None)
    out["not_measured"] = sorted(unmeasured)
    return out


def _display(
    run: AnalysisRun, labels: sitk.Image | None = None, probabilities: sitk.Image | None = None
) -> None:
    """The pictures for the viewer and the reports; a run is not failed for want of them (the
    visit page builds them again on first view)."""
    try:
        display_build(run=run, labels=labels, probabilities=probabilities)
    except Exception:
        log.exception("display images of run %s not written", run.code)


def stage_assess(run: AnalysisRun) -> None:
    """The run becomes the visit's current one (its results replace the old ones only now that
    they are complete), then the patient's whole timeline is assessed again. A model's run does
    not replace a clinician's correction: it is kept, done, beside it (the visit page lists it
    among the versions)."""
    correction = SegmentationVersion.objects.filter(run=run).first()
    with transaction.atomic():
        Visit.objects.select_for_update().filter(pk=run.visit_id).first()  # as corrections do
        corrected = (
            AnalysisRun.objects.filter(visit=run.visit, is_current=True, correction__isnull=False)
            .exclude(pk=run.pk)
            .exists()
        )
        if corrected and correction is None:
            AnalysisRun.objects.filter(pk=run.pk).update(
                stage=Stage.DONE,
                status=RunStatus.DONE,
                finished_at=timezone.now(),
                stages=stages_with(run, Stage.ASSESS, status="done", shown=False),
            )
            return
    with transaction.atomic():
        AnalysisRun.objects.filter(visit=run.visit, is_current=True).exclude(pk=run.pk).update(
            is_current=False
        )
        AnalysisRun.objects.filter(pk=run.pk).update(
            is_current=True,
            stage=Stage.DONE,
            status=RunStatus.DONE,
            finished_at=timezone.now(),
            stages=stages_with(run, Stage.ASSESS, status="done"),
        )
        patient_assess(patient=run.visit.patient)
        if correction is not None:  # the category under the correction, when it was made
            after = Assessment.objects.filter(visit=run.visit, is_current=True).first()
            correction.changes = {
                **correction.changes,
                "category_after": None if after is None else after.category,
            }
            correction.save(update_fields=["changes"])
    try:  # after commit: the next visit's comparison with this one (not a failure of this run)
        next_visit_refresh(patient=run.visit.patient, after=run.visit.acquired_on)
    except Exception:
        log.exception("the visit after run %s was not brought up to date", run.code)


STAGES: dict[Stage, Callable[[AnalysisRun], None]] = {
    Stage.PREPARE: stage_prepare,
    Stage.SEGMENT: stage_segment,
    Stage.REGISTER: stage_register,
    Stage.MEASURE: stage_measure,
    Stage.ASSESS: stage_assess,
}
