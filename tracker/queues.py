"""Queue and task names, in one place: the routing in settings, the worker commands, the tasks
and the code that sends them use these (a leaf module: it imports nothing of the project)."""

import enum


class Queue(enum.StrEnum):
    GPU = "gpu"  # segmentation: a --pool=solo worker with the model loaded once
    CPU = "cpu"  # preparation, registration, measurement, assessment
    DEFAULT = "default"  # the sweeper and anything small


class Task(enum.StrEnum):
    """The registered names of the Celery tasks (``tracker.tasks``); work is sent by name."""

    PREPARE = "tracker.prepare"
    SEGMENT = "tracker.segment"
    REGISTER = "tracker.register"
    MEASURE = "tracker.measure"
    ASSESS = "tracker.assess"
    ASSESS_PATIENT = "tracker.assess_patient"
    REFRESH_NEXT_VISIT = "tracker.refresh_next_visit"
    SWEEP = "tracker.sweep"


ROUTES: dict[Task, Queue] = {
    Task.PREPARE: Queue.CPU,
    Task.SEGMENT: Queue.GPU,
    Task.REGISTER: Queue.CPU,
    Task.MEASURE: Queue.CPU,
    Task.ASSESS: Queue.CPU,
    Task.ASSESS_PATIENT: Queue.CPU,
    Task.REFRESH_NEXT_VISIT: Queue.CPU,
    Task.SWEEP: Queue.DEFAULT,
}

# Broker priorities of the stage tasks (0 is served first; tasks sent without one count as 0):
# the later a stage, the sooner it runs, so a worker finishes the visit it started before it
# prepares the next one. On Redis; the embedded filesystem broker serves in order of arrival.
STAGE_PRIORITY: dict[Task, int] = {
    Task.PREPARE: 6,
    Task.SEGMENT: 5,
    Task.REGISTER: 4,
    Task.MEASURE: 3,
    Task.ASSESS: 2,
}
