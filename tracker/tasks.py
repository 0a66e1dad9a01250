"""Celery tasks: ids in, one service call, nothing else. Every task is idempotent (the service
claims its stage with a compare-and-set update), acknowledged late, retried with backoff only for
the transient errors (``services.enqueue.TRANSIENT_ERRORS``), and bounded by soft and hard time
limits. Services send them by name (``tracker.queues.Task``) and never import this module."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from celery import shared_task
from celery.signals import celeryd_init, worker_ready
from django.conf import settings
from django.utils import timezone
from knox.models import AuthToken

from inference.imaging import cache
from tracker.models import Patient, Stage
from tracker.queues import Queue, Task
from tracker.services.assessments import patient_assess
from tracker.services.enqueue import TRANSIENT_ERRORS
from tracker.services.registrations import next_visit_refresh
from tracker.services.runs import runs_requeue_stale, stage_execute
from tracker.services.stages import segmenter
from tracker.services.uploads import clean_stale_staging

logger = logging.getLogger(__name__)

_COMMON = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 5,
    "ignore_result": True,
}


@shared_task(name=Task.PREPARE.value, soft_time_limit=600, time_limit=900, **_COMMON)
def prepare(run_code: str) -> str:
    return stage_execute(run_code=run_code, stage=Stage.PREPARE)


@shared_task(name=Task.SEGMENT.value, soft_time_limit=600, time_limit=900, **_COMMON)
def segment(run_code: str) -> str:
    return stage_execute(run_code=run_code, stage=Stage.SEGMENT)


@shared_task(name=Task.REGISTER.value, soft_time_limit=600, time_limit=900, **_COMMON)
def register(run_code: str) -> str:
    return stage_execute(run_code=run_code, stage=Stage.REGISTER)


@shared_task(name=Task.MEASURE.value, soft_time_limit=300, time_limit=600, **_COMMON)
def measure(run_code: str) -> str:
    return stage_execute(run_code=run_code, stage=Stage.MEASURE)


@shared_task(name=Task.ASSESS.value, soft_time_limit=600, time_limit=900, **_COMMON)
def assess(run_code: str) -> str:
    return stage_execute(run_code=run_code, stage=Stage.ASSESS)


@shared_task(name=Task.ASSESS_PATIENT.value, soft_time_limit=600, time_limit=900, **_COMMON)
def assess_patient(patient_code: str) -> int:
    patient = Patient.objects.filter(code=patient_code).first()
    return 0 if patient is None else len(patient_assess(patient=patient))


@shared_task(name=Task.REFRESH_NEXT_VISIT.value, soft_time_limit=300, time_limit=600, **_COMMON)
def refresh_next_visit(patient_code: str, after: str) -> str:
    patient = Patient.objects.filter(code=patient_code).first()
    if patient is None:
        return "no such patient"
    run = next_visit_refresh(patient=patient, after=dt.date.fromisoformat(after))
    return "nothing to refresh" if run is None else str(run.code)


@shared_task(name=Task.SWEEP.value, soft_time_limit=60, time_limit=120, **_COMMON)
def sweep() -> int:
    requeued = runs_requeue_stale()
    clean_stale_staging()
    AuthToken.objects.filter(expiry__lt=timezone.now()).delete()
    return len(requeued.runs) + len(requeued.patients)


@celeryd_init.connect
def keep_images(**_: Any) -> None:
    """A worker keeps the images of the visits it analyses in memory between their stages, up
    to ``TRACKER_IMAGE_CACHE_MB`` per process (its pool's processes inherit the setting): the
    next stage finds the files the last one wrote or read without reading them again
    (``inference.imaging.cache``)."""
    cache.configure(settings.TRACKER_IMAGE_CACHE_MB)
    logger.info(
        "keeping up to %d MiB of images between a visit's stages", cache.images.max_bytes >> 20
    )


@worker_ready.connect
def warm_up(sender: Any = None, **_: Any) -> None:
    """A worker that consumes the GPU queue and runs tasks in its own process (``--pool=solo``
    or threads) loads the model and runs it once when it starts, so its first visit does not
    wait for that (``TRACKER_WARM_UP=0`` turns it off). A failure is logged: the first visit
    then loads the model, as without warm-up."""
    if not settings.TRACKER_WARM_UP or sender is None:
        return
    consumed = set(getattr(sender.app.amqp.queues, "consume_from", None) or {})
    pool = type(getattr(sender, "pool", None)).__module__
    if Queue.GPU.value not in consumed or not pool.endswith(("solo", "thread")):
        return
    started = time.perf_counter()
    try:
        model = segmenter()
        warmed = model.warm_up()
    except Exception:
        logger.exception("segmenter warm-up failed: the first visit will load the model")
        return
    logger.info(
        "segmenter %s %s warmed up on %s in %.1f s (loaded in %.1f s, first pass %.1f s)",
        model.identity["model"],
        model.identity["version"],
        model.runtime,
        time.perf_counter() - started,
        model.load_seconds,
        warmed,
    )
