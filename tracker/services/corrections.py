"""A clinician's correction of a visit's segmentation, and what follows from it.

A correction (a label map edited in the browser with NiiVue's drawing tools, or uploaded) is a
new segmentation version of the visit; none is overwritten. It is checked before anything is
stored (a readable label map, on the grid of the segmentation it corrects, with the labels of
the BraTS 2023 convention only), then measured and assessed by a run of its own that starts at
the measure stage with the corrected run's prepared images and registrations: the same stages
the worker runs for an upload, so the volumes, lesions, products, tracking and the RANO
assessment of the whole timeline follow. The visit's shown results change only when that run
is done (as for any re-analysis).

Two people correcting one visit at once: each names the run its correction was drawn on
(``parent``); the second is told the segmentation changed under them. A visit whose analysis
is running is not corrected until it is done.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from django.core.files import File
from django.db import transaction

from inference.errors import InputError
from inference.imaging.io import read_image, read_label_map, write_image
from inference.labels import Region
from inference.measurement.evaluate import evaluate, same_grid
from tracker.models import (
    AnalysisRun,
    Registration,
    RunStatus,
    SegmentationVersion,
    Stage,
    Visit,
)
from tracker.services.enqueue import stage_enqueue
from tracker.services.uploads import UploadError, limit_bytes
from tracker.services.visits import ConflictError, audit
from tracker.storage import media, run_files, staging_root, stored

IN_PROGRESS = (RunStatus.QUEUED, RunStatus.RUNNING)
BRATS2023_VALUES = frozenset({0, 1, 2, 3})  # what we serve, and what the viewer draws
REGIONS = (Region.ET, Region.TC, Region.WT)


def segmentation_head(visit: Visit) -> AnalysisRun | None:
    """The run holding the visit's latest segmentation version: its latest correction not
    failed, else its current run."""
    latest = (
        SegmentationVersion.objects.filter(visit=visit)
        .exclude(run__status=RunStatus.FAILED)
        .select_related("run")
        .order_by("-number")
        .first()
    )
    if latest is not None:
        return latest.run
    return AnalysisRun.objects.filter(visit=visit, is_current=True).first()


def correction_from_input(*, visit: Visit, data: Mapping[str, Any], by: Any) -> SegmentationVersion:
    """``correction_create`` with the fields of a validated ``inputs.CorrectionInput`` (the API
    and the visit page take the same form)."""
    return correction_create(
        visit=visit,
        labels=data["labels"],
        reason=data["reason"],
        source=data["source"],
        parent=str(data["parent"]),
        by=by,
    )


def correction_create(
    *,
    visit: Visit,
    labels: File[Any],
    reason: str,
    source: str,
    parent: str,
    by: Any,
) -> SegmentationVersion:
    """Check and store a corrected label map as the visit's next segmentation version and queue
    its measurement. ``parent`` is the code of the run whose segmentation was corrected.
    ``ConflictError``: the segmentation changed meanwhile, or an analysis is running;
    ``UploadError``: what is wrong with the file."""
    if not reason.strip():
        raise UploadError({"reason": ["say why the segmentation is corrected"]})
    # Checked and compared outside the lock (reading images takes seconds); the lock then
    # makes sure nothing changed meanwhile.
    head = _head_unchanged(visit, parent)
    corrected, before = _checked(labels, head)
    changes = _changes(before, corrected, head, visit)
    folder: Path | None = None
    try:
        with transaction.atomic():
            visit = Visit.objects.select_for_update().get(pk=visit.pk)  # one at a time
            if _head_unchanged(visit, parent).pk != head.pk:
                raise ConflictError(_changed_under_you(visit, segmentation_head(visit)))
            number = 1 + SegmentationVersion.objects.filter(visit=visit).count()
            run = AnalysisRun.objects.create(
                visit=visit,
                stage=Stage.MEASURE,
                model_name=head.model_name,
                model_version=head.model_version,
                weights_sha256=head.weights_sha256,
                sequences_used=head.sequences_used,
                supported_regions=head.supported_regions,
            )
            folder = run_files(run).root
            sha = _write_run_files(run, head, corrected, number=number, by=by)
            _copy_registrations(run, head)
            version = SegmentationVersion.objects.create(
                visit=visit,
                number=number + 1,
                run=run,
                parent_run=head,
                source=source,
                reason=reason.strip(),
                created_by=by,
                labels_sha256=sha,
                changes=changes,
            )
            audit(
                user=by,
                action="correct_segmentation",
                patient=visit.patient,
                code=str(visit.code),
                version=version.number,
                source=source,
                run=str(run.code),
            )
            stage_enqueue(run_code=run.code, stage=Stage.MEASURE)  # sent after commit
    except BaseException:
        if folder is not None:  # nothing of a correction that was not stored stays on disk
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return version


def _head_unchanged(visit: Visit, parent: str) -> AnalysisRun:
    """The run the correction was drawn on, if it is still the visit's latest segmentation
    and no analysis of the visit is running; else ``ConflictError`` says which."""
    head = segmentation_head(visit)
    if head is None:
        raise ConflictError("the visit has no segmentation to correct yet")
    if str(head.code) != str(parent):
        raise ConflictError(_changed_under_you(visit, head))
    busy = visit.runs.filter(status__in=IN_PROGRESS).first()
    if busy is not None:
        raise ConflictError(
            f"the visit's analysis is running ({busy.stage}); correct it when it is done"
        )
    return head


def _changed_under_you(visit: Visit, head: AnalysisRun | None) -> str:
    correction = SegmentationVersion.objects.filter(run=head).select_related("created_by").first()
    if correction is None:
        return (
            "the segmentation changed under you: the visit was analysed again; reload the page "
            "and correct the new one"
        )
    return (
        f"the segmentation changed under you: version {correction.number} was saved by "
        f"{correction.created_by} at {correction.created_at:%Y-%m-%d %H:%M}; reload the page "
        "and correct that one"
    )


def _checked(labels: File[Any], head: AnalysisRun) -> tuple[sitk.Image, sitk.Image]:
    """The uploaded map (internal labels), and the segmentation it corrects; ``UploadError``
    names what is wrong."""
    size = labels.size or 0
    if size > limit_bytes():
        raise UploadError({"labels": [f"{size} bytes, more than {limit_bytes()}"]})
    before, _ = read_label_map(run_files(head).labels)
    folder = Path(tempfile.mkdtemp(prefix="correction-", dir=staging_root()))
    try:
        suffix = ".nii.gz" if _is_gzip(labels) else ".nii"
        path = folder / f"labels{suffix}"
        with path.open("wb") as out:
            for chunk in labels.chunks():
                out.write(chunk)
        try:
            raw = read_image(path)  # header, truncation and size checks
        except InputError as error:
            message = error.message.replace(str(path), "the file").replace(path.name, "the file")
            raise UploadError({"labels": [message]}) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    values = sitk.GetArrayViewFromImage(raw)
    found = np.unique(values)
    unknown = [v for v in found.tolist() if v not in BRATS2023_VALUES]
    if unknown:
        shown = ", ".join(f"{v:g}" for v in unknown[:5])
        raise UploadError(
            {
                "labels": [
                    f"label value(s) {shown} are not BraTS 2023 labels: a corrected map holds "
                    "0 background, 1 necrotic core, 2 oedema, 3 enhancing tumour only"
                ]
            }
        )
    corrected = sitk.Cast(raw, sitk.sitkUInt8)
    if not same_grid(corrected, before):
        raise UploadError(
            {
                "labels": [
                    "not on the grid of the segmentation it corrects (size "
                    f"{corrected.GetSize()} vs {before.GetSize()}, spacing "
                    f"{_rounded(corrected.GetSpacing())} vs {_rounded(before.GetSpacing())}, "
                    f"origin {_rounded(corrected.GetOrigin())} vs {_rounded(before.GetOrigin())})"
                    ": a label map of another visit, or resampled; draw it on this visit's "
                    "segmentation"
                ]
            }
        )
    corrected = sitk.Cast(corrected, before.GetPixelID())
    corrected.CopyInformation(before)
    return corrected, before


def _is_gzip(labels: File[Any]) -> bool:
    labels.seek(0)
    head = labels.read(2)
    labels.seek(0)
    return bool(head == b"\x1f\x8b")


def _rounded(values: Any) -> tuple[float, ...]:
    return tuple(round(float(v), 2) for v in values)


def _write_run_files(
    run: AnalysisRun, head: AnalysisRun, corrected: sitk.Image, *, number: int, by: Any
) -> str:
    """The new run's folder: the prepared images of the corrected run (hard links, they are
    never written again), the corrected labels, and the model's report with the correction
    recorded. No probabilities: the model's say nothing about a segmentation a person drew (no
    probability range, soft volumes or heat map for it)."""
    source, target = run_files(head), run_files(run)
    _link_tree(source.prepared, target.prepared)
    target.segmentation.mkdir(parents=True, exist_ok=True)
    write_image(corrected, target.labels)
    report = json.loads(source.segmentation_report.read_text(encoding="utf-8"))
    report["correction"] = {
        "version": number + 1,
        "corrects_run": str(head.code),
        "by": str(by),
    }
    target.segmentation_report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return hashlib.sha256(target.labels.read_bytes()).hexdigest()


def _link_tree(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        destination = target / path.relative_to(source)
        if path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)


def _copy_registrations(run: AnalysisRun, head: AnalysisRun) -> None:
    """The corrected run's registrations hold for the new one (the images are the same)."""
    for registration in Registration.objects.filter(run=head).select_related("to_visit"):
        path = run_files(run).transform_to(registration.to_visit)
        shutil.copy2(media(registration.transform), path)
        Registration.objects.create(
            run=run,
            to_visit=registration.to_visit,
            role=registration.role,
            transform=stored(path),
            quality=registration.quality,
            passed=registration.passed,
        )


def model_run_of(run: AnalysisRun) -> AnalysisRun:
    """The model's analysis a (chain of) correction(s) started from."""
    seen = set()
    while (correction := SegmentationVersion.objects.filter(run=run).first()) is not None:
        if run.pk in seen:  # never, as versions only point back; but never loop
            break
        seen.add(run.pk)
        run = correction.parent_run
    return run


def _changes(
    before: sitk.Image, after: sitk.Image, head: AnalysisRun, visit: Visit
) -> dict[str, Any]:
    """What the correction did, per region: the volumes before and after (mL) and the Dice of
    the corrected segmentation against the one it corrects; and against the model's own
    segmentation (the evidence about the model: ``against_model``), with the visit's RANO
    category when it was corrected."""
    scores = evaluate(before, after, distances=False)
    model_run = model_run_of(head)
    if model_run.pk == head.pk:
        against = scores
    else:
        model_labels, _ = read_label_map(run_files(model_run).labels)
        against = evaluate(model_labels, after, distances=False)
    earlier = SegmentationVersion.objects.filter(run=head).first()
    if earlier is not None:  # the category the model's own segmentation gave
        category_before = earlier.changes.get("category_before")
    else:
        assessment = visit.assessments.filter(is_current=True).first()
        category_before = None if assessment is None else assessment.category
    return {
        "regions": {
            region.value: {
                "before_ml": round(scores[region].prediction_ml, 3),
                "after_ml": round(scores[region].truth_ml, 3),
                "dice": round(scores[region].dice, 4),
            }
            for region in REGIONS
        },
        "corrects_run": str(head.code),
        "against_model": {
            "run": str(model_run.code),
            "model": {"name": model_run.model_name, "version": model_run.model_version},
            "regions": {
                region.value: {
                    "model_ml": round(against[region].prediction_ml, 3),
                    "corrected_ml": round(against[region].truth_ml, 3),
                    "dice": round(against[region].dice, 4),
                }
                for region in REGIONS
            },
        },
        "category_before": category_before,
    }
