"""Queue names, in one place: the routing in settings and the worker commands use these."""

import enum


class Queue(enum.StrEnum):
    GPU = "gpu"  # segmentation: a --pool=solo worker with the model loaded once
    CPU = "cpu"  # preparation, registration, measurement, assessment
    DEFAULT = "default"  # the sweeper and anything small
