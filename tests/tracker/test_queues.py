"""Stage priorities: under a burst a worker finishes the visit it started before it prepares
the next one (Redis serves the lower priority number first)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest
from celery import current_app
from django.conf import settings

from tracker.queues import STAGE_PRIORITY, Task
from tracker.services import enqueue


def test_each_later_stage_goes_before_the_one_before_it() -> None:
    order = [enqueue.STAGE_TASKS[stage] for stage in enqueue.STAGE_TASKS]
    priorities = [STAGE_PRIORITY[task] for task in order]
    assert priorities == sorted(priorities, reverse=True)
    assert len(set(priorities)) == len(priorities)


def test_a_stage_task_is_sent_with_its_priority(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        current_app, "send_task", lambda name, args, priority: sent.append((name, priority))
    )
    enqueue.task_send(Task.PREPARE, "a")
    enqueue.task_send(Task.ASSESS, "b")
    enqueue.task_send(Task.SWEEP)
    assert sent == [("tracker.prepare", 6), ("tracker.assess", 2), ("tracker.sweep", None)]


def test_redis_serves_the_later_stage_first() -> None:
    """With the settings' transport options, a queue on Redis hands out the registration sent
    after a segmentation before that segmentation (one priority step apart)."""
    if not settings.CELERY_BROKER_URL.startswith("redis"):
        if os.environ.get("CI"):
            pytest.fail("needs CELERY_BROKER_URL on Redis under CI")
        pytest.skip("needs CELERY_BROKER_URL on Redis")
    queue = f"test-priority-{uuid.uuid4().hex}"
    for task, code in ((Task.SEGMENT, "first-sent"), (Task.REGISTER, "second-sent")):
        current_app.send_task(task.value, args=[code], priority=STAGE_PRIORITY[task], queue=queue)
    received = []
    with current_app.connection_for_read() as connection:
        simple = connection.SimpleQueue(queue)
        try:
            for _ in range(2):
                message = simple.get(timeout=10)
                received.append(message.headers["task"])
                message.ack()
        finally:
            simple.close()
    assert received == ["tracker.register", "tracker.segment"]
