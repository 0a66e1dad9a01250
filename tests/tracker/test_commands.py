"""Management commands: import a tree of visits, requeue stale runs, seed the demo cohort."""

from __future__ import annotations

import datetime as dt
import shutil
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from tracker.models import AnalysisRun, Patient, RunStatus, Stage, Visit

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_import_visits_imports_good_folders_and_says_why_it_skipped_the_others(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    tree = tmp_path / "Patient-007"
    shutil.copytree(phantom_visits[0], tree / "week-000")
    broken = tree / "week-006"
    shutil.copytree(phantom_visits[1], broken)
    next(broken.glob("*-t2f.nii.gz")).unlink()  # FLAIR missing
    next(broken.glob("*-t1c.nii.gz")).unlink()  # and T1 post-contrast: nothing to segment
    out = StringIO()
    call_command("import_visits", str(tmp_path), "--team", "Neuro-A", stdout=out)
    text = out.getvalue()
    assert "imported 1 visit(s), skipped 1" in text
    assert (
        "skipped Patient-007/week-006: week-006: cannot segment without T1 post-contrast or "
        "FLAIR: found T1 (PHANTOM-930001-001-t1n.nii.gz), T2 (PHANTOM-930001-001-t2w.nii.gz)"
    ) in text
    patient = Patient.objects.get(label="Patient-007")
    assert list(patient.visits.values_list("acquired_on", flat=True)) == [dt.date(2024, 1, 1)]


def test_requeue_stale_requeues_and_reports(teams: dict[str, Any]) -> None:
    visit = Visit.objects.create(patient=teams["patient"], acquired_on="2024-01-01")
    run = AnalysisRun.objects.create(visit=visit, stage=Stage.MEASURE, status=RunStatus.RUNNING)
    AnalysisRun.objects.filter(pk=run.pk).update(claimed_at=timezone.now() - dt.timedelta(days=1))
    out = StringIO()
    call_command("requeue_stale", "--older-than", "60", stdout=out)
    assert "requeued 1 run(s)" in out.getvalue()
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


@pytest.mark.slow
def test_demo_seeds_a_synthetic_cohort_with_treatments_and_queued_runs(
    settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("demo", "--patients", "1", "--visits", "2", stdout=out)
    patient = Patient.objects.get()
    assert "SYNTHETIC" in patient.label
    assert sorted(patient.treatments.values_list("kind", flat=True)) == [
        "chemotherapy",
        "radiotherapy",
        "surgery",
    ]
    assert patient.visits.count() == 2
    assert AnalysisRun.objects.filter(status=RunStatus.QUEUED, stage=Stage.PREPARE).count() == 2
    assert "login: demo / " in out.getvalue()


@pytest.mark.slow
def test_import_visits_reads_a_dicom_exam(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    import SimpleITK as sitk

    from inference.imaging.io import write_dicom_series

    exam = tmp_path / "dicom" / "EXAM-01"
    names = {"t1n": "T1 MPRAGE", "t1c": "T1 POST GD", "t2w": "Ax T2 FSE", "t2f": "AX FLAIR"}
    for number, (suffix, description) in enumerate(names.items(), start=1):
        image = sitk.ReadImage(str(next(phantom_visits[0].glob(f"*-{suffix}.nii.gz"))))
        write_dicom_series(
            image, exam / f"series{number}", series_description=description, series_number=number
        )
    out = StringIO()
    call_command("import_visits", str(tmp_path / "dicom"), "--team", "Neuro-A", stdout=out)
    assert "imported 1 visit(s), skipped 0" in out.getvalue(), out.getvalue()
    visit = Patient.objects.get(label="EXAM-01").visits.get()
    assert sorted(visit.scans.values_list("sequence", flat=True)) == ["flair", "t1", "t1c", "t2"]


def test_the_demo_wait_reports_progress_and_the_end(teams: dict[str, Any]) -> None:
    """The console says how far the analyses are while it waits (visits done / total)."""
    from tracker.management.commands.demo import Command

    for day, (stage, status) in enumerate(
        [(Stage.DONE, RunStatus.DONE), (Stage.DONE, RunStatus.DONE)], start=1
    ):
        visit = Visit.objects.create(patient=teams["patient"], acquired_on=f"2024-01-0{day}")
        AnalysisRun.objects.create(visit=visit, stage=stage, status=status)
    out = StringIO()
    command = Command(stdout=out)
    command._wait(teams["patient"].team, timeout=5)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  2 / 2 visits analysed after")
    assert lines[-1].startswith("all 2 runs finished (0 failed)")
