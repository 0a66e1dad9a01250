"""The life of an analysis run: created and queued, each stage claimed, run, and advanced or
failed, requeued when its worker is gone, retried as a new run.

A stage is claimed with a compare-and-set update (stage, queued) -> (stage, running), so a
message delivered twice runs the stage once; its outputs are written under the run's folder
(whole or not at all), then the run moves to the next stage, which is queued after commit.

State lives in the database: a worker that dies leaves (stage, running) behind, and the sweeper
(``runs_requeue_stale``) puts it back to (stage, queued) and queues it again.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from inference.errors import InputError
from tracker.models import (
    STAGE_ORDER,
    AnalysisRun,
    Patient,
    RunStatus,
    SegmentationVersion,
    Stage,
    Visit,
)
from tracker.services.enqueue import TRANSIENT_ERRORS, patient_reassess, stage_enqueue
from tracker.services.stages import STAGES, StageError, stages_with

log = logging.getLogger(__name__)


def run_create(*, visit: Visit) -> AnalysisRun:
    """A new analysis of the visit, queued after commit. The visit's current results stay shown
    until this run completes."""
    run = AnalysisRun.objects.create(visit=visit)
    stage_enqueue(run_code=run.code, stage=run.stage)
    return run


def run_retry(*, run: AnalysisRun) -> AnalysisRun:
    """A failed run is analysed again from its first stage, as a new run (the failed one stays
    on record); a clinician's correction that failed, the visit's latest run, is measured again
    from its own stage, so the drawing is not lost."""
    latest = AnalysisRun.objects.filter(visit=run.visit).order_by("-created_at").first()
    if latest == run and SegmentationVersion.objects.filter(run=run).exists():
        stage = Stage(run.stage)
        AnalysisRun.objects.filter(pk=run.pk, status=RunStatus.FAILED).update(
            status=RunStatus.QUEUED, error="", finished_at=None, updated_at=timezone.now()
        )
        stage_enqueue(run_code=run.code, stage=stage)
        run.refresh_from_db()
        return run
    return run_create(visit=run.visit)


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


def run_claim(*, run_code: str, stage: Stage) -> AnalysisRun | None:
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


def stage_execute(*, run_code: str, stage: Stage) -> str:
    """Claim the stage, run it, advance. Returns what happened (for logs and tests)."""
    run = run_claim(run_code=run_code, stage=stage)
    if run is None:
        return "not claimed"
    started = time.perf_counter()
    AnalysisRun.objects.filter(pk=run.pk).update(
        attempts=run.attempts + 1,
        stages=stages_with(run, stage, status="running", started_at=timezone.now().isoformat()),
    )
    run.refresh_from_db()
    try:
        with _Heartbeat(run):
            STAGES[stage](run)
    except (InputError, StageError) as error:
        run_fail(run=run, stage=stage, message=str(error), seconds=time.perf_counter() - started)
        return "failed"
    except Exception as error:
        if isinstance(error, TRANSIENT_ERRORS):
            # Back to queued: the task retries it with backoff.
            AnalysisRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
                status=RunStatus.QUEUED
            )
            raise
        log.exception("stage %s of run %s failed", stage, run.code)
        run_fail(
            run=run,
            stage=stage,
            message=f"internal error in {stage.value}: {type(error).__name__}: {error}",
            seconds=time.perf_counter() - started,
        )
        return "failed"
    run_advance(run=run, stage=stage, seconds=time.perf_counter() - started)
    return "done"


def run_fail(*, run: AnalysisRun, stage: Stage, message: str, seconds: float) -> None:
    AnalysisRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED,
        error=f"{stage.value}: {message}"[:2000],
        finished_at=timezone.now(),
        stages=stages_with(run, stage, status="failed", seconds=round(seconds, 2), error=message),
    )


def run_advance(*, run: AnalysisRun, stage: Stage, seconds: float) -> None:
    """Mark the stage done and queue the next one after commit."""
    run.refresh_from_db()
    position = STAGE_ORDER.index(stage)
    stages = stages_with(run, stage, status="done", seconds=round(seconds, 2))
    if position + 1 == len(STAGE_ORDER):
        AnalysisRun.objects.filter(pk=run.pk).update(stages=stages)
        return
    following = STAGE_ORDER[position + 1]
    with transaction.atomic():
        AnalysisRun.objects.filter(pk=run.pk, stage=stage, status=RunStatus.RUNNING).update(
            stage=following,
            status=RunStatus.QUEUED,
            stages=stages,
            claimed_at=None,
            updated_at=timezone.now(),
        )
        stage_enqueue(run_code=run.code, stage=following)


# --- the sweeper -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requeued:
    runs: list[str]
    patients: list[str]


def runs_requeue_stale(*, older_than_s: int | None = None) -> Requeued:
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
            stage_enqueue(run_code=run.code, stage=run.stage)
    patients = []
    for patient in Patient.objects.filter(assessment_requested_at__lt=cutoff):
        patients.append(str(patient.code))
        patient_reassess(patient=patient)
    return Requeued(runs=codes, patients=patients)
