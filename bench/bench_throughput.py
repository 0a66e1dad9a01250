"""A burst of uploads: throughput, queue wait and end-to-end latency (SYNTHETIC PHANTOM visits).

For each worker count in ``--workers`` (default 1 and 2), that many real Celery worker
processes (``--pool=solo``, every queue, the model loaded and warmed at start) on PostgreSQL and
Redis; once all have warmed up, ``--visits`` first visits of phantom patients are uploaded
through the API as fast as the API takes them (a bounded burst, as when a scanner's morning
list is sent at once), and each one's assessment is waited for. Reported per worker count:

- throughput: visits per hour, from the first upload accepted to the last assessment stored;
- queue wait: from an upload accepted to its preparation starting (p50, p95, max);
- end to end: from an upload accepted to its assessment stored (p50, p95, max);
- the median seconds of each stage (what a capacity plan multiplies).

Then the same burst against the embedded default (SQLite and the filesystem broker in a
temporary folder, one worker, as ``make demo`` runs; a child process of this script, since the
database is chosen when Django starts; ``--no-embedded`` skips it).

Needs ``DATABASE_URL`` (PostgreSQL; a database whose name contains "bench" is created and
emptied) and ``CELERY_BROKER_URL`` (Redis):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tracker_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 .venv/bin/python bench/bench_throughput.py

Writes bench/results/throughput.json. docs/capacity.md turns the figures into a plan.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import REPO, environment, setup_django_bench, write_results

sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")  # Django's test client

WARM_TIMEOUT_S = 300
BURST_TIMEOUT_S = 3600


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_s": round(statistics.median(ordered), 2),
        "p95_s": round(p95, 2),
        "max_s": round(ordered[-1], 2),
    }


def _phantoms(count: int, work: Path) -> list[Path]:
    from inference.segmentation.phantoms import Scenario, make_patient, write_patient

    folders = []
    for index in range(count):
        patient = make_patient(960000 + index, visits=1, scenario=Scenario.STABLE)
        folders += write_patient(patient, work / "phantoms" / str(index))
    return folders


def _start_workers(count: int, work: Path) -> tuple[list[Any], list[Path], float]:
    """``count`` workers, each warmed up; seconds until the last one was ready."""
    from django.conf import settings

    from tests.tracker.worker import start_worker

    env = {**os.environ, "MEDIA_ROOT": str(settings.MEDIA_ROOT)}
    started = time.perf_counter()
    logs = [work / f"worker-{count}-{n}.log" for n in range(count)]
    workers = [start_worker(env, log) for log in logs]
    while not all("warmed up on" in log.read_text() for log in logs):
        for worker, log in zip(workers, logs, strict=True):
            if worker.poll() is not None:
                raise RuntimeError(f"a worker stopped; see {log}")
        if time.perf_counter() - started > WARM_TIMEOUT_S:
            raise RuntimeError(f"workers not warmed up in {WARM_TIMEOUT_S} s; see {logs}")
        time.sleep(0.5)
    return workers, logs, time.perf_counter() - started


def burst(workers: int, folders: list[Path], work: Path) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.test import Client

    from tracker.models import AnalysisRun, Assessment, CareTeam, Membership, Patient

    user = User.objects.create_user(f"burst-{workers}", password="bench-password-1")
    team = CareTeam.objects.create(name=f"Burst team {workers}")
    Membership.objects.create(team=team, user=user)
    client = Client()
    client.force_login(user)
    processes, logs, ready_s = _start_workers(workers, work)
    accepted: dict[str, dt.datetime] = {}
    try:
        for index, folder in enumerate(folders):
            patient = Patient.objects.create(team=team, label=f"BURST-{workers}-{index}")
            truth = json.loads((folder / "truth.json").read_text())
            files = {
                field: (folder / f"{folder.name}-{suffix}.nii.gz").open("rb")
                for field, suffix in (
                    ("t1", "t1n"),
                    ("t1c", "t1c"),
                    ("t2", "t2w"),
                    ("flair", "t2f"),
                )
            }
            response = client.post(
                f"/api/patients/{patient.code}/visits/",
                {"acquired_on": truth["acquired_on"], **files},
            )
            for handle in files.values():
                handle.close()
            assert response.status_code == 201, response.content
            accepted[response.json()["code"]] = dt.datetime.now(dt.UTC)
        done: dict[str, dt.datetime] = {}
        started = time.perf_counter()
        while len(done) < len(accepted):
            for assessment in Assessment.objects.filter(
                visit__code__in=[c for c in accepted if c not in done], is_current=True
            ).select_related("visit"):
                done[str(assessment.visit.code)] = dt.datetime.now(dt.UTC)
            failed = AnalysisRun.objects.filter(visit__code__in=accepted, status="failed")
            if failed.exists():
                raise RuntimeError([r.error for r in failed])
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a worker stopped; see {logs}")
            if time.perf_counter() - started > BURST_TIMEOUT_S:
                raise RuntimeError(f"burst not done in {BURST_TIMEOUT_S} s")
            time.sleep(0.2)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    runs = {str(r.visit.code): r for r in AnalysisRun.objects.filter(visit__code__in=accepted)}
    waits = [
        (dt.datetime.fromisoformat(runs[c].stages["prepare"]["started_at"]) - t).total_seconds()
        for c, t in accepted.items()
    ]
    latencies = [(done[c] - t).total_seconds() for c, t in accepted.items()]
    span = (max(done.values()) - min(accepted.values())).total_seconds()
    stage_names = sorted({s for r in runs.values() for s in r.stages})
    stages = {
        name: round(
            statistics.median(r.stages[name]["seconds"] for r in runs.values() if name in r.stages),
            2,
        )
        for name in stage_names
    }
    return {
        "workers": workers,
        "visits": len(accepted),
        "workers_ready_s": round(ready_s, 1),
        "burst_span_s": round(span, 1),
        "throughput_visits_per_hour": round(len(accepted) / span * 3600, 1),
        "queue_wait": percentiles(waits),
        "end_to_end": percentiles(latencies),
        "stage_median_s": stages,
    }


def embedded(visits: int) -> dict[str, Any]:
    """The burst against the embedded default, in this (child) process: SQLite and the
    filesystem broker under a fresh TRACKER_VAR_DIR, one worker."""
    import django
    from django.core.management import call_command

    work = Path(tempfile.mkdtemp(prefix="bench-throughput-embedded-"))
    for name in ("DATABASE_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    os.environ["TRACKER_VAR_DIR"] = str(work / "var")
    os.environ["MEDIA_ROOT"] = str(work / "media")
    django.setup()
    call_command("migrate", verbosity=0)
    return {
        "database": "SQLite (the embedded default)",
        "broker": "filesystem (the embedded default)",
        **burst(1, _phantoms(visits, work), work),
    }


def _embedded_in_child(visits: int) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, __file__, "--embedded-only", "--visits", str(visits)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    row: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=6, help="uploads in each burst")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded default")
    parser.add_argument("--embedded-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/throughput.json")
    args = parser.parse_args()
    if args.embedded_only:
        print(json.dumps(embedded(args.visits)), flush=True)
        return 0
    if not os.environ.get("CELERY_BROKER_URL", "").startswith("redis"):
        sys.exit("set CELERY_BROKER_URL to Redis")
    work = setup_django_bench("bench-throughput-")
    folders = _phantoms(args.visits, work)
    result: dict[str, Any] = {
        "environment": environment(),
        "data": "SYNTHETIC PHANTOM first visits (skull and scalp as the generator draws them)",
        "database": "PostgreSQL",
        "broker": "Redis",
        "worker": "Celery --pool=solo, every queue, model warmed at start, on this machine",
        "bursts": [],
    }
    for count in (int(n) for n in args.workers.split(",")):
        row = burst(count, folders, work)
        result["bursts"].append(row)
        print(json.dumps(row), flush=True)
    if not args.no_embedded:
        result["embedded_default"] = _embedded_in_child(args.visits)
        print(json.dumps(result["embedded_default"]), flush=True)
    write_results(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
