"""Celery tasks: ids in, one service call, nothing else. Every task is idempotent (the service
claims its stage with a compare-and-set update), acknowledged late, retried with backoff only for
the transient errors below, and bounded by soft and hard time limits."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from tracker.models import Patient, Stage
from tracker.services import pipeline

# Lost connections to the database or the broker, a file system that is briefly away.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    BrokerError,
    ConnectionError,
    TimeoutError,
)
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


@shared_task(name="tracker.prepare", soft_time_limit=600, time_limit=900, **_COMMON)
def prepare(run_code: str) -> str:
    return pipeline.execute_stage(run_code, Stage.PREPARE)


@shared_task(name="tracker.segment", soft_time_limit=600, time_limit=900, **_COMMON)
def segment(run_code: str) -> str:
    return pipeline.execute_stage(run_code, Stage.SEGMENT)


@shared_task(name="tracker.register", soft_time_limit=600, time_limit=900, **_COMMON)
def register(run_code: str) -> str:
    return pipeline.execute_stage(run_code, Stage.REGISTER)


@shared_task(name="tracker.measure", soft_time_limit=300, time_limit=600, **_COMMON)
def measure(run_code: str) -> str:
    return pipeline.execute_stage(run_code, Stage.MEASURE)


@shared_task(name="tracker.assess", soft_time_limit=600, time_limit=900, **_COMMON)
def assess(run_code: str) -> str:
    return pipeline.execute_stage(run_code, Stage.ASSESS)


@shared_task(name="tracker.assess_patient", soft_time_limit=600, time_limit=900, **_COMMON)
def assess_patient(patient_code: str) -> int:
    from tracker.services.assessments import patient_assess  # noqa: PLC0415

    patient = Patient.objects.filter(code=patient_code).first()
    return 0 if patient is None else len(patient_assess(patient))


@shared_task(name="tracker.sweep", soft_time_limit=60, time_limit=120, **_COMMON)
def sweep() -> int:
    from django.utils import timezone  # noqa: PLC0415
    from knox.models import AuthToken  # noqa: PLC0415

    from tracker.services.uploads import clean_stale_staging  # noqa: PLC0415

    requeued = pipeline.requeue_stale()
    clean_stale_staging()
    AuthToken.objects.filter(expiry__lt=timezone.now()).delete()
    return len(requeued.runs) + len(requeued.patients)


STAGE_TASKS = {
    Stage.PREPARE: prepare,
    Stage.SEGMENT: segment,
    Stage.REGISTER: register,
    Stage.MEASURE: measure,
    Stage.ASSESS: assess,
}
