"""A clinician corrects a visit's segmentation: a new version (never an overwrite), measured and
assessed by the pipeline's own stages, shown with who corrected it and what it changed; the
second of two simultaneous corrections is told the visit changed under it; bad maps are refused
with the reason and store nothing (SYNTHETIC PHANTOM)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.tracker.conftest import client_for, run_all_stages, upload_files
from tracker.models import (
    AnalysisRun,
    Assessment,
    AuditEvent,
    RunStatus,
    SegmentationVersion,
    Stage,
)
from tracker.services.runs import stage_execute

pytestmark = pytest.mark.slow


@pytest.fixture
def analysed(
    teams: dict[str, Any], phantom_visits: list[Path], django_capture_on_commit_callbacks: Any
) -> dict[str, Any]:
    """One phantom visit uploaded and analysed by the real stages."""
    client = client_for(teams["alice"])
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            f"/api/patients/{teams['patient'].code}/visits/",
            {"acquired_on": "2024-01-08", **upload_files(phantom_visits[0])},
            format="multipart",
        )
    assert response.status_code == 201, response.content
    run = AnalysisRun.objects.get(visit__code=response.json()["code"])
    run_all_stages(run)
    return {"client": client, "visit": run.visit, "run": run}


def _labels(client: Any, visit: Any, run: Any, tmp_path: Path) -> sitk.Image:
    """A segmentation version as the API serves it."""
    response = client.get(f"/api/visits/{visit.code}/segmentations/{run.code}/labels.nii.gz")
    assert response.status_code == 200
    path = tmp_path / f"served-{run.code}.nii.gz"
    path.write_bytes(b"".join(response.streaming_content))
    return sitk.ReadImage(str(path))


def _upload(image: sitk.Image, tmp_path: Path, name: str = "corrected.nii.gz") -> Any:
    path = tmp_path / name
    sitk.WriteImage(image, str(path))
    return SimpleUploadedFile(name, path.read_bytes())


def _post(client: Any, visit: Any, labels: Any, parent: Any, **fields: Any) -> Any:
    return client.post(
        f"/api/visits/{visit.code}/segmentations/",
        {"labels": labels, "reason": "dura called tumour", "parent": str(parent), **fields},
        format="multipart",
    )


def _measure_and_assess(run: AnalysisRun) -> None:
    for stage in (Stage.MEASURE, Stage.ASSESS):
        assert stage_execute(run_code=str(run.code), stage=stage) == "done", (
            AnalysisRun.objects.get(pk=run.pk).error
        )


def test_a_correction_is_a_new_version_and_the_numbers_follow(
    teams: dict[str, Any], analysed: dict[str, Any], tmp_path: Path
) -> None:
    client, visit, model_run = analysed["client"], analysed["visit"], analysed["run"]
    before = client.get(f"/api/visits/{visit.code}/").json()["results"]
    assert before["segmentation"] == {"version": 1, "source": "model"}
    assessments_before = Assessment.objects.filter(visit=visit).count()
    # A programmatic edit: the enhancing tumour becomes oedema in its upper half.
    labels = _labels(client, visit, model_run, tmp_path)
    values = sitk.GetArrayFromImage(labels)
    enhancing = np.argwhere(values == 3)
    assert len(enhancing) > 100
    top = enhancing[:, 0] >= np.median(enhancing[:, 0])
    values[tuple(enhancing[top].T)] = 2
    edited = sitk.GetImageFromArray(values)
    edited.CopyInformation(labels)

    response = _post(client, visit, _upload(edited, tmp_path), model_run.code, source="edit")
    assert response.status_code == 201, response.content
    created = response.json()
    assert (created["version"], created["source"], created["corrected_by"]) == (2, "edit", "alice")
    changes = created["changes"]
    assert changes["ET"]["after_ml"] < changes["ET"]["before_ml"]
    assert changes["WT"]["after_ml"] == pytest.approx(changes["WT"]["before_ml"])
    assert 0.2 < changes["ET"]["dice"] < 0.9
    assert changes["WT"]["dice"] == 1.0
    # Until its run is measured the model's results are still the ones shown.
    assert client.get(f"/api/visits/{visit.code}/").json()["results"]["run"] == str(model_run.code)
    correction_run = AnalysisRun.objects.get(code=created["run"])
    assert (correction_run.stage, correction_run.status) == (Stage.MEASURE, RunStatus.QUEUED)
    _measure_and_assess(correction_run)

    after = client.get(f"/api/visits/{visit.code}/").json()["results"]
    assert after["run"] == created["run"]
    assert after["segmentation"]["version"] == 2
    assert after["segmentation"]["reason"] == "dura called tumour"
    assert after["volumes_ml"]["ET"] < before["volumes_ml"]["ET"]
    assert after["volumes_ml"]["WT"] == pytest.approx(before["volumes_ml"]["WT"], rel=1e-6)
    assert after["volume_intervals_ml"] == {}  # the model's probability range is not the edit's
    assert Assessment.objects.filter(visit=visit).count() > assessments_before  # re-assessed
    # Versions are kept: the model's labels are still there, unchanged.
    versions = client.get(f"/api/visits/{visit.code}/segmentations/").json()["versions"]
    assert [(v["version"], v["source"], v["is_current"]) for v in versions] == [
        (1, "model", False),
        (2, "edit", True),
    ]
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(_labels(client, visit, model_run, tmp_path)),
        sitk.GetArrayFromImage(labels),
    )
    assert AuditEvent.objects.filter(action="correct_segmentation").count() == 1

    # The correction is evidence about the model: the team's performance page and API.
    performance = client.get("/api/model-performance/").json()["teams"]
    (team,) = [t for t in performance if t["team"] == "Neuro-A"]
    assert team["corrected_visits"] == 1
    (model,) = team["models"]
    model_run.refresh_from_db()
    assert model["model"] == f"{model_run.model_name} {model_run.model_version}"
    assert model["regions"]["ET"]["dice"]["mean"] == changes["ET"]["dice"]
    assert model["regions"]["ET"]["dice"]["low"] is None  # one visit: no interval
    difference = changes["ET"]["after_ml"] - changes["ET"]["before_ml"]
    assert model["regions"]["ET"]["volume_difference_ml"]["mean"] == pytest.approx(difference)
    assert model["category_changed"]["n"] == 1
    assert model["worst"][0]["visit"] == str(visit.code)
    assert (
        client_for(teams["bob"])
        .get("/api/model-performance/")
        .json()["teams"][0]["corrected_visits"]
        == 0
    )
    from django.test import Client

    web = Client()
    web.force_login(teams["alice"])
    page = web.get("/model-performance/").content.decode()
    assert "Neuro-A: 1 corrected visit" in page
    assert "(one visit: no interval)" in page

    # Someone who drew on the model's segmentation meanwhile is told it changed under them.
    late = _post(client, visit, _upload(labels, tmp_path, "late.nii.gz"), model_run.code)
    assert late.status_code == 409
    assert "changed under you: version 2 was saved by alice" in late.json()["detail"]
    assert SegmentationVersion.objects.count() == 1


def test_bad_corrections_are_refused_with_the_reason_and_store_nothing(
    teams: dict[str, Any], analysed: dict[str, Any], tmp_path: Path
) -> None:
    client, visit, run = analysed["client"], analysed["visit"], analysed["run"]
    labels = _labels(client, visit, run, tmp_path)
    runs = AnalysisRun.objects.count()

    shifted = sitk.Image(labels)
    shifted.SetOrigin([o + 5.0 for o in labels.GetOrigin()])  # another visit's grid
    response = _post(client, visit, _upload(shifted, tmp_path, "other.nii.gz"), run.code)
    assert response.status_code == 400
    assert "not on the grid of the segmentation it corrects" in response.json()["labels"][0]

    values = sitk.GetArrayFromImage(labels)
    values[values == 3] = 9  # no such label
    odd = sitk.GetImageFromArray(values)
    odd.CopyInformation(labels)
    response = _post(client, visit, _upload(odd, tmp_path, "odd.nii.gz"), run.code)
    assert response.status_code == 400
    assert "label" in response.json()["labels"][0]

    garbage = SimpleUploadedFile("broken.nii.gz", b"\x1f\x8b not really gzip")
    response = _post(client, visit, garbage, run.code)
    assert response.status_code == 400
    assert "broken" not in response.json()["labels"][0]  # our staging names never show

    response = _post(client, visit, _upload(labels, tmp_path), run.code, reason="  ")
    assert response.status_code == 400

    other_team = client_for(teams["bob"])
    assert _post(other_team, visit, _upload(labels, tmp_path), run.code).status_code == 404
    assert other_team.get(f"/api/visits/{visit.code}/segmentations/").status_code == 404

    # A visit whose analysis is running is not corrected until it is done.
    AnalysisRun.objects.create(visit=visit, stage=Stage.SEGMENT, status=RunStatus.RUNNING)
    response = _post(client, visit, _upload(labels, tmp_path), run.code)
    assert response.status_code == 409
    assert "analysis is running (segment)" in response.json()["detail"]

    assert SegmentationVersion.objects.count() == 0
    assert AnalysisRun.objects.count() == runs + 1  # only the running one made above


def test_the_visit_page_shows_the_version_and_takes_a_correction(
    teams: dict[str, Any], analysed: dict[str, Any], tmp_path: Path
) -> None:
    """Without JavaScript: the form on the visit page saves a corrected map as a new version;
    the page says whose segmentation it shows and what the correction changed."""
    from django.test import Client

    client, visit, run = analysed["client"], analysed["visit"], analysed["run"]
    web = Client()
    web.force_login(teams["alice"])
    page = web.get(f"/visits/{visit.code}/").content.decode()
    assert "Version 1: the model's" in page
    assert f'name="parent" value="{run.code}"' in page
    labels = _labels(client, visit, run, tmp_path)
    values = sitk.GetArrayFromImage(labels)
    values[values == 2] = 0  # the oedema was vessels
    edited = sitk.GetImageFromArray(values)
    edited.CopyInformation(labels)
    saved = web.post(
        f"/visits/{visit.code}/segmentations/",
        {
            "labels": _upload(edited, tmp_path),
            "reason": "vessels, not oedema",
            "parent": str(run.code),
        },
        follow=True,
    )
    text = saved.content.decode()
    assert "Saved as segmentation version 2" in text
    assert "The visit's analysis is running (measure)" in text  # no second one meanwhile
    _measure_and_assess(AnalysisRun.objects.get(correction__number=2))
    page = web.get(f"/visits/{visit.code}/").content.decode()
    assert "corrected by <strong>alice</strong>" in page
    assert 'id="show-heat"' not in page  # the model's probabilities are not the correction's
    assert "vessels, not oedema" in page
    changes = page[page.index('class="correction-changes"') :]
    changes = changes[: changes.index("</table>")]
    assert '<th scope="row">WT</th>' in changes
    refused = web.post(
        f"/visits/{visit.code}/segmentations/",
        {
            "labels": _upload(edited, tmp_path, "b.nii.gz"),
            "reason": "again",
            "parent": str(run.code),
        },
        follow=True,
    )
    assert "changed under you: version 2 was saved by alice" in refused.content.decode()


def test_every_export_says_which_visits_carry_a_correction_and_by_whom(
    teams: dict[str, Any], analysed: dict[str, Any], tmp_path: Path
) -> None:
    import csv
    import io
    import json
    import subprocess

    from django.test import Client

    client, visit, run = analysed["client"], analysed["visit"], analysed["run"]
    labels = _labels(client, visit, run, tmp_path)
    values = sitk.GetArrayFromImage(labels)
    values[values == 1] = 3  # necrosis read as enhancing
    edited = sitk.GetImageFromArray(values)
    edited.CopyInformation(labels)
    created = _post(client, visit, _upload(edited, tmp_path), run.code).json()
    _measure_and_assess(AnalysisRun.objects.get(code=created["run"]))
    web = Client()
    web.force_login(teams["alice"])
    base = f"/patients/{visit.patient.code}/"
    assert "segmentation corrected by alice" in web.get(base).content.decode()
    (row,) = csv.DictReader(io.StringIO(web.get(base + "export/measurements.csv").content.decode()))
    assert (row["segmentation_version"], row["segmentation_corrected_by"]) == ("2", "alice")
    bundle = json.loads(web.get(base + "export/fhir.json").content)
    methods = {
        e["resource"]["method"]["text"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Observation" and "method" in e["resource"]
    }
    assert any("corrected by alice" in m and "dura called tumour" in m for m in methods)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(web.get(base + "export/report.pdf").content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, encoding="utf-8", check=True
    ).stdout
    assert "corrected by alice" in text


def test_a_failed_correction_is_measured_again_not_replaced_by_the_model(
    teams: dict[str, Any], analysed: dict[str, Any], tmp_path: Path
) -> None:
    client, visit, run = analysed["client"], analysed["visit"], analysed["run"]
    labels = _labels(client, visit, run, tmp_path)
    created = _post(client, visit, _upload(labels, tmp_path), run.code).json()
    AnalysisRun.objects.filter(code=created["run"]).update(
        status=RunStatus.FAILED, error="measure: the disk was full"
    )
    response = client.post(f"/api/visits/{visit.code}/reanalyse/")
    assert response.status_code == 202
    assert response.json()["code"] == created["run"]  # the same run, from its own stage
    again = AnalysisRun.objects.get(code=created["run"])
    assert (again.stage, again.status, again.error) == (Stage.MEASURE, RunStatus.QUEUED, "")
    _measure_and_assess(again)
    assert client.get(f"/api/visits/{visit.code}/").json()["results"]["run"] == created["run"]
