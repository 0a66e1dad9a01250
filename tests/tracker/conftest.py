"""People with different rights over a small world: alice (team Neuro-A), bob (team Neuro-B),
charlie (no team). Phantom visits (SYNTHETIC) are rendered once per session."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tracker.models import CareTeam, Membership, Patient

BRATS_SUFFIX = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}


@pytest.fixture(autouse=True)
def _media(settings: Any, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The segmenter's ONNX export built once per test process, in a temporary folder (the
    workers the end-to-end tests start inherit it through the environment)."""
    from django.test import override_settings

    cache = tmp_path_factory.mktemp("model-cache")
    previous = os.environ.get("TRACKER_MODEL_CACHE")
    os.environ["TRACKER_MODEL_CACHE"] = str(cache)
    with override_settings(TRACKER_MODEL_CACHE=cache):
        yield
    if previous is None:
        os.environ.pop("TRACKER_MODEL_CACHE", None)
    else:
        os.environ["TRACKER_MODEL_CACHE"] = previous


@pytest.fixture
def teams(db: Any) -> dict[str, Any]:
    alice = User.objects.create_user("alice", password="alice-password-1")
    bob = User.objects.create_user("bob", password="bob-password-1")
    charlie = User.objects.create_user("charlie", password="charlie-password-1")
    team_a = CareTeam.objects.create(name="Neuro-A")
    team_b = CareTeam.objects.create(name="Neuro-B")
    Membership.objects.create(team=team_a, user=alice)
    Membership.objects.create(team=team_b, user=bob)
    patient = Patient.objects.create(team=team_a, label="GBM-001", presentation="ce")
    return {
        "alice": alice,
        "bob": bob,
        "charlie": charlie,
        "team_a": team_a,
        "team_b": team_b,
        "patient": patient,
    }


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


@pytest.fixture(scope="session")
def phantom_visits(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two visits of one phantom patient (SYNTHETIC PHANTOM DATA), BraTS 2023 folders."""
    from inference.segmentation.phantoms import Scenario, make_patient, write_patient

    out = tmp_path_factory.mktemp("phantom")
    patient = make_patient(930001, visits=2, scenario=Scenario.PROGRESSION)
    patient = dataclasses.replace(patient, skull=False)
    return write_patient(patient, out)


def upload_files(folder: Path) -> dict[str, SimpleUploadedFile]:
    files = {}
    for field, suffix in BRATS_SUFFIX.items():
        path = next(folder.glob(f"*-{suffix}.nii.gz"))
        files[field] = SimpleUploadedFile(f"{field}.nii.gz", path.read_bytes())
    return files


def post_visit(client: Any, patient: Any, files: dict[str, Any], on: str = "2024-02-05") -> Any:
    """Upload a visit through the API (multipart), as a client would."""
    return client.post(
        f"/api/patients/{patient.code}/visits/",
        {"acquired_on": on, **files},
        format="multipart",
    )


def stored_files() -> list[Path]:
    """Every image the upload stored under the media root (to check a refusal stored nothing)."""
    from django.conf import settings

    root = Path(settings.MEDIA_ROOT) / "visits"
    return sorted(root.rglob("*.nii*")) if root.exists() else []


def zipped(folder: Path) -> SimpleUploadedFile:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in sorted(folder.glob("*.nii.gz")):
            if not path.name.endswith("-seg.nii.gz"):
                bundle.write(path, f"visit/{path.name}")
    return SimpleUploadedFile("visit.zip", buffer.getvalue(), content_type="application/zip")


def run_all_stages(run: Any) -> None:
    """Every stage of a run in this process, in order (the worker's path without Celery)."""
    from tracker.models import AnalysisRun, Stage
    from tracker.services.runs import stage_execute

    for stage in (Stage.PREPARE, Stage.SEGMENT, Stage.REGISTER, Stage.MEASURE, Stage.ASSESS):
        assert stage_execute(run_code=str(run.code), stage=stage) == "done", (
            stage,
            AnalysisRun.objects.get(pk=run.pk).error,
        )
