"""What every benchmark records: where the test data is, and the machine and software it ran on."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parent.parent


def baseline_worktree(ref: str, root: Path) -> Path:
    """The code of commit ``ref``, checked out (detached) under ``root`` for a side-by-side run;
    remove it with ``remove_worktree``."""
    folder = root / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(folder), ref],
        check=True,
    )
    return folder


def remove_worktree(folder: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=False
    )


def data_folder() -> Path:
    return Path(os.environ.get("TRACKER_TEST_DATA", REPO.parent / "shared" / "data")).resolve()


def machine() -> dict[str, Any]:
    model = platform.processor()
    if not model:
        try:
            lines = Path("/proc/cpuinfo").read_text().splitlines()
            model = next(
                (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), ""
            )
        except OSError:
            model = ""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": model or platform.machine(),
        "ram_total_gib": round(ram / 2**30, 2) if ram else None,
        "platform": platform.platform(),
    }


def environment(**extra: Any) -> dict[str, Any]:
    """Command, date, machine, versions and load: what a figure needs to be reproduced."""
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "python": platform.python_version(),
        "simpleitk": sitk.Version_VersionString(),
        "numpy": np.__version__,
        **extra,
        # Other work on the machine skews the timings: the 1/5/15-minute load at the start.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_results(path: Path, result: dict[str, Any]) -> None:
    """Write a result as JSON, with paths inside the checkout or beside it made relative to it
    (``../shared/data``, ``.venv/bin/python``) so results read the same on every machine."""
    text = json.dumps(result, indent=2, default=float) + "\n"
    text = text.replace(f"{REPO.parent}/shared/", "../shared/").replace(f"{REPO}/", "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- the service benchmarks (Django) ---------------------------------------------------------


def percentiles(seconds: list[float]) -> dict[str, Any]:
    """p50, p95 and max of request times, in ms."""
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "requests": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p95_ms": round(1000 * p95, 2),
        "max_ms": round(1000 * ordered[-1], 2),
    }


def timed_gets(client: Any, url: str, count: int) -> dict[str, Any]:
    """``count`` timed GETs of ``url`` (Django test client) after 5 warm-up ones."""
    for _ in range(5):
        assert client.get(url).status_code == 200
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(url)
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200
    return percentiles(seconds)


def reset_database() -> None:
    """Empty the benchmark's own database and migrate it (Django must be set up)."""
    from django.core.management import call_command
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    call_command("migrate", verbosity=0)


def setup_django_bench(prefix: str) -> Path:
    """Set up Django on the benchmark's own PostgreSQL database (``DATABASE_URL``, its name
    containing "bench"; created if missing, then emptied and migrated) with media in a fresh
    temporary folder, which is returned."""
    import subprocess
    import tempfile

    url = os.environ.get("DATABASE_URL", "")
    server, _, name = url.rpartition("/")
    if not url.startswith("postgres") or "bench" not in name:
        sys.exit("set DATABASE_URL to a PostgreSQL database whose name contains 'bench'")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MEDIA_ROOT"] = str(work / "media")
    subprocess.run(
        ["psql", f"{server}/postgres", "-c", f'CREATE DATABASE "{name}"'],
        capture_output=True,
        check=False,
    )
    import django

    django.setup()
    reset_database()
    return work
