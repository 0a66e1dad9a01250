"""The analysis of a visit, one stage at a time: prepare -> segment -> register -> measure ->
assess. Each stage is claimed with a compare-and-set update (stage, queued) -> (stage, running),
so a message delivered twice runs the stage once; its outputs are written to the run's own folder
(whole or not at all), then the run moves to the next stage, which is queued after commit.

State lives in the database: a worker that dies leaves (stage, running) behind, and the sweeper
(``requeue_stale``) puts it back to (stage, queued) and queues it again.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerConnectionError

from inference.errors import InputError
from inference.labels import Region
from tracker.models import (
    STAGE_ORDER,
    AnalysisRun,
    Lesion,
    LesionKind,
    Measurement,
    Patient,
    Registration,
    RegistrationRole,
    RunStatus,
    Stage,
)

log = logging.getLogger(__name__)

# What sending a task raises when the broker is down (after kombu's own quick retries).
BROKER_ERRORS: tuple[type[BaseException], ...] = (BrokerConnectionError, ConnectionError, OSError)


class StageError(Exception):
    """A stage that cannot complete for this input (not transient): the run fails with it."""


def media(path: str | Path) -> Path:
    return Path(settings.MEDIA_ROOT) / path


def run_folder(run: AnalysisRun) -> Path:
    return media(run.folder)


def original_folder(run: AnalysisRun) -> Path:
    return media(f"visits/{run.visit.code}/original")


# --- queueing ----------------------------------------------------------------------------------


def enqueue_stage(run_code: Any, stage: str) -> None:
    """Send the stage's task (import here: tasks import this module)."""
    from tracker import tasks  # noqa: PLC0415

    task = tasks.STAGE_TASKS.get(Stage(stage))
    if task is not None:
        task.delay(str(run_code))


def send_after_commit(send: Callable[[], None], what: str) -> None:
    """Queue a task once the transaction commits. The database already says what is due, so a
    broker that is down loses nothing: the send is logged and the sweeper queues it again."""

    def guarded() -> None:
        try:
            send()
        except BROKER_ERRORS as error:
            log.warning("could not queue %s (%s); the sweeper will queue it", what, error)

    transaction.on_commit(guarded)


def reassess_patient(patient: Patient) -> None:
    """Record that the patient's timeline needs assessing and queue it after commit."""
    from tracker import tasks  # noqa: PLC0415

    Patient.objects.filter(pk=patient.pk).update(assessment_requested_at=timezone.now())
    code = str(patient.code)
    send_after_commit(lambda: tasks.assess_patient.delay(code), f"the assessment of {code}")


# --- one stage -------------------------------------------------------------------------------


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _silent_since() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.TRACKER_HEARTBEAT_STALE_S)


def _gone(cutoff: dt.datetime) -> Q:
    """Running, and its worker has not beaten since ``cutoff`` (never beaten: since its claim)."""
    return Q(status=RunStatus.RUNNING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, claimed_at__lt=cutoff)
    )


def claim(run_code: str, stage: Stage) -> AnalysisRun | None:
    """Compare and set: (stage, queued) -> (stage, running), or (stage, running) whose worker
    stopped beating -> (stage, running) here: a task redelivered after its worker was killed
    takes the run over at once. None if a live worker has it, the run moved on, or it failed."""
    now = timezone.now()
    mine = {"status": RunStatus.RUNNING, "claimed_at": now, "updated_at": now}
    mine |= {"claimed_by": worker_id(), "heartbeat_at": now}
    claimed = AnalysisRun.objects.filter(
        Q(status=RunStatus.QUEUED) | _gone(_silent_since()), code=run_code, stage=stage
    ).update(**mine)
    if not claimed:
        return None
    return AnalysisRun.objects.select_related("visit__patient").get(code=run_code)


class _Heartbeat:
    """Beats for a running stage from a thread of its own, every quarter of the staleness limit,
    until the stage ends."""

    def __init__(self, run: AnalysisRun) -> None:
        self.run_pk, self.stop = run.pk, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat {run.pk}")

    def _beat(self) -> None:
        try:
            while not self.stop.wait(max(settings.TRACKER_HEARTBEAT_STALE_S / 4, 1)):
                try:
                    AnalysisRun.objects.filter(pk=self.run_pk, status=RunStatus.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError as error:  # a busy SQLite, a dropped connection: next beat
                    log.warning("heartbeat of run %s missed (%s)", self.run_pk, error)
                    connection.close()
        finally:
            connection.close()

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _record(run: AnalysisRun, stage: Stage, **values: Any) -> dict[str, Any]:
    stages = dict(run.stages)
    stages[stage.value] = {**stages.get(stage.value, {}), **values}
    return stages


def execute_stage(run_code: str, stage: Stage) -> str:
    """Claim the stage, run it, advance. Returns what happened (for logs and tests)."""
    run = claim(run_code, stage)
    if run is None:
        return "not claimed"
    started = time.perf_counter()
    AnalysisRun.objects.filter(pk=run.pk).update(
        attempts=run.attempts + 1,
        stages=_record(run, stage, status="running", started_at=timezone.now().isoformat()),
    )
    run.refresh_from_db()
    try:
        with _Heartbeat(run):
            STAGES[stage](run)
    except (InputError, StageError) as error:
        fail(run, stage, str(error), time.perf_counter() - started)
        return "failed"
    except Exception as error:
        if _transient(error):
            # Back to queued: the task retries it with backoff.
            AnalysisRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
                status=RunStatus.QUEUED
            )
            raise
        log.exception("stage %s of run %s failed", stage, run.code)
        fail(
            run,
            stage,
            f"internal error in {stage.value}: {type(error).__name__}: {error}",
            time.perf_counter() - started,
        )
        return "failed"
    advance(run, stage, time.perf_counter() - started)
    return "done"


def _transient(error: BaseException) -> bool:
    from tracker.tasks import TRANSIENT_ERRORS  # noqa: PLC0415

    return isinstance(error, TRANSIENT_ERRORS)


def fail(run: AnalysisRun, stage: Stage, message: str, seconds: float) -> None:
    AnalysisRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED,
        error=f"{stage.value}: {message}"[:2000],
        finished_at=timezone.now(),
        stages=_record(run, stage, status="failed", seconds=round(seconds, 2), error=message),
    )


def advance(run: AnalysisRun, stage: Stage, seconds: float) -> None:
    """Mark the stage done and queue the next one after commit."""
    run.refresh_from_db()
    position = STAGE_ORDER.index(stage)
    stages = _record(run, stage, status="done", seconds=round(seconds, 2))
    if position + 1 < len(STAGE_ORDER):
        following = STAGE_ORDER[position + 1]
        with transaction.atomic():
            AnalysisRun.objects.filter(pk=run.pk, stage=stage, status=RunStatus.RUNNING).update(
                stage=following,
                status=RunStatus.QUEUED,
                stages=stages,
                claimed_at=None,
                updated_at=timezone.now(),
            )
            send_after_commit(
                lambda: enqueue_stage(run.code, following), f"{following.value} of {run.code}"
            )
    else:
        AnalysisRun.objects.filter(pk=run.pk).update(stages=stages)


# --- the stages --------------------------------------------------------------------------------


def stage_prepare(run: AnalysisRun) -> None:
    from inference.io import read_visit  # noqa: PLC0415
    from inference.preprocess import prepare_visit, write_prepared  # noqa: PLC0415

    visit = read_visit(original_folder(run))
    prepared = prepare_visit(visit)
    write_prepared(prepared, run_folder(run) / "prepared")


@functools.cache
def segmenter() -> Any:
    """The model, loaded once per worker process, lazily."""
    from inference.segment import DEFAULT_WEIGHTS, Segmenter  # noqa: PLC0415

    return Segmenter(settings.TRACKER_WEIGHTS_DIR or DEFAULT_WEIGHTS)


def stage_segment(run: AnalysisRun) -> None:
    """Segment the prepared visit onto its original T1 post-contrast (else FLAIR) grid; the run
    records the sequences used and the regions they support."""
    from inference.io import read_image  # noqa: PLC0415
    from inference.preprocess import read_prepared  # noqa: PLC0415
    from inference.segment import write_segmentation  # noqa: PLC0415
    from inference.validate import reference_sequence  # noqa: PLC0415

    model = segmenter()
    images, mask, _ = read_prepared(run_folder(run) / "prepared")
    reference = reference_sequence(images)
    original = next(original_folder(run).glob(f"{reference.value}.nii*"))
    result = model.segment(images, mask, geometry=read_image(original))
    write_segmentation(result, model, run_folder(run) / "segmentation", source=str(run.visit.code))
    identity = model.identity
    AnalysisRun.objects.filter(pk=run.pk).update(
        model_name=identity["model"] or "",
        model_version=identity["version"] or "",
        weights_sha256=identity["weights_sha256"] or "",
        sequences_used=result.details["sequences_used"],
        supported_regions=result.details["supported_regions"],
    )


def _raw_images(run: AnalysisRun) -> dict[Any, Any]:
    from inference.io import read_visit  # noqa: PLC0415

    return read_visit(original_folder(run)).images


def register_runs(fixed: AnalysisRun, moving: AnalysisRun, role: RegistrationRole) -> Registration:
    """Register ``moving``'s visit onto ``fixed``'s (T1 post-contrast first) and store it."""
    from inference.register import register_visits, save_transform  # noqa: PLC0415

    registration = register_visits(_raw_images(fixed), _raw_images(moving))
    path = run_folder(moving) / f"to-{fixed.visit.code}.tfm"
    save_transform(registration.result.transform, path)
    stored, _ = Registration.objects.update_or_create(
        run=moving,
        role=role,
        defaults={
            "to_visit": fixed.visit,
            "transform": str(path.relative_to(settings.MEDIA_ROOT)),
            "quality": registration.as_dict(),
            "passed": registration.ok,
        },
    )
    return stored


def stage_register(run: AnalysisRun) -> None:
    """To the prior visit and to the patient's first visit, where they have been analysed."""
    visit = run.visit
    prior = (
        AnalysisRun.objects.select_related("visit")
        .filter(
            visit__patient=visit.patient, visit__acquired_on__lt=visit.acquired_on, is_current=True
        )
        .order_by("-visit__acquired_on")
        .first()
    )
    first = (
        AnalysisRun.objects.select_related("visit")
        .filter(visit__patient=visit.patient, is_current=True)
        .order_by("visit__acquired_on")
        .first()
    )
    if prior is not None:
        register_runs(prior, run, RegistrationRole.PRIOR)
    if first is not None and first.visit.acquired_on < visit.acquired_on:
        if prior is not None and prior.pk == first.pk:
            stored = Registration.objects.get(run=run, role=RegistrationRole.PRIOR)
            Registration.objects.update_or_create(
                run=run,
                role=RegistrationRole.BASELINE,
                defaults={
                    "to_visit": stored.to_visit,
                    "transform": stored.transform,
                    "quality": stored.quality,
                    "passed": stored.passed,
                },
            )
        else:
            register_runs(first, run, RegistrationRole.BASELINE)


def stage_measure(run: AnalysisRun) -> None:
    from inference.io import read_label_map, read_probability_map, write_image  # noqa: PLC0415
    from inference.measure import measure  # noqa: PLC0415
    from inference.segment import sequence_support  # noqa: PLC0415

    folder = run_folder(run) / "segmentation"
    labels, _ = read_label_map(folder / "seg.nii.gz")
    probabilities = read_probability_map(folder / "prob.nii.gz")
    result = measure(labels, probabilities=probabilities)
    assert result.lesion_map is not None
    assert result.t2_flair_lesion_map is not None
    lesion_map = write_image(result.lesion_map, run_folder(run) / "lesions.nii.gz")
    report = json.loads((folder / "segmentation.json").read_text())
    unmeasured = set(sequence_support(run.sequences_used).not_measured())
    # Lesions are components of the tumour core, measured on it: without the core (no T1
    # post-contrast) there are no lesions, products or sum to report. T2/FLAIR lesions are
    # components of the whole tumour: without FLAIR or T2 there are none.
    core = Region.TC.value not in unmeasured
    whole = Region.WT.value not in unmeasured
    t2_flair_map = (
        write_image(result.t2_flair_lesion_map, run_folder(run) / "lesions-t2flair.nii.gz")
        if whole
        else None
    )
    with transaction.atomic():
        Measurement.objects.filter(run=run).delete()
        Lesion.objects.filter(run=run).delete()
        Measurement.objects.create(
            run=run,
            volumes_ml={k: None if k in unmeasured else v for k, v in result.volumes_ml.items()},
            volume_intervals_ml=report.get("volumes_ml", {}),
            sum_of_products_mm2=result.sum_of_products_mm2 if core else None,
            lesion_map=str(lesion_map.relative_to(settings.MEDIA_ROOT)),
            t2_flair_lesion_map=""
            if t2_flair_map is None
            else str(t2_flair_map.relative_to(settings.MEDIA_ROOT)),
            segmentation=str((folder / "seg.nii.gz").relative_to(settings.MEDIA_ROOT)),
            probabilities=str((folder / "prob.nii.gz").relative_to(settings.MEDIA_ROOT)),
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
    _display(run)


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


def _display(run: AnalysisRun) -> None:
    """The pictures for the viewer and the reports; a run is not failed for want of them (the
    visit page builds them again on first view)."""
    from tracker.services.display import build_display  # noqa: PLC0415

    try:
        build_display(run)
    except Exception:
        log.exception("display images of run %s not written", run.code)


def stage_assess(run: AnalysisRun) -> None:
    """The run becomes the visit's current one (its results replace the old ones only now that
    they are complete), then the patient's whole timeline is assessed again."""
    from tracker.services.assessments import patient_assess  # noqa: PLC0415

    with transaction.atomic():
        AnalysisRun.objects.filter(visit=run.visit, is_current=True).exclude(pk=run.pk).update(
            is_current=False
        )
        AnalysisRun.objects.filter(pk=run.pk).update(
            is_current=True,
            stage=Stage.DONE,
            status=RunStatus.DONE,
            finished_at=timezone.now(),
            stages=_record(run, Stage.ASSESS, status="done"),
        )
        patient_assess(run.visit.patient)


STAGES: dict[Stage, Callable[[AnalysisRun], None]] = {
    Stage.PREPARE: stage_prepare,
    Stage.SEGMENT: stage_segment,
    Stage.REGISTER: stage_register,
    Stage.MEASURE: stage_measure,
    Stage.ASSESS: stage_assess,
}


# --- the sweeper -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requeued:
    runs: list[str]
    patients: list[str]


def requeue_stale(*, older_than_s: int | None = None) -> Requeued:
    """Runs stuck in a stage (a worker died, a message was lost or never sent) go back to
    queued and are queued again; so are patient assessments asked for and not done."""
    limit = older_than_s if older_than_s is not None else settings.TRACKER_STALE_AFTER_S
    cutoff = timezone.now() - dt.timedelta(seconds=limit)
    silent = cutoff if older_than_s is not None else _silent_since()
    stale = AnalysisRun.objects.filter(
        _gone(silent) | Q(status=RunStatus.QUEUED, updated_at__lt=cutoff)
    ).exclude(stage=Stage.DONE)
    codes = []
    for run in stale:
        moved = AnalysisRun.objects.filter(pk=run.pk, stage=run.stage, status=run.status).update(
            status=RunStatus.QUEUED, claimed_at=None, updated_at=timezone.now()
        )
        if moved:
            codes.append(str(run.code))
            send_after_commit(
                functools.partial(enqueue_stage, run.code, run.stage), f"{run.stage} of {run.code}"
            )
    patients = []
    for patient in Patient.objects.filter(assessment_requested_at__lt=cutoff):
        patients.append(str(patient.code))
        reassess_patient(patient)
    return Requeued(runs=codes, patients=patients)


def run_retry(run: AnalysisRun) -> AnalysisRun:
    """A failed run is analysed again from its first stage, as a new run (the failed one stays
    on record)."""
    from tracker.services.visits import run_create  # noqa: PLC0415

    return run_create(run.visit)
