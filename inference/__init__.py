"""Imaging and machine learning for the brain-tumour tracker.

Plain Python on SimpleITK images: no web framework is imported here, so every computation can run
from ``python -m inference`` or a worker process alike.
"""

__version__ = "0.1.0"
