"""The analysis pipeline's bookkeeping: claims, failures, the sweeper, constraints; and, slow, the
real stages end to end in this process on two phantom visits (SYNTHETIC PHANTOM DATA)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from tests.tracker.conftest import client_for, run_all_stages, upload_files
from tracker.models import (
    AnalysisRun,
    Assessment,
    Lesion,
    RunStatus,
    Scan,
    Stage,
    TreatmentEvent,
    Visit,
)
from tracker.queues import Task
from tracker.services import enqueue, runs
from tracker.services.assessments import patient_assess

pytestmark = pytest.mark.django_db


def test_a_stage_is_claimed_once(teams: dict[str, Any]) -> None:
    visit = Visit.objects.create(patient=teams["patient"], acquired_on="2024-01-01")
    run = AnalysisRun.objects.create(visit=visit)
    assert runs.run_claim(run_code=str(run.code), stage=Stage.PREPARE) is not None
    assert runs.run_claim(run_code=str(run.code), stage=Stage.PREPARE) is None  # already running
    assert runs.run_claim(run_code=str(run.code), stage=Stage.SEGMENT) is None  # not at that stage


def test_a_stage_that_cannot_read_its_input_fails_the_run_with_the_reason(
    teams: dict[str, Any],
) -> None:
    visit = Visit.objects.create(patient=teams["patient"], acquired_on="2024-01-01")
    run = AnalysisRun.objects.create(visit=visit)  # no originals on disk
    assert runs.stage_execute(run_code=str(run.code), stage=Stage.PREPARE) == "failed"
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("prepare: ")
    assert run.stages["prepare"]["status"] == "failed"
    assert runs.stage_execute(run_code=str(run.code), stage=Stage.PREPARE) == "not claimed"


def test_the_sweeper_requeues_runs_a_dead_worker_left_behind(
    teams: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    visit = Visit.objects.create(patient=teams["patient"], acquired_on="2024-01-01")
    stuck = AnalysisRun.objects.create(visit=visit, stage=Stage.SEGMENT, status=RunStatus.RUNNING)
    AnalysisRun.objects.filter(pk=stuck.pk).update(
        claimed_at=timezone.now() - dt.timedelta(hours=2)
    )
    fresh_visit = Visit.objects.create(patient=teams["patient"], acquired_on="2024-02-01")
    fresh = AnalysisRun.objects.create(
        visit=fresh_visit, stage=Stage.SEGMENT, status=RunStatus.RUNNING, claimed_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        requeued = runs.runs_requeue_stale(older_than_s=600)
    assert requeued.runs == [str(stuck.code)]
    assert requeued.patients == []
    stuck.refresh_from_db()
    fresh.refresh_from_db()
    assert (stuck.stage, stuck.status) == (Stage.SEGMENT, RunStatus.QUEUED)
    assert fresh.status == RunStatus.RUNNING
    assert len(callbacks) == 1


def test_a_broker_that_is_down_loses_nothing_the_sweeper_sends_it_later(
    teams: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database says what is due; a send that fails is logged, not raised, and the run and
    the patient's assessment request stay for the sweeper."""
    from kombu.exceptions import OperationalError

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(enqueue, "task_send", broker_down)
    patient = teams["patient"]
    visit = Visit.objects.create(patient=patient, acquired_on="2024-01-01")
    with django_capture_on_commit_callbacks(execute=True):
        run = runs.run_create(visit=visit)
        enqueue.patient_reassess(patient=patient)
    assert "could not queue prepare" in caplog.text
    assert "could not queue the assessment" in caplog.text
    run.refresh_from_db()
    patient.refresh_from_db()
    assert (run.stage, run.status) == (Stage.PREPARE, RunStatus.QUEUED)
    assert patient.assessment_requested_at is not None
    AnalysisRun.objects.filter(pk=run.pk).update(updated_at=timezone.now() - dt.timedelta(hours=1))
    type(patient).objects.filter(pk=patient.pk).update(
        assessment_requested_at=timezone.now() - dt.timedelta(hours=1)
    )
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(enqueue, "task_send", lambda task, code: sent.append((task, code)))
    with django_capture_on_commit_callbacks(execute=True):
        requeued = runs.runs_requeue_stale(older_than_s=600)
    assert requeued.runs == [str(run.code)]
    assert requeued.patients == [str(patient.code)]
    assert sorted(sent) == [
        (Task.ASSESS_PATIENT, str(patient.code)),
        (Task.PREPARE, str(run.code)),
    ]


def test_an_assessment_clears_the_request_it_covers(teams: dict[str, Any]) -> None:
    patient = teams["patient"]
    enqueue.patient_reassess(patient=patient)
    patient.refresh_from_db()
    assert patient.assessment_requested_at is not None
    patient_assess(patient=patient)
    patient.refresh_from_db()
    assert patient.assessment_requested_at is None
    assert runs.runs_requeue_stale(older_than_s=0).patients == []


def test_what_must_never_happen_is_a_database_constraint(teams: dict[str, Any]) -> None:
    visit = Visit.objects.create(patient=teams["patient"], acquired_on="2024-01-01")
    Scan.objects.create(visit=visit, sequence="t1", file="a", sha256="0" * 64, size_bytes=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Scan.objects.create(visit=visit, sequence="t1", file="b", sha256="1" * 64, size_bytes=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        AnalysisRun.objects.create(
            visit=visit, stage=Stage.DONE, status=RunStatus.DONE, error="it broke"
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        AnalysisRun.objects.create(visit=visit, status=RunStatus.FAILED, error="")
    with pytest.raises(IntegrityError), transaction.atomic():
        Visit.objects.create(patient=teams["patient"], acquired_on="2024-01-01")


@pytest.mark.slow
def test_two_phantom_visits_are_analysed_tracked_and_assessed(
    teams: dict[str, Any], phantom_visits: list[Path], django_capture_on_commit_callbacks: Any
) -> None:
    """SYNTHETIC PHANTOM: the real stages in this process (the worker's path without Celery).
    Both visits arrive before either is analysed, and the follow-up is analysed first (a
    history sent at once): it is still registered to its prior and shown beside it."""
    client = client_for(teams["alice"])
    patient = teams["patient"]
    TreatmentEvent.objects.create(
        patient=patient, kind="radiotherapy", started_on="2023-11-20", ended_on="2023-12-29"
    )
    import json

    truths = [json.loads((folder / "truth.json").read_text()) for folder in phantom_visits]
    runs = []
    for folder, truth in zip(phantom_visits, truths, strict=True):
        with django_capture_on_commit_callbacks(execute=False):
            response = client.post(
                f"/api/patients/{patient.code}/visits/",
                {"acquired_on": truth["acquired_on"], **upload_files(folder)},
                format="multipart",
            )
        assert response.status_code == 201, response.content
        runs.append(AnalysisRun.objects.get(visit__code=response.json()["code"]))
    for run in reversed(runs):
        run_all_stages(run)
        run.refresh_from_db()
        assert (run.stage, run.status, run.is_current) == (Stage.DONE, RunStatus.DONE, True)
        assert run.model_name == "tumour-segmenter"
        assert len(run.weights_sha256) == 64
    timeline = client.get(f"/api/patients/{patient.code}/timeline/").json()
    visits = timeline["visits"]
    assert [v["assessment"]["category"] for v in visits] == ["baseline", "SD"]
    assert truths[1]["expected_response"] == "SD"
    for visit, truth in zip(visits, truths, strict=True):
        measured = visit["results"]["volumes_ml"]["WT"]
        assert measured == pytest.approx(truth["volumes_ml"]["WT"], rel=0.1)
    follow_up = visits[1]["results"]
    roles = {r["role"]: r for r in follow_up["registrations"]}
    assert set(roles) == {"prior", "baseline"}
    assert roles["prior"]["to_visit"] == visits[0]["code"]
    assert roles["prior"]["passed"] is True
    tracks = set(Lesion.objects.filter(kind="core").values_list("track", flat=True))
    assert tracks == {"L1"}
    # T2/FLAIR lesions are recorded too; an enhancing tumour is not assessed on them (untracked)
    t2_flair = Lesion.objects.filter(kind="t2flair")
    assert t2_flair.count() >= 2
    assert set(t2_flair.values_list("track", flat=True)) == {""}
    assert follow_up["t2_flair_lesions"][0]["longest_mm"] > follow_up["lesions"][0]["longest_mm"]
    _check_the_pictures(teams, visits)
    # Editing an earlier input re-assesses: clinical deterioration at the follow-up is PD.
    second = Visit.objects.get(code=visits[1]["code"])
    second.clinical_status = "worse"
    second.save(update_fields=["clinical_status"])
    patient_assess(patient=patient)
    current = Assessment.objects.get(visit=second, is_current=True)
    assert current.category == "PD"
    assert current.is_progression_visit
    # kept: its assessment when it was the only visit analysed (baseline), then with its prior
    earlier = Assessment.objects.filter(visit=second, is_current=False).order_by("pk")
    assert [a.category for a in earlier] == ["baseline", "SD"]


def _check_the_pictures(teams: dict[str, Any], visits: list[dict[str, Any]]) -> None:
    """The measure stage wrote the display images, the follow-up's with the baseline brought
    onto its grid; the visit page and its slices serve them (SYNTHETIC PHANTOM)."""
    import io

    import numpy as np
    from django.test import Client
    from PIL import Image

    from inference.measurement import render
    from tracker.storage import run_files

    run = AnalysisRun.objects.get(visit__code=visits[1]["code"], is_current=True)
    folder = run_files(run).display
    meta = render.read_meta(folder)
    assert meta["prior"]["visit"] == visits[0]["code"]
    assert meta["prior"]["registration_passed"]
    labels = render.read_layer(folder, "labels")
    prior = render.read_layer(folder, "prior-labels")
    overlap = np.logical_and(labels > 0, prior > 0).sum() / max(1, (labels > 0).sum())
    assert overlap > 0.5  # the same tumour, registered onto this visit's grid
    web = Client()
    web.force_login(teams["alice"])
    page = web.get(f"/visits/{visits[1]['code']}/")
    assert page.status_code == 200
    assert b'data-plane="axial"' in page.content
    assert b"Compare with" in page.content
    axial = meta["key_slices"]["axial"]
    for layer in ("t1c", "flair", "labels", "tumour", "prior-t1c", "prior-labels"):
        response = web.get(f"/visits/{visits[1]['code']}/slices/{layer}/axial/{axial}.png")
        assert response.status_code == 200, layer
        assert response["Content-Type"] == "image/png", layer
        picture = np.asarray(Image.open(io.BytesIO(response.content)))
        assert picture.shape[:2] == labels.shape[1:], layer
        if layer.endswith("labels"):
            assert picture[..., 3].any(), layer  # the tumour is on its key slice
    missing = web.get(f"/visits/{visits[1]['code']}/slices/t1c/axial/{labels.shape[0]}.png")
    assert missing.status_code == 404
    # The same place at the baseline, for the report: through the stored registration, the
    # baseline's segmentation lands where the prior layer has it on this key slice.
    from tracker.services.display import display_same_place

    baseline = AnalysisRun.objects.get(visit__code=visits[0]["code"], is_current=True)
    (same,) = display_same_place(reference=run, others=[baseline])
    assert same.picture is not None, same.problem
    assert len(same.registrations) == 1  # registered to it directly (as prior and baseline)
    assert same.through == []
    assert not same.flagged
    picture = np.asarray(Image.open(io.BytesIO(same.picture)).convert("RGB")).astype(int)
    tinted = np.any(picture != picture[..., :1], axis=-1)
    there = render.cut(prior, "axial", axial) > 0
    assert there.any()
    assert (tinted & there).sum() / (tinted | there).sum() > 0.9


def _running(teams: dict[str, Any], *, silent_for_s: float, on: str = "2024-03-01") -> AnalysisRun:
    visit = Visit.objects.create(patient=teams["patient"], acquired_on=on)
    run = AnalysisRun.objects.create(visit=visit, stage=Stage.SEGMENT, status=RunStatus.RUNNING)
    then = timezone.now() - dt.timedelta(seconds=silent_for_s)
    AnalysisRun.objects.filter(pk=run.pk).update(
        claimed_at=then, heartbeat_at=then, claimed_by="gone-host:4242"
    )
    return run


def test_a_redelivered_task_takes_over_a_run_whose_worker_was_killed(
    teams: dict[str, Any],
) -> None:
    """The redelivered task once said 'not claimed' and the run waited up to 30 minutes."""
    dead = _running(teams, silent_for_s=600)
    live = _running(teams, silent_for_s=5, on="2024-04-01")
    taken = runs.run_claim(run_code=str(dead.code), stage=Stage.SEGMENT)
    assert taken is not None
    assert taken.claimed_by == runs.worker_id()
    assert runs.run_claim(run_code=str(live.code), stage=Stage.SEGMENT) is None


def test_the_sweeper_acts_within_minutes_by_default(
    teams: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    dead = _running(teams, silent_for_s=300)
    live = _running(teams, silent_for_s=5, on="2024-04-01")
    with django_capture_on_commit_callbacks(execute=False):
        requeued = runs.runs_requeue_stale()
    assert requeued.runs == [str(dead.code)]
    live.refresh_from_db()
    assert live.status == RunStatus.RUNNING


@pytest.mark.django_db(transaction=True)
def test_a_running_stage_beats(teams: dict[str, Any], settings: Any, monkeypatch: Any) -> None:
    import time

    settings.TRACKER_HEARTBEAT_STALE_S = 4  # a beat every second
    visit = Visit.objects.create(patient=teams["patient"], acquired_on="2024-05-01")
    run = AnalysisRun.objects.create(visit=visit, stage=Stage.MEASURE)
    beats: list[Any] = []

    def slow_stage(run: AnalysisRun) -> None:
        start = AnalysisRun.objects.get(pk=run.pk).heartbeat_at
        time.sleep(2.5)
        beats.append((start, AnalysisRun.objects.get(pk=run.pk).heartbeat_at))

    monkeypatch.setitem(runs.STAGES, Stage.MEASURE, slow_stage)
    monkeypatch.setattr(runs, "run_advance", lambda **kwargs: None)
    assert runs.stage_execute(run_code=str(run.code), stage=Stage.MEASURE) == "done"
    ((start, later),) = beats
    assert later > start


def test_deleting_a_visit_brings_the_next_one_up_to_date_with_its_new_prior(
    teams: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The visit after a deleted one is registered to the visit now before it (by a worker),
    or, with none left before it, shown without a prior."""
    from tests.tracker.factories import analysed_patient
    from tracker.models import Registration
    from tracker.services import registrations
    from tracker.services.visits import visit_delete

    patient = analysed_patient(teams["team_a"], "GBM-DELETE", 3)
    first, second, third = patient.visits.order_by("acquired_on")
    for visit in (first, second, third):
        Scan.objects.create(visit=visit, sequence="t1c", file="x", sha256="0" * 64, size_bytes=1)
    Registration.objects.create(
        run=third.runs.get(), to_visit=second, role="prior", transform="x", passed=True
    )
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(enqueue, "task_send", lambda task, *args: sent.append((task, *args)))
    with django_capture_on_commit_callbacks(execute=True):
        visit_delete(visit=second, by=teams["alice"])
    assert (Task.REFRESH_NEXT_VISIT, str(patient.code), str(second.acquired_on)) in sent
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        registrations,
        "registration_create",
        lambda *, fixed, moving, role: calls.append(("register", fixed, moving, role)),
    )
    monkeypatch.setattr(
        registrations, "display_build", lambda *, run: calls.append(("display", run))
    )
    refreshed = registrations.next_visit_refresh(patient=patient, after=second.acquired_on)
    assert refreshed == third.runs.get()
    assert calls == [("register", first, refreshed, "prior"), ("display", refreshed)]
    # The first visit deleted: the next one has no prior any more, and is shown without one.
    Registration.objects.create(
        run=refreshed, to_visit=first, role="prior", transform="x", passed=True
    )
    calls.clear()
    first.delete()
    registrations.next_visit_refresh(patient=patient, after=first.acquired_on)
    assert not Registration.objects.filter(run=refreshed, role="prior").exists()
    assert calls == [("display", refreshed)]
