"""Tracker service figures on PostgreSQL and Redis (issue 6 targets).

1. ``timeline``: GET /api/patients/{id}/timeline/ for a patient with 20 analysed visits, server
   time in process (Django's test client: middleware, auth, queries, JSON), p50/p95 of 100
   requests after 5 warm-up requests. Target p95 <= 100 ms.
2. ``patient_list``: GET /api/patients/ (first page of 50) with 1,000 patients in the user's
   team, p50/p95 of 100 requests. Target p95 <= 150 ms.
3. ``upload_to_assessment``: visits of SYNTHETIC PHANTOM patients uploaded through the API,
   one real Celery worker process consuming every queue (``--pool=solo``) on this machine:
   seconds from the upload's 201 to its assessment stored. For each of ``--patients``
   patients, its first visit and then its follow-up (which adds registration to the first
   visit and lesion tracking across both); medians of each. A warm-up patient loads the
   model first. Target <= 30 s per visit on 2 cores (issue 6); issue 19 asks <= 10 s for a
   follow-up. ``--baseline REF`` times the same patients with a worker running the code of git
   commit REF (a temporary worktree; same database schema), patient by patient in turn with the
   current code's worker, each worker restarted and ready (model loaded and warmed) first.

Needs ``DATABASE_URL`` (PostgreSQL; a database named ``tracker_bench`` is created and emptied)
and ``CELERY_BROKER_URL`` (Redis):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tracker_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 .venv/bin/python bench/bench_service.py

Writes bench/results/service.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    REPO,
    baseline_worktree,
    environment,
    remove_worktree,
    setup_django_bench,
    timed_gets,
    write_results,
)

sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")  # Django's test client


def api_figures(requests: int) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.test import Client

    from tests.tracker.factories import analysed_patient
    from tracker.models import CareTeam, Membership, Patient

    user = User.objects.create_user("bench", password="bench-password-1")
    team = CareTeam.objects.create(name="Bench team")
    Membership.objects.create(team=team, user=user)
    patient = analysed_patient(team, "TIMELINE-20", 20, reviewer=user)
    Patient.objects.bulk_create(
        Patient(team=team, label=f"LIST-{index:04d}") for index in range(999)
    )
    client = Client()
    client.force_login(user)
    timeline = timed_gets(client, f"/api/patients/{patient.code}/timeline/", requests)
    timeline["target_p95_ms"] = 100
    listing = timed_gets(client, "/api/patients/", requests)
    listing["patients"] = Patient.objects.filter(team=team).count()
    listing["target_p95_ms"] = 150
    return {"timeline_20_visits": timeline, "patient_list_1000": listing}


def _upload_and_wait(
    client: Any, worker: Any, patient: Any, folder: Path, *, acquired_on: str, log: Path
) -> dict[str, Any]:
    """Upload one visit, wait for its stored assessment; seconds and stage timings."""
    from tracker.models import AnalysisRun, Assessment

    files = {
        field: (folder / f"{folder.name}-{suffix}.nii.gz").open("rb")
        for field, suffix in (("t1", "t1n"), ("t1c", "t1c"), ("t2", "t2w"), ("flair", "t2f"))
    }
    load = os.getloadavg()[0]
    started = time.perf_counter()
    response = client.post(
        f"/api/patients/{patient.code}/visits/", {"acquired_on": acquired_on, **files}
    )
    accepted = time.perf_counter()
    for handle in files.values():
        handle.close()
    assert response.status_code == 201, response.content
    code = response.json()["code"]
    while not Assessment.objects.filter(visit__code=code, is_current=True).exists():
        run = AnalysisRun.objects.get(visit__code=code)
        if run.status == "failed":
            raise RuntimeError(run.error)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker stopped; see {log}")
        time.sleep(0.2)
    done = time.perf_counter()
    run = AnalysisRun.objects.get(visit__code=code)
    return {
        "upload_s": round(accepted - started, 2),
        "upload_to_assessment_s": round(done - accepted, 2),
        "stages_s": {k: v.get("seconds") for k, v in run.stages.items()},
        "load_average_1min_before": round(load, 2),
    }


def _wait_ready(worker: Any, log: Path, timeout_s: float = 300.0) -> None:
    """Until the worker's log says it has warmed the model (``TRACKER_WARM_UP``, on by
    default; the worker consumes the gpu queue with the solo pool, so it warms up)."""
    deadline = time.monotonic() + timeout_s
    while "warmed up on" not in (log.read_text() if log.is_file() else ""):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the worker did not get ready; see {log}")
        time.sleep(0.5)


def _peak_rss_mib(pid: int) -> float | None:
    """A running process' peak resident memory (VmHWM), MiB; None where /proc has none."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = [line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")]
    return round(int(kib[0]) / 1024, 1) if kib else None


def upload_figures(
    patients: int, work: Path, versions: dict[str, Path] | None = None
) -> dict[str, Any]:
    """For each phantom patient: its first visit (prepare, segment, measure, assess), then its
    follow-up (the same plus registration to the first visit and tracking across both).

    With several code ``versions`` (label -> checkout), each patient is analysed by a worker of
    each version in turn (the worker restarted, and ready, before the patient's first upload),
    so every version sees the machine as it is at that minute."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    from inference.segmentation.phantoms import Scenario, make_patient, write_patient
    from tests.tracker.worker import start_worker
    from tracker.models import CareTeam, Membership, Patient

    user = User.objects.create_user("uploader", password="bench-password-1")
    team = CareTeam.objects.create(name="Upload team")
    Membership.objects.create(team=team, user=user)
    client = Client()
    client.force_login(user)
    env = {**os.environ, "MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    versions = versions or {"current": REPO}
    side_by_side = len(versions) > 1
    rows = []
    peaks: dict[str, list[float]] = {version: [] for version in versions}
    worker = None
    running = ""

    def stop(worker: Any) -> None:
        peak = _peak_rss_mib(worker.pid)
        if peak is not None:
            peaks[running].append(peak)
        worker.terminate()
        worker.wait(timeout=60)

    try:
        # Without a baseline, patient 0 warms the worker: its first segmentation loads the
        # model. Side by side, every worker is ready (model loaded, warmed) before its patient.
        for index in range(patients + (0 if side_by_side else 1)):
            phantom = make_patient(950000 + index, visits=2, scenario=Scenario.STABLE)
            folders = write_patient(phantom, work / str(index))
            for version, code in versions.items():
                log = work / f"worker-{index}-{len(rows)}.log"
                if worker is None or side_by_side:
                    if worker is not None:
                        stop(worker)
                    worker = start_worker(env, log, code=code)
                    running = version
                    if side_by_side:
                        _wait_ready(worker, log)
                record = Patient.objects.create(team=team, label=f"UPLOAD-{index}-{version}")
                for number, folder in enumerate(folders):
                    truth = json.loads((folder / "truth.json").read_text())
                    row = {
                        "code": version,
                        "patient": index,
                        "visit": "first" if number == 0 else "follow-up",
                        "warm_up": index == 0 and not side_by_side,
                        **_upload_and_wait(
                            client,
                            worker,
                            record,
                            folder,
                            acquired_on=truth["acquired_on"],
                            log=log,
                        ),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        if worker is not None:
            stop(worker)

    def median(kind: str, version: str) -> float | None:
        values = [
            r["upload_to_assessment_s"]
            for r in rows
            if r["visit"] == kind and not r["warm_up"] and r["code"] == version
        ]
        return statistics.median(values) if values else None

    def stage_medians(version: str) -> dict[str, float]:
        timed = [r for r in rows if r["code"] == version and not r["warm_up"]]
        names = sorted({name for r in timed for name in r["stages_s"]})
        return {
            name: round(
                statistics.median(
                    r["stages_s"][name]
                    for r in timed
                    if r["stages_s"].get(name) is not None
                    and (name != "register" or r["visit"] == "follow-up")
                ),
                2,
            )
            for name in names
        }

    return {
        "data": "SYNTHETIC PHANTOM",
        "worker": "one Celery worker process, --pool=solo, all queues, on this machine",
        "versions": {
            version: "this checkout" if code == REPO else "a temporary git worktree"
            for version, code in versions.items()
        },
        "visits": rows,
        **{
            version: {
                "first_visit_median_s": median("first", version),
                "follow_up_median_s": median("follow-up", version),
                "stage_medians_s": stage_medians(version),
                # the worker process' own peak (VmHWM), the highest of its restarts
                "worker_peak_rss_mib": max(peaks[version], default=None),
            }
            for version in versions
        },
        "target_s": {"follow_up_on_2_cpu_cores": 10, "before_issue_19": 30},
        "target_worker_peak_rss_mib": 3072,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument(
        "--patients", type=int, default=5, help="patients (first visit + follow-up) timed"
    )
    parser.add_argument("--skip-upload", action="store_true")
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also time uploads with a worker running the code of this git commit, side by side",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/service.json")
    args = parser.parse_args()
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis"):
        sys.exit("set CELERY_BROKER_URL to Redis")
    work = setup_django_bench("bench-service-")
    result: dict[str, Any] = {
        "environment": environment(),
        "database": "PostgreSQL",
        "broker": "Redis",
    }
    result.update(api_figures(args.requests))
    print(
        json.dumps({k: result[k] for k in ("timeline_20_visits", "patient_list_1000")}), flush=True
    )
    if not args.skip_upload:
        versions = {"current": REPO}
        root = Path(tempfile.mkdtemp(prefix="bench-service-code-"))
        try:
            if args.baseline:
                versions = {
                    f"baseline {args.baseline}": baseline_worktree(args.baseline, root),
                    **versions,
                }
            result["upload_to_assessment"] = upload_figures(args.patients, work, versions)
        finally:
            if args.baseline:
                remove_worktree(root / "baseline")
            shutil.rmtree(root, ignore_errors=True)
    write_results(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
