"""Sending work to the workers: tasks are sent by name (``tracker.queues.Task``), after the
transaction that makes them due commits, so no service imports the task module. The database
already says what is due, so a broker that is down loses nothing: the send is logged and the
sweeper (``runs.runs_requeue_stale``) sends it again.

``TRANSIENT_ERRORS`` are the failures a task retries with backoff instead of failing its run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import current_app
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from tracker.models import Patient, Stage
from tracker.queues import STAGE_PRIORITY, Task

log = logging.getLogger(__name__)

# Lost connections to the database or the broker, a file system that is briefly away.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    BrokerError,
    ConnectionError,
    TimeoutError,
)
# What sending a task raises when the broker is down (after kombu's own quick retries).
BROKER_ERRORS: tuple[type[BaseException], ...] = (BrokerError, ConnectionError, OSError)

STAGE_TASKS: dict[Stage, Task] = {
    Stage.PREPARE: Task.PREPARE,
    Stage.SEGMENT: Task.SEGMENT,
    Stage.REGISTER: Task.REGISTER,
    Stage.MEASURE: Task.MEASURE,
    Stage.ASSESS: Task.ASSESS,
}


def task_send(task: Task, *args: Any) -> None:
    """Send one task now (routed to its queue by the settings, with its stage's priority)."""
    current_app.send_task(task.value, args=list(args), priority=STAGE_PRIORITY.get(task))


def send_after_commit(send: Callable[[], None], what: str) -> None:
    """Run ``send`` once the transaction commits; a broker that is down is logged, not raised."""

    def guarded() -> None:
        try:
            send()
        except BROKER_ERRORS as error:
            log.warning("could not queue %s (%s); the sweeper will queue it", what, error)

    transaction.on_commit(guarded)


def stage_enqueue(*, run_code: Any, stage: str) -> None:
    """Queue the run's stage after commit (nothing for a finished run)."""
    task = STAGE_TASKS.get(Stage(stage))
    if task is not None:
        code = str(run_code)
        send_after_commit(lambda: task_send(task, code), f"{Stage(stage).value} of {code}")


def next_visit_refresh_enqueue(*, patient: Patient, after: Any) -> None:
    """After commit, bring the first analysed visit after ``after`` up to date with its new
    prior (a worker registers it: seconds, not for a request)."""
    code, on = str(patient.code), after.isoformat()
    send_after_commit(
        lambda: task_send(Task.REFRESH_NEXT_VISIT, code, on), f"the visit after {on} of {code}"
    )


def patient_reassess(*, patient: Patient) -> None:
    """Record that the patient's timeline needs assessing and queue it after commit."""
    Patient.objects.filter(pk=patient.pk).update(assessment_requested_at=timezone.now())
    code = str(patient.code)
    send_after_commit(lambda: task_send(Task.ASSESS_PATIENT, code), f"the assessment of {code}")
