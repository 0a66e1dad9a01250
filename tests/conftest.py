"""Shared fixtures: the real public MRI cases and tiny synthetic images.

The real cases live outside the project (``../shared/data``, or ``TRACKER_TEST_DATA``); they are
read-only, so tests write into ``tmp_path``. Under ``CI=true`` a missing folder fails the tests
that need it instead of skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_folder() -> Path:
    return Path(os.environ.get("TRACKER_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = shared_data_folder()
    if not folder.is_dir():
        message = f"real MRI cases not found at {folder} (set TRACKER_TEST_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder
