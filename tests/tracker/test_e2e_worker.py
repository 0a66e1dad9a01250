"""End to end: a real Celery worker process, PostgreSQL and the broker (Redis in CI); a phantom
patient's two visits uploaded through the API; each gets a stored assessment.

SYNTHETIC PHANTOM DATA. Needs ``DATABASE_URL`` on PostgreSQL (the worker and this process share
the test database); ``make test`` and ``.ci/run`` provide it. Under CI a missing PostgreSQL is a
failure, not a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from tests.tracker.conftest import client_for, upload_files
from tests.tracker.worker import start_worker
from tracker.models import AnalysisRun, Assessment, RunStatus

TIMEOUT_S = 1200


def _database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{host}:{port}/{db['NAME']}"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_analyses_uploaded_visits_until_each_is_assessed(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    if connection.vendor != "postgresql":
        if os.environ.get("CI"):
            pytest.fail("the end-to-end test needs DATABASE_URL on PostgreSQL under CI")
        pytest.skip("needs DATABASE_URL on PostgreSQL (the worker shares the test database)")
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "TRACKER_VAR_DIR": str(settings.VAR_DIR),
    }
    worker = start_worker(env, log_path)
    try:
        client = client_for(teams["alice"])
        patient = teams["patient"]
        codes = []
        for folder in phantom_visits:
            truth = json.loads((folder / "truth.json").read_text())
            response = client.post(
                f"/api/patients/{patient.code}/visits/",
                {"acquired_on": truth["acquired_on"], **upload_files(folder)},
                format="multipart",
            )
            assert response.status_code == 201, response.content
            codes.append(response.json()["code"])
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT_S:
            failed = AnalysisRun.objects.filter(visit__code__in=codes, status=RunStatus.FAILED)
            assert not failed.exists(), [r.error for r in failed]
            assert worker.poll() is None, log_path.read_text()[-3000:]
            assessed = Assessment.objects.filter(visit__code__in=codes, is_current=True)
            if (
                assessed.count() == len(codes)
                and not AnalysisRun.objects.filter(
                    visit__code__in=codes, is_current=False, status__in=["queued", "running"]
                ).exists()
            ):
                break
            time.sleep(2)
        else:
            pytest.fail(f"not assessed within {TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
        timeline = client.get(f"/api/patients/{patient.code}/timeline/").json()
        categories = [v["assessment"]["category"] for v in timeline["visits"]]
        assert categories[0] == "baseline" and len(categories) == 2
        for visit in timeline["visits"]:
            assert visit["analysis"]["status"] == "done"
            assert visit["results"]["model"]["name"] == "tumour-segmenter"
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
