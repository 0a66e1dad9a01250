"""The REST API: every endpoint for a member, a member of another team and an anonymous caller;
uploads that are refused name each bad file and store nothing."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from tests.tracker.conftest import client_for, post_visit, stored_files, upload_files, zipped
from tracker.models import AnalysisRun, Assessment, AuditEvent, Scan, Visit

pytestmark = pytest.mark.django_db


def _visit(patient: Any, **fields: Any) -> Visit:
    return Visit.objects.create(
        patient=patient, acquired_on=fields.pop("on", "2024-03-01"), **fields
    )


def _endpoints(world: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None, int]]:
    patient = world["patient"]
    visit = _visit(patient)
    assessment = Assessment.objects.create(
        visit=visit, category="SD", criteria="rano2-2d", reasons=["stable"]
    )
    assert assessment.pk
    p, v = patient.code, visit.code
    return [
        ("get", "/api/patients/", None, 200),
        ("get", f"/api/patients/{p}/", None, 200),
        ("get", f"/api/patients/{p}/timeline/", None, 200),
        (
            "post",
            f"/api/patients/{p}/treatments/",
            {"kind": "surgery", "started_on": "2024-01-02"},
            201,
        ),
        ("get", f"/api/visits/{v}/", None, 200),
        ("post", f"/api/visits/{v}/review/", {"action": "confirm"}, 201),
        ("post", f"/api/visits/{v}/reanalyse/", None, 202),
    ]


@pytest.mark.parametrize("who", ["alice", "bob", "charlie", "anonymous"])
def test_every_endpoint_is_scoped_to_the_care_team(teams: dict[str, Any], who: str) -> None:
    client = client_for(None if who == "anonymous" else teams[who])
    for method, url, data, member_status in _endpoints(teams):
        response = getattr(client, method)(url, data, format="json")
        if who == "alice":
            assert response.status_code == member_status, (url, response.content)
        elif who == "anonymous":
            assert response.status_code in (401, 403), url
        elif url == "/api/patients/":
            assert response.status_code == 200
            assert response.json()["count"] == 0
        else:
            assert response.status_code == 404, (who, url, response.status_code)


def test_reads_of_patient_data_are_audited(teams: dict[str, Any]) -> None:
    client = client_for(teams["alice"])
    client.get(f"/api/patients/{teams['patient'].code}/timeline/")
    event = AuditEvent.objects.get(action="read_timeline")
    assert event.user == teams["alice"]
    assert event.patient == teams["patient"]


def test_a_patient_is_created_only_in_ones_own_team(teams: dict[str, Any]) -> None:
    client = client_for(teams["alice"])
    ok = client.post(
        "/api/patients/", {"team": str(teams["team_a"].code), "label": "GBM-002"}, format="json"
    )
    assert ok.status_code == 201
    assert ok.json()["label"] == "GBM-002"
    other = client.post(
        "/api/patients/", {"team": str(teams["team_b"].code), "label": "GBM-003"}, format="json"
    )
    assert other.status_code == 400
    assert "team" in other.json()
    twice = client.post(
        "/api/patients/", {"team": str(teams["team_a"].code), "label": "GBM-002"}, format="json"
    )
    assert twice.status_code == 400
    assert "label" in twice.json()


def test_an_override_needs_a_category_and_a_reason(teams: dict[str, Any]) -> None:
    visit = _visit(teams["patient"])
    Assessment.objects.create(visit=visit, category="PD", criteria="rano2-2d")
    client = client_for(teams["alice"])
    bad = client.post(f"/api/visits/{visit.code}/review/", {"action": "override"}, format="json")
    assert bad.status_code == 400
    good = client.post(
        f"/api/visits/{visit.code}/review/",
        {"action": "override", "category": "SD", "reason": "radiation necrosis on perfusion"},
        format="json",
    )
    assert good.status_code == 201
    shown = client.get(f"/api/visits/{visit.code}/").json()
    assert shown["reviews"][0]["category"] == "SD"
    assert shown["reviews"][0]["reviewer"] == "alice"


def test_the_openapi_schema_and_docs_are_served(teams: dict[str, Any]) -> None:
    client = client_for(teams["alice"])
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/patients/{code}/visits/" in schema.content
    assert client.get("/api/docs/").status_code == 200


# --- uploads -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_good_visit_is_stored_with_its_checksums_and_queued(
    teams: dict[str, Any], phantom_visits: list[Path], django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(teams["alice"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_visit(client, teams["patient"], upload_files(phantom_visits[0]))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["analysis"]["stage"] == "prepare"
    assert body["analysis"]["status"] == "queued"
    visit = Visit.objects.get(code=body["code"])
    assert sorted(visit.scans.values_list("sequence", flat=True)) == ["flair", "t1", "t1c", "t2"]
    scan = visit.scans.get(sequence="t1c")
    stored = Path(settings.MEDIA_ROOT) / scan.file.name
    import hashlib

    assert hashlib.sha256(stored.read_bytes()).hexdigest() == scan.sha256
    assert stored.stat().st_mode & 0o222 == 0  # originals are read-only
    assert "upload" not in stored.name
    assert str(visit.code) in str(stored)
    assert len(callbacks) == 1  # the prepare task, sent after commit


@pytest.mark.slow
def test_a_zip_archive_is_accepted(teams: dict[str, Any], phantom_visits: list[Path]) -> None:
    client = client_for(teams["alice"])
    response = post_visit(client, teams["patient"], {"archive": zipped(phantom_visits[0])})
    assert response.status_code == 201, response.content
    assert Scan.objects.count() == 4


def _dicom_zip(folder: Path, tmp_path: Path, scanned_on: dict[str, str]) -> SimpleUploadedFile:
    """The phantom visit's sequences as DICOM series in one zip, as a PACS exports them
    (scanner-style series descriptions, nested folders, a DICOMDIR-less layout)."""
    import datetime as dt

    from inference.imaging.io import write_dicom_series

    descriptions = {"t1c": "T1 POST GD", "t2f": "AX FLAIR"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for number, (suffix, description) in enumerate(descriptions.items(), start=1):
            image = sitk.ReadImage(str(next(folder.glob(f"*-{suffix}.nii.gz"))))
            image = sitk.Cast(image, sitk.sitkInt16)  # as scanners store it
            written = write_dicom_series(
                image,
                tmp_path / f"series{number}",
                series_description=description,
                series_number=number,
                study_date=dt.date.fromisoformat(scanned_on[suffix]),
            )
            for path in written:
                bundle.write(path, f"EXPORT/STUDY1/SER{number}/{path.name}")
    return SimpleUploadedFile("pacs-export.zip", buffer.getvalue())


@pytest.mark.slow
def test_a_dicom_archive_is_stored_as_nifti_on_its_scan_date(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    """A PACS export: the series are recognised by description, stored as NIfTI (the DICOM
    headers, which name the patient, are not kept), and the scan date is StudyDate."""
    archive = _dicom_zip(phantom_visits[0], tmp_path, {"t1c": "2024-03-05", "t2f": "2024-03-05"})
    client = client_for(teams["alice"])
    response = client.post(
        f"/api/patients/{teams['patient'].code}/visits/", {"archive": archive}, format="multipart"
    )
    assert response.status_code == 201, response.content
    assert response.json()["acquired_on"] == "2024-03-05"
    scans = {s.sequence: s for s in Scan.objects.all()}
    assert set(scans) == {"t1c", "flair"}
    assert scans["flair"].geometry["source"] == {
        "dicom_series": "AX FLAIR",
        "scanned_on": "2024-03-05",
    }
    stored = Path(settings.MEDIA_ROOT) / scans["t1c"].file.name
    assert stored.name.endswith(".nii.gz")
    truth = sitk.ReadImage(str(next(phantom_visits[0].glob("*-t1c.nii.gz"))))
    back = sitk.ReadImage(str(stored))
    assert back.GetSize() == truth.GetSize()
    assert np.allclose(back.GetOrigin(), truth.GetOrigin(), atol=1e-3)
    assert not [
        p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file() and ".nii" not in p.name
    ]


@pytest.mark.slow
def test_a_scan_date_that_disagrees_with_the_dicom_headers_is_refused(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    client = client_for(teams["alice"])
    same_day = {"t1c": "2024-03-05", "t2f": "2024-03-05"}
    wrong = post_visit(
        client, teams["patient"], {"archive": _dicom_zip(phantom_visits[0], tmp_path, same_day)}
    )  # given 2024-02-05
    assert wrong.status_code == 400
    (message,) = wrong.json()["acquired_on"]
    assert "2024-02-05 is not the scan date in the DICOM headers (2024-03-05)" in message
    two_days = {"t1c": "2024-03-05", "t2f": "2024-03-07"}
    mixed = client.post(
        f"/api/patients/{teams['patient'].code}/visits/",
        {"archive": _dicom_zip(phantom_visits[0], tmp_path / "b", two_days)},
        format="multipart",
    )
    assert mixed.status_code == 400
    assert "scanned on different days (2024-03-05, 2024-03-07)" in mixed.json()["acquired_on"][0]
    assert Visit.objects.count() == 0
    assert stored_files() == []
    assert not any((Path(settings.MEDIA_ROOT) / "staging").glob("upload-*"))
    # An anonymised export's placeholder date is no scan date: the one given is used.
    placeholder = {"t1c": "1900-01-01", "t2f": "1900-01-01"}
    dated = post_visit(
        client,
        teams["patient"],
        {"archive": _dicom_zip(phantom_visits[0], tmp_path / "c", placeholder)},
    )
    assert dated.status_code == 201, dated.content
    assert dated.json()["acquired_on"] == "2024-02-05"


def test_nifti_files_need_a_scan_date(teams: dict[str, Any]) -> None:
    response = client_for(teams["alice"]).post(
        f"/api/patients/{teams['patient'].code}/visits/",
        {"t1c": SimpleUploadedFile("t1c.nii.gz", b"x")},
        format="multipart",
    )
    assert response.status_code == 400
    assert "the scan date is required" in response.json()["acquired_on"][0]


@pytest.mark.slow
def test_bad_files_are_each_named_and_nothing_is_stored(
    teams: dict[str, Any], phantom_visits: list[Path]
) -> None:
    files = upload_files(phantom_visits[0])
    whole = files["t1c"].read()
    files["t1c"] = SimpleUploadedFile("t1c.nii.gz", whole[: len(whole) // 2])  # truncated
    files["flair"] = SimpleUploadedFile("flair.nii.gz", b"not an image at all")
    del files["t2"]  # a visit may lack T2: not a problem
    response = post_visit(client_for(teams["alice"]), teams["patient"], files)
    assert response.status_code == 400
    problems = response.json()
    assert set(problems) == {"t1c", "flair"}
    assert problems["flair"][0].startswith("not a readable NIfTI image"), problems["flair"]
    assert all("staging" not in m and ".nii" not in m for m in problems["flair"])
    assert Visit.objects.count() == 0
    assert AnalysisRun.objects.count() == 0
    assert stored_files() == []


@pytest.mark.slow
def test_nan_voxels_are_refused(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    files = upload_files(phantom_visits[0])
    image = sitk.ReadImage(str(next(phantom_visits[0].glob("*-t2w.nii.gz"))), sitk.sitkFloat32)
    values = sitk.GetArrayFromImage(image)
    values[10, 10, 10] = np.nan
    broken = sitk.GetImageFromArray(values)
    broken.CopyInformation(image)
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(broken, str(path))
    files["t2"] = SimpleUploadedFile("t2.nii.gz", path.read_bytes())
    response = post_visit(client_for(teams["alice"]), teams["patient"], files)
    assert response.status_code == 400
    assert "NaN" in " ".join(response.json()["t2"]) or "finite" in " ".join(response.json()["t2"])


def test_zip_entries_that_escape_the_archive_are_refused(teams: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("../../etc/evil-t1n.nii.gz", gzip.compress(b"x" * 100))
    archive = SimpleUploadedFile("visit.zip", buffer.getvalue())
    response = post_visit(client_for(teams["alice"]), teams["patient"], {"archive": archive})
    assert response.status_code == 400
    assert "outside the archive" in response.json()["archive"][0]
    assert Visit.objects.count() == 0


def test_a_zip_entry_larger_than_its_header_is_not_extracted(teams: dict[str, Any]) -> None:
    """A small archive whose uncompressed NIfTI entry says 64^3 voxels (262 KB) but holds 48 MB:
    extraction stops at what the header describes and the upload is refused."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((64, 64, 64))
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle,
        bundle.open("visit-t1c.nii", "w") as entry,
    ):
        entry.write(header.binaryblock + bytes(4))
        for _ in range(48):
            entry.write(bytes(1 << 20))
    assert len(buffer.getvalue()) < 200_000
    archive = SimpleUploadedFile("visit.zip", buffer.getvalue())
    response = post_visit(client_for(teams["alice"]), teams["patient"], {"archive": archive})
    assert response.status_code == 400
    assert "more than the 262,496 bytes its header describes" in response.json()["archive"][0]
    assert Visit.objects.count() == 0
    assert not any((Path(settings.MEDIA_ROOT) / "staging").glob("upload-*"))


def test_an_oversized_upload_is_refused(teams: dict[str, Any], settings: Any) -> None:
    settings.TRACKER_MAX_UPLOAD_MB = 0
    files = {"t1": SimpleUploadedFile("t1.nii.gz", b"x" * 2048)}
    response = post_visit(client_for(teams["alice"]), teams["patient"], files)
    assert response.status_code == 400
    assert "more than 0" in response.json()["upload"][0]


def test_a_second_visit_on_the_same_day_is_a_conflict(teams: dict[str, Any]) -> None:
    _visit(teams["patient"], on="2024-02-05")
    files = {"t1": SimpleUploadedFile("t1.nii.gz", b"x")}
    response = post_visit(client_for(teams["alice"]), teams["patient"], files)
    assert response.status_code == 409


def test_editing_or_deleting_a_visit_reassesses_the_patient(
    teams: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    from tests.tracker.factories import analysed_patient

    patient = analysed_patient(teams["team_a"], "EDIT", 3)
    visit = patient.visits.order_by("acquired_on").last()
    client = client_for(teams["alice"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.patch(
            f"/api/visits/{visit.code}/", {"clinical_status": "worse"}, format="json"
        )
    assert response.status_code == 200
    assert response.json()["clinical_status"] == "worse"
    assert len(callbacks) == 1  # the re-assessment, queued after commit
    assert client_for(teams["bob"]).delete(f"/api/visits/{visit.code}/").status_code == 404
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert client.delete(f"/api/visits/{visit.code}/").status_code == 204
    assert len(callbacks) == 1
    assert patient.visits.count() == 2
    assert AuditEvent.objects.filter(action="delete_visit", patient=patient).exists()


def test_reanalysing_keeps_the_current_results_until_the_new_run_completes(
    teams: dict[str, Any],
) -> None:
    from tests.tracker.factories import analysed_patient

    patient = analysed_patient(teams["team_a"], "AGAIN", 1)
    visit = patient.visits.get()
    client = client_for(teams["alice"])
    response = client.post(f"/api/visits/{visit.code}/reanalyse/")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    shown = client.get(f"/api/visits/{visit.code}/").json()
    assert shown["analysis"]["status"] == "queued"  # the new run, in progress
    assert shown["results"]["volumes_ml"]["WT"] == 14.0  # the old, complete results
    assert shown["assessment"]["category"] == "baseline"
    again = client.post(f"/api/visits/{visit.code}/reanalyse/")
    assert again.status_code == 409  # one run at a time


def test_token_authentication_works_like_a_session(teams: dict[str, Any]) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    token = client.post(
        "/api/token/", {"username": "alice", "password": "alice-password-1"}, format="json"
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"/api/patients/{teams['patient'].code}/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/patients/").status_code == 401


def test_a_token_expires(teams: dict[str, Any]) -> None:
    from datetime import timedelta

    from knox.models import AuthToken
    from rest_framework.test import APIClient

    client = APIClient()
    issued = client.post(
        "/api/token/", {"username": "alice", "password": "alice-password-1"}, format="json"
    ).json()
    assert issued["expiry"]  # the client is told when
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued['token']}")
    assert client.get("/api/patients/").status_code == 200
    AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/patients/").status_code == 401
    assert not AuthToken.objects.exists()  # an expired token is removed when it is tried


def test_a_token_can_be_revoked_alone_or_with_all_the_users_tokens(teams: dict[str, Any]) -> None:
    from rest_framework.test import APIClient

    def fresh() -> APIClient:
        client = APIClient()
        token = client.post(
            "/api/token/", {"username": "alice", "password": "alice-password-1"}, format="json"
        ).json()["token"]
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return client

    laptop, pacs, script = fresh(), fresh(), fresh()
    assert laptop.post("/api/token/revoke/").status_code == 204
    assert laptop.get("/api/patients/").status_code == 401
    assert pacs.get("/api/patients/").status_code == 200  # the others still work
    assert pacs.post("/api/token/revoke-all/").status_code == 204
    assert pacs.get("/api/patients/").status_code == 401
    assert script.get("/api/patients/").status_code == 401
    actions = list(
        AuditEvent.objects.filter(user=teams["alice"], action__startswith="api_token")
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == ["api_token_issued"] * 3 + ["api_token_revoked"] * 2


def test_a_wrong_password_gets_no_token(teams: dict[str, Any]) -> None:
    from rest_framework.test import APIClient

    response = APIClient().post(
        "/api/token/", {"username": "alice", "password": "wrong"}, format="json"
    )
    assert response.status_code == 400
    assert "token" not in response.json()


def test_the_patient_list_is_searchable_filterable_and_paginated(teams: dict[str, Any]) -> None:
    from tracker.models import Patient

    for index in range(55):
        Patient.objects.create(
            team=teams["team_a"], label=f"LGG-{index:03d}", presentation="non-ce"
        )
    client = client_for(teams["alice"])
    page = client.get("/api/patients/").json()
    assert page["count"] == 56
    assert len(page["results"]) == 50
    assert page["next"]
    assert client.get("/api/patients/?presentation=ce").json()["count"] == 1
    assert client.get("/api/patients/?search=lgg-00").json()["count"] == 10


@pytest.mark.parametrize(
    ("on", "message"), [("2999-01-01", "is in the future"), ("1975-06-01", "is before 1980")]
)
def test_a_scan_date_no_scan_can_have_is_refused(
    teams: dict[str, Any], phantom_visits: list[Path], on: str, message: str
) -> None:
    files = upload_files(phantom_visits[0])
    response = post_visit(client_for(teams["alice"]), teams["patient"], files, on=on)
    assert response.status_code == 400
    assert message in response.json()["acquired_on"][0]
    assert Visit.objects.count() == 0


def test_the_same_file_as_two_sequences_is_refused(
    teams: dict[str, Any], phantom_visits: list[Path]
) -> None:
    files = upload_files(phantom_visits[0])
    files["flair"] = SimpleUploadedFile("flair.nii.gz", files["t1c"].read())
    files["t1c"].seek(0)
    response = post_visit(client_for(teams["alice"]), teams["patient"], files)
    assert response.status_code == 400
    assert "the same file as t1c (identical content)" in response.json()["flair"][0]
    assert Visit.objects.count() == 0
    assert stored_files() == []


def test_a_reviewed_visit_is_kept_with_the_reason(teams: dict[str, Any]) -> None:
    from tests.tracker.factories import analysed_patient

    patient = analysed_patient(teams["team_a"], "GBM-REVIEWED", 2, reviewer=teams["alice"])
    visit = patient.visits.order_by("acquired_on").last()
    assert visit is not None
    assert visit.reviews.exists()
    response = client_for(teams["alice"]).delete(f"/api/visits/{visit.code}/")
    assert response.status_code == 409
    assert "reviewed by alice" in response.json()["detail"]
    assert Visit.objects.filter(pk=visit.pk).exists()


def test_a_body_over_the_limit_is_refused_on_its_content_length(
    teams: dict[str, Any], settings: Any
) -> None:
    """Refused before the body is read: it was once written to disk whole, then checked."""
    settings.TRACKER_MAX_UPLOAD_MB = 5
    client = client_for(teams["alice"])
    response = client.post(
        f"/api/patients/{teams['patient'].code}/visits/",
        {"acquired_on": "2024-02-05", "t1c": SimpleUploadedFile("t1c.nii.gz", b"x" * 10)},
        format="multipart",
        CONTENT_LENGTH=str(200 * 1024 * 1024),
    )
    assert response.status_code == 413
    assert "larger than the upload limit of 5 MB" in response.json()["detail"]
    assert Visit.objects.count() == 0


def test_stale_staging_folders_are_cleaned_by_the_sweeper() -> None:
    """A web worker killed mid-upload left its staging folder forever."""
    import os
    import time

    from tracker import tasks

    root = Path(settings.MEDIA_ROOT) / "staging"
    old, fresh = root / "upload-killed", root / "upload-in-progress"
    for folder in (old, fresh):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "upload-t1c.nii.gz").write_bytes(b"x" * 100)
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    tasks.sweep()
    assert not old.exists()
    assert fresh.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_reanalyse_requests_start_one_run() -> None:
    """Six requests at once once started two full runs of the same visit. Needs a database
    server with row locks (PostgreSQL, as ``make test`` and CI use); SQLite locks whole tables."""
    import threading

    from django.contrib.auth.models import User
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("concurrent requests need PostgreSQL (make test), not the embedded SQLite")

    from tracker.models import CareTeam, Membership, Patient

    user = User.objects.create_user("racer", password="racer-password-1")
    team = CareTeam.objects.create(name="Race")
    Membership.objects.create(team=team, user=user)
    visit = _visit(Patient.objects.create(team=team, label="RACE-1"))
    AnalysisRun.objects.create(visit=visit, status="failed", stage="prepare", error="a test")
    barrier = threading.Barrier(6)
    codes: list[int] = []

    def request() -> None:
        try:
            client = client_for(user)
            barrier.wait()
            codes.append(client.post(f"/api/visits/{visit.code}/reanalyse/").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [202, 409, 409, 409, 409, 409]
    assert visit.runs.filter(status__in=["queued", "running"]).count() == 1


def test_free_text_is_bounded(teams: dict[str, Any]) -> None:
    """A 9.5 MB treatment note once made the patient's PDF time out, for good."""
    client = client_for(teams["alice"])
    response = client.post(
        f"/api/patients/{teams['patient'].code}/treatments/",
        {"kind": "radiotherapy", "started_on": "2024-01-01", "notes": "x" * 4001},
        format="json",
    )
    assert response.status_code == 400
    assert "4000" in response.json()["notes"][0]


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [
        ("measurements.csv", "text/csv; charset=utf-8"),
        ("lesions.csv", "text/csv; charset=utf-8"),
        ("timeline.json", "application/json"),
        ("fhir.json", "application/fhir+json"),
        ("report.pdf", "application/pdf"),
    ],
)
def test_the_exports_are_in_the_api_with_a_token_and_audited(
    teams: dict[str, Any], kind: str, content_type: str
) -> None:
    """An integration with a token once got the login page: the exports were page-only."""
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    from tests.tracker.factories import analysed_patient

    patient = analysed_patient(teams["team_a"], "GBM-API-EXPORT", 2)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=teams['alice'])[1]}"
    )
    response = client.get(f"/api/patients/{patient.code}/export/{kind}")
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert AuditEvent.objects.filter(
        action=f"export_{kind.replace('.', '_')}", patient=patient, user=teams["alice"]
    ).exists()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=teams['bob'])[1]}")
    assert other.get(f"/api/patients/{patient.code}/export/{kind}").status_code == 404


def test_the_export_endpoint_is_in_the_schema_and_refuses_unknown_kinds(
    teams: dict[str, Any],
) -> None:
    client = client_for(teams["alice"])
    schema = client.get("/api/schema/?format=json").json()
    assert "/api/patients/{code}/export/{kind}" in schema["paths"]
    response = client.get(f"/api/patients/{teams['patient'].code}/export/secrets.txt")
    assert response.status_code == 404
    assert "no such export" in response.json()["detail"]


def test_the_former_field_name_t1ce_is_still_accepted_once(
    teams: dict[str, Any], phantom_visits: list[Path]
) -> None:
    """An integration written against ``t1ce`` keeps working; sending both names is refused."""
    files = upload_files(phantom_visits[0])
    both = {**files, "t1ce": SimpleUploadedFile("t1ce.nii.gz", files["t1c"].read())}
    files["t1c"].seek(0)
    response = post_visit(client_for(teams["alice"]), teams["patient"], both)
    assert response.status_code == 400
    assert response.json() == {"t1ce": ["the same sequence as t1c: send it once"]}
    assert stored_files() == []
    files = upload_files(phantom_visits[0])
    files["t1ce"] = files.pop("t1c")
    response = post_visit(client_for(teams["alice"]), teams["patient"], files)
    assert response.status_code == 201, response.content
    scans = Scan.objects.filter(visit__code=response.json()["code"])
    assert sorted(scans.values_list("sequence", flat=True)) == ["flair", "t1", "t1c", "t2"]


def test_an_upload_with_no_file_names_the_files_it_needs(teams: dict[str, Any]) -> None:
    response = post_visit(client_for(teams["alice"]), teams["patient"], {})
    assert response.status_code == 400
    (message,) = response.json()["upload"]
    assert message.startswith("no file chosen")
    for name in ("t1 (T1)", "t1c (T1 post-contrast)", "t2 (T2)", "flair (FLAIR)", "archive"):
        assert name in message
    assert Visit.objects.count() == 0
