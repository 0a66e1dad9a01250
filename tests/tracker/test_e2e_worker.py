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


def _worker_env() -> dict[str, str]:
    """The environment a worker needs to share this test's database, media and broker; the
    test fails under CI (and is skipped elsewhere) without PostgreSQL."""
    if connection.vendor != "postgresql":
        if os.environ.get("CI"):
            pytest.fail("the end-to-end test needs DATABASE_URL on PostgreSQL under CI")
        pytest.skip("needs DATABASE_URL on PostgreSQL (the worker shares the test database)")
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "TRACKER_VAR_DIR": str(settings.VAR_DIR),
    }


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_analyses_uploaded_visits_until_each_is_assessed(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    env = _worker_env()
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
        assert categories[0] == "baseline"
        assert len(categories) == 2
        for visit in timeline["visits"]:
            assert visit["analysis"]["status"] == "done"
            assert visit["results"]["model"]["name"] == "tumour-segmenter"
        # The model was loaded and run when the worker started, on ONNX Runtime (CPU).
        assert "warmed up on onnx" in log_path.read_text()
        # and kept the images between a visit's stages
        assert "keeping up to 768 MiB of images between a visit's stages" in log_path.read_text()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_leaves_nothing_half_written_and_the_sweeper_recovers_the_run(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    """kill -9 a worker in the middle of a stage: the run stays claimed, the originals are
    intact, no partial output folder is left; the sweeper requeues it and a new worker
    finishes it."""
    import hashlib
    import signal

    from tracker.models import Scan
    from tracker.services.runs import runs_requeue_stale
    from tracker.storage import run_files

    env = _worker_env()
    client = client_for(teams["alice"])
    folder = phantom_visits[0]
    truth = json.loads((folder / "truth.json").read_text())
    first = start_worker(env, tmp_path / "first.log")
    try:
        response = client.post(
            f"/api/patients/{teams['patient'].code}/visits/",
            {"acquired_on": truth["acquired_on"], **upload_files(folder)},
            format="multipart",
        )
        assert response.status_code == 201, response.content
        code = response.json()["code"]
        started = time.monotonic()
        while time.monotonic() - started < TIMEOUT_S:
            run = AnalysisRun.objects.get(visit__code=code)
            if run.status == RunStatus.RUNNING and run.stage == "prepare":
                time.sleep(3)  # well inside the stage
                break
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    run = AnalysisRun.objects.get(visit__code=code)
    assert (run.stage, run.status) == ("prepare", RunStatus.RUNNING)
    assert not run_files(run).prepared.exists()  # written whole or not at all
    for scan in Scan.objects.filter(visit__code=code):
        stored = Path(settings.MEDIA_ROOT) / scan.file.name
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == scan.sha256
    assert runs_requeue_stale(older_than_s=0).runs == [str(run.code)]
    second = start_worker(env, tmp_path / "second.log")
    try:
        started = time.monotonic()
        while not Assessment.objects.filter(visit__code=code, is_current=True).exists():
            assert time.monotonic() - started < TIMEOUT_S, (tmp_path / "second.log").read_text()[
                -3000:
            ]
            assert second.poll() is None
            time.sleep(2)
        run.refresh_from_db()
        assert run.status == RunStatus.DONE
        assert run.attempts >= 2
    finally:
        second.terminate()
        try:
            second.wait(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
