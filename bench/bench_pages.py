"""Page and report figures (issue 7 targets), PostgreSQL.

1. Server time of the pages for a patient with 20 analysed visits (Django's test client:
   middleware, session auth, queries, templates, the SVG chart): the timeline page, a visit page
   (viewer metadata, lesion table, QC) and the patient list with 1,000 patients; p50/p95 of
   ``--requests`` after 5 warm-up requests. Target <= 200 ms.
2. A viewer slice (PNG of one axial slice from the memory-mapped display volumes).
3. The tumour-board PDF for a patient with 10 analysed visits, key slices included; median of
   ``--reports``. Target <= 3 s.

Visits are made-up records (tests.tracker.factories.analysed_patient) with display volumes of a
real prepared visit's size written for each run (random intensities: the cost, not the
picture, is measured here).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tracker_bench \\
    .venv/bin/python bench/bench_pages.py

Writes bench/results/pages.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import REPO, environment, setup_django_bench, timed_gets, write_results

sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")
# A prepared 1 mm visit cropped to the brain: about this many voxels (z, y, x).
DISPLAY_SHAPE = (150, 180, 150)


def _display_for(patient: Any) -> None:
    """Display volumes of a real visit's size for each of the patient's runs."""
    import numpy as np

    from inference.measurement.render import DisplayVolumes, key_slices, write_display
    from tracker.models import AnalysisRun
    from tracker.storage import run_files

    rng = np.random.default_rng(7)
    labels = np.zeros(DISPLAY_SHAPE, np.uint8)
    labels[60:90, 70:110, 50:90] = 2
    labels[65:85, 80:100, 60:80] = 3
    layers = {
        name: rng.integers(0, 255, DISPLAY_SHAPE, dtype=np.uint8)
        for name in ("t1", "t1c", "t2", "flair", "tumour")
    }
    layers["labels"] = labels
    meta = {
        "grid": {
            "shape_zyx": list(DISPLAY_SHAPE),
            "spacing_mm": [1.0, 1.0, 1.0],
            "origin_mm": [0.0, 0.0, 0.0],
            "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1],
        },
        "windows": {},
        "key_slices": key_slices(labels),
    }
    for run in AnalysisRun.objects.filter(visit__patient=patient, is_current=True):
        write_display(DisplayVolumes(layers, meta), run_files(run).display)


def figures(requests: int, reports: int) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.test import Client

    from tests.tracker.factories import analysed_patient
    from tracker.models import CareTeam, Membership, Patient

    user = User.objects.create_user("bench", password="bench-password-1")
    team = CareTeam.objects.create(name="Bench team")
    Membership.objects.create(team=team, user=user)
    twenty = analysed_patient(team, "PAGES-20", 20, reviewer=user)
    ten = analysed_patient(team, "REPORT-10", 10, reviewer=user)
    _display_for(twenty)
    _display_for(ten)
    Patient.objects.bulk_create(
        Patient(team=team, label=f"LIST-{index:04d}") for index in range(998)
    )
    client = Client()
    client.force_login(user)
    last_visit = twenty.visits.order_by("acquired_on").last()
    assert last_visit is not None
    out: dict[str, Any] = {"data": "made-up records; display volumes of random intensities"}
    out["timeline_page_20_visits"] = timed_gets(client, f"/patients/{twenty.code}/", requests)
    out["visit_page_20_visit_patient"] = timed_gets(client, f"/visits/{last_visit.code}/", requests)
    out["patient_list_page_1000"] = timed_gets(client, "/patients/", requests)
    out["patient_list_page_1000"]["patients"] = Patient.objects.filter(team=team).count()
    middle = DISPLAY_SHAPE[0] // 2
    out["viewer_slice_png"] = timed_gets(
        client, f"/visits/{last_visit.code}/slices/t1c/axial/{middle}.png", requests
    )
    for key in ("timeline_page_20_visits", "visit_page_20_visit_patient", "patient_list_page_1000"):
        out[key]["target_ms"] = 200
    seconds = []
    size = 0
    for _ in range(reports):
        started = time.perf_counter()
        response = client.get(f"/patients/{ten.code}/export/report.pdf")
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200
        assert response.content.startswith(b"%PDF")
        size = len(response.content)
    out["report_pdf_10_visits"] = {
        "reports": reports,
        "median_s": round(statistics.median(seconds), 3),
        "max_s": round(max(seconds), 3),
        "all_s": [round(s, 3) for s in seconds],
        "bytes": size,
        "target_s": 3,
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--reports", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/pages.json")
    args = parser.parse_args()
    setup_django_bench("bench-pages-")
    result = {"environment": environment(), "database": "PostgreSQL"}
    result.update(figures(args.requests, args.reports))
    for key, value in result.items():
        if key != "environment":
            print(key, value, flush=True)
    write_results(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
