"""Visits that lack sequences: an upload needs T1 post-contrast or FLAIR (a 400 names what is
missing otherwise, and nothing is stored); what the sequences cannot support is shown as not
measured, never as a number (API, pages, exports); a visit without T1 post-contrast is 'NE' (not
evaluable): never a baseline or a nadir, and confirmation windows run across it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from inference.measurement.render import WHOLE_TUMOUR, read_layer
from tests.tracker.conftest import (
    client_for,
    post_visit,
    run_all_stages,
    stored_files,
    upload_files,
)
from tests.tracker.factories import analysed_patient
from tracker.models import (
    AnalysisRun,
    Assessment,
    Lesion,
    Measurement,
    Patient,
    Registration,
    RunStatus,
    Scan,
    Stage,
    TreatmentEvent,
    Visit,
)
from tracker.reports.pdf import _legend
from tracker.services.assessments import patient_assess
from tracker.storage import run_files

pytestmark = pytest.mark.django_db

NEITHER = "cannot segment without T1 post-contrast or FLAIR: found T1, T2"
FLAIR_ONLY = "FLAIR (T1, T1c, T2 missing): whole tumour measured; core and enhancing not measured"


# --- uploads -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_upload_with_only_t1c_and_flair_is_accepted(
    teams: dict[str, Any], phantom_visits: list[Path], django_capture_on_commit_callbacks: Any
) -> None:
    files = upload_files(phantom_visits[0])
    del files["t1"], files["t2"]
    with django_capture_on_commit_callbacks(execute=False):
        response = post_visit(client_for(teams["alice"]), teams["patient"], files, on="2024-03-01")
    assert response.status_code == 201, response.content
    visit = Visit.objects.get(code=response.json()["code"])
    assert sorted(visit.scans.values_list("sequence", flat=True)) == ["flair", "t1c"]
    assert response.json()["analysis"]["stage"] == "prepare"


@pytest.mark.slow
def test_an_upload_with_only_t1_and_t2_is_refused_naming_what_is_missing(
    teams: dict[str, Any], phantom_visits: list[Path]
) -> None:
    files = upload_files(phantom_visits[0])
    del files["t1c"], files["flair"]
    response = post_visit(client_for(teams["alice"]), teams["patient"], files, on="2024-03-01")
    assert response.status_code == 400
    assert response.json() == {"t1c": [NEITHER], "flair": [NEITHER]}
    assert Visit.objects.count() == 0
    assert AnalysisRun.objects.count() == 0
    assert Scan.objects.count() == 0
    assert stored_files() == []


@pytest.mark.slow
def test_a_zip_without_t1c_or_flair_is_refused_naming_what_is_missing(
    teams: dict[str, Any], phantom_visits: list[Path]
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for suffix in ("t1n", "t2w"):
            path = next(phantom_visits[0].glob(f"*-{suffix}.nii.gz"))
            bundle.write(path, f"visit/{path.name}")
    archive = SimpleUploadedFile("visit.zip", buffer.getvalue())
    response = post_visit(
        client_for(teams["alice"]), teams["patient"], {"archive": archive}, on="2024-03-01"
    )
    assert response.status_code == 400
    assert response.json() == {"archive": [NEITHER]}
    assert Visit.objects.count() == 0
    assert stored_files() == []


def test_an_upload_form_without_t1c_or_flair_says_what_is_missing(teams: dict[str, Any]) -> None:
    patient = teams["patient"]
    web = Client()
    web.force_login(teams["alice"])
    response = web.post(f"/patients/{patient.code}/upload/", {"acquired_on": "2024-03-01"})
    assert response.status_code == 400
    text = response.content.decode()
    assert "no file chosen: send the visit&#x27;s NIfTI files" in text
    assert "with T1 post-contrast or FLAIR at least" in text
    assert not Visit.objects.exists()


@pytest.mark.slow
def test_a_folder_import_takes_a_subset_and_skips_a_folder_without_t1c_or_flair(
    teams: dict[str, Any], phantom_visits: list[Path], tmp_path: Path
) -> None:
    from inference.errors import MissingSequenceError
    from tracker.services.imports import visit_create_from_folder

    flair_only, t1_only = tmp_path / "flair-only", tmp_path / "t1-only"
    for folder, suffix in ((flair_only, "t2f"), (t1_only, "t1n")):
        folder.mkdir()
        source = next(phantom_visits[0].glob(f"*-{suffix}.nii.gz"))
        (folder / source.name).write_bytes(source.read_bytes())
    patient = teams["patient"]
    visit = visit_create_from_folder(patient=patient, acquired_on="2024-01-01", folder=flair_only)
    assert list(visit.scans.values_list("sequence", flat=True)) == ["flair"]
    with pytest.raises(MissingSequenceError) as caught:
        visit_create_from_folder(patient=patient, acquired_on="2024-02-01", folder=t1_only)
    t1_name = next(t1_only.iterdir()).name
    assert caught.value.message == (
        f"t1-only: cannot segment without T1 post-contrast or FLAIR: found T1 ({t1_name})"
    )
    assert Visit.objects.count() == 1


# --- what is shown -------------------------------------------------------------------------------


def _make_flair_only(visit: Visit) -> AnalysisRun:
    """The visit's current run as if it had been segmented from a FLAIR alone."""
    run = visit.runs.get(is_current=True)
    run.sequences_used, run.supported_regions = ["flair"], ["WT"]
    run.save(update_fields=["sequences_used", "supported_regions"])
    Measurement.objects.filter(run=run).update(
        volumes_ml={"NCR": None, "ED": None, "ET": None, "TC": None, "WT": 14.0},
        sum_of_products_mm2=None,
    )
    Lesion.objects.filter(run=run).delete()
    Assessment.objects.filter(visit=visit).update(
        category="indeterminate", reasons=["no T1 post-contrast at this visit"]
    )
    return run


def test_a_flair_only_visit_shows_its_sequences_and_no_number_for_the_core(
    teams: dict[str, Any],
) -> None:
    patient = analysed_patient(teams["team_a"], "GBM-FLAIR", 3)
    visit = patient.visits.order_by("acquired_on")[1]
    _make_flair_only(visit)
    api = client_for(teams["alice"])
    results = api.get(f"/api/visits/{visit.code}/").json()["results"]
    assert results["sequences_used"] == ["flair"]
    assert results["sequences_missing"] == ["t1", "t1c", "t2"]
    assert results["supported_regions"] == ["WT"]
    assert results["sequences"] == FLAIR_ONLY
    assert results["volumes_ml"] == {"NCR": None, "ED": None, "ET": None, "TC": None, "WT": 14.0}
    assert results["sum_of_products_mm2"] is None
    assert results["lesions"] == []
    assert set(results["not_measured"]) == {"ET", "TC", "NCR", "ED"}
    assert results["not_measured"]["ET"] == (
        "not measured: needs T1 post-contrast, which this visit lacks"
    )
    timeline = api.get(f"/api/patients/{patient.code}/timeline/").json()
    assert timeline["visits"][1]["results"] == results
    assert timeline["visits"][0]["results"]["sequences_used"] == ["t1", "t1c", "t2", "flair"]
    web = Client()
    web.force_login(teams["alice"])
    page = web.get(f"/visits/{visit.code}/").content.decode()
    assert f"Sequences: {FLAIR_ONLY}" in page
    assert "not measured" in page
    assert "Lesions not measured" in page
    assert "14.00 mL" in page
    timeline_page = web.get(f"/patients/{patient.code}/").content.decode()
    assert FLAIR_ONLY in timeline_page
    assert "not measured" in timeline_page
    for kind in ("measurements.csv", "fhir.json", "report.pdf", "timeline.json"):
        assert web.get(f"/patients/{patient.code}/export/{kind}").status_code == 200, kind
    csv_text = web.get(f"/patients/{patient.code}/export/measurements.csv").content.decode()
    row = next(line for line in csv_text.splitlines() if str(visit.code) in line)
    assert "flair" in row
    assert "ET: not measured: needs T1 post-contrast" in row


# --- the assessment ------------------------------------------------------------------------------


def _lesion_map(run: AnalysisRun, *, gone: bool = False) -> str:
    """A small lesion map with lesion 1 (all zero when the tumour is gone)."""
    values = np.zeros((20, 20, 20), np.uint8)
    values[8:12, 8:12, 8:12] = 0 if gone else 1
    path = Path(settings.MEDIA_ROOT) / run.folder / "lesions.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    return str(path.relative_to(settings.MEDIA_ROOT))


def _analysed_visit(
    patient: Patient,
    on: str,
    sequences: list[str],
    regions: list[str],
    *,
    longest_mm: float,
    first: Visit | None = None,
    gone: bool = False,
) -> Visit:
    visit = Visit.objects.create(patient=patient, acquired_on=on)
    run = AnalysisRun.objects.create(
        visit=visit,
        stage=Stage.DONE,
        status=RunStatus.DONE,
        is_current=True,
        sequences_used=sequences,
        supported_regions=regions,
    )
    core = "TC" in regions
    volumes = {
        "NCR": 1.0 if core else None,
        "ED": 10.0 if core and "WT" in regions else None,
        "ET": 2.0 if core else None,
        "TC": 3.0 if core else None,
        "WT": 13.0 if "WT" in regions else None,
    }
    Measurement.objects.create(
        run=run,
        volumes_ml=volumes,
        sum_of_products_mm2=longest_mm * 20.0 if core else None,
        lesion_map=_lesion_map(run, gone=gone),
        segmentation="x",
    )
    if core and not gone:
        Lesion.objects.create(
            run=run,
            number=1,
            volume_ml=3.0,
            et_volume_ml=2.0,
            longest_mm=longest_mm,
            perpendicular_mm=20.0,
            product_mm2=longest_mm * 20.0,
            measurable=True,
            target=True,
            centroid_mm=[10.0, 10.0, 10.0],
        )
    if first is not None:
        transform = Path(settings.MEDIA_ROOT) / run.folder / "to-first.tfm"
        sitk.WriteTransform(sitk.Euler3DTransform(), str(transform))
        Registration.objects.create(
            run=run,
            to_visit=first,
            role="baseline",
            transform=str(transform.relative_to(settings.MEDIA_ROOT)),
            passed=True,
        )
    return visit


def test_a_visit_without_t1c_is_not_evaluable_and_never_a_nadir(
    teams: dict[str, Any],
) -> None:
    patient = Patient.objects.create(team=teams["team_a"], label="GBM-SUBSET", setting="recurrent")
    TreatmentEvent.objects.create(patient=patient, kind="antiangiogenic", started_on="2023-12-01")
    full = ["t1", "t1c", "t2", "flair"]
    first = _analysed_visit(patient, "2024-01-01", full, ["ET", "TC", "WT"], longest_mm=20.0)
    flair = _analysed_visit(patient, "2024-03-01", ["flair"], ["WT"], longest_mm=0.0, first=first)
    t1c = _analysed_visit(
        patient, "2024-05-01", ["t1c"], ["ET", "TC"], longest_mm=40.0, first=first
    )
    patient_assess(patient=patient)
    current = {a.visit_id: a for a in Assessment.objects.filter(is_current=True)}
    assert current[first.pk].category == "baseline"
    left_out = current[flair.pk]
    assert left_out.category == "NE"
    assert left_out.confirmed is None
    assert left_out.reasons[0].startswith("not evaluable: no T1 post-contrast at this visit")
    # The engine saw the FLAIR-only visit as not evaluable: no burden was invented for it.
    engine_input = current[t1c.pk].timeline_input
    assert [v["id"] for v in engine_input["visits"]] == ["2024-01-01", "2024-03-01", "2024-05-01"]
    assert engine_input["visits"][1]["not_evaluable"].startswith("no T1 post-contrast")
    assert engine_input["visits"][1]["lesions"] == []
    assert engine_input["visits"][2]["non_enhancing_volume_ml"] is None  # no FLAIR or T2
    progression = current[t1c.pk]
    assert progression.category == "PD"
    assert progression.reference_visit_id == first.pk
    assert any("no FLAIR or T2 at this visit" in r for r in progression.reasons)
    assert set(Lesion.objects.values_list("track", flat=True)) == {"L1"}


def test_a_patient_with_only_a_flair_visit_is_not_evaluable(teams: dict[str, Any]) -> None:
    patient = teams["patient"]
    visit = _analysed_visit(patient, "2024-01-01", ["flair", "t2"], ["WT"], longest_mm=0.0)
    (assessment,) = patient_assess(patient=patient)
    assert assessment.visit_id == visit.pk
    assert assessment.category == "NE"


def test_a_non_enhancing_tumour_without_flair_or_t2_is_not_evaluable(
    teams: dict[str, Any],
) -> None:
    patient = Patient.objects.create(
        team=teams["team_a"], label="LGG-1", presentation="non-ce", setting="recurrent"
    )
    full = ["t1", "t1c", "t2", "flair"]
    first = _analysed_visit(patient, "2024-01-01", full, ["ET", "TC", "WT"], longest_mm=20.0)
    later = _analysed_visit(
        patient, "2024-03-01", ["t1", "t1c"], ["ET", "TC"], longest_mm=20.0, first=first
    )
    patient_assess(patient=patient)
    assessment = Assessment.objects.get(visit=later, is_current=True)
    assert assessment.category == "NE"
    assert assessment.reasons[0].startswith("not evaluable: no FLAIR or T2 at this visit")


# --- the real chain ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_flair_only_follow_up_is_analysed_end_to_end(
    teams: dict[str, Any], phantom_visits: list[Path], django_capture_on_commit_callbacks: Any
) -> None:
    """SYNTHETIC PHANTOM: a full baseline, then a follow-up with FLAIR alone, through every
    stage in this process."""
    import json

    client = client_for(teams["alice"])
    patient = teams["patient"]
    for index, folder in enumerate(phantom_visits):
        truth = json.loads((folder / "truth.json").read_text())
        files = upload_files(folder)
        if index == 1:
            files = {"flair": files["flair"]}
        with django_capture_on_commit_callbacks(execute=False):
            response = post_visit(client, patient, files, on=truth["acquired_on"])
        assert response.status_code == 201, response.content
        run_all_stages(AnalysisRun.objects.get(visit__code=response.json()["code"]))
    visits = client.get(f"/api/patients/{patient.code}/timeline/").json()["visits"]
    follow_up = visits[1]
    assert follow_up["results"]["sequences_used"] == ["flair"]
    assert follow_up["results"]["supported_regions"] == ["WT"]
    assert follow_up["results"]["volumes_ml"]["ET"] is None
    assert follow_up["results"]["volumes_ml"]["WT"] > 0
    assert follow_up["results"]["sum_of_products_mm2"] is None
    assert follow_up["assessment"]["category"] == "NE"
    assert visits[0]["assessment"]["category"] == "baseline"
    run = AnalysisRun.objects.get(code=follow_up["results"]["run"])
    segmentation = json.loads(
        (Path(settings.MEDIA_ROOT) / run.folder / "segmentation" / "segmentation.json").read_text()
    )
    assert segmentation["sequences_used"] == ["flair"]
    assert segmentation["volumes_ml"]["TC"]["volume_ml"] is None
    web = Client()
    web.force_login(teams["alice"])
    page = web.get(f"/visits/{follow_up['code']}/").content.decode()
    assert f"Sequences: {FLAIR_ONLY}" in page
    assert '<option value="flair">' in page
    assert '<option value="t1c">' not in page
    assert 'data-volume="flair"' in page
    # Its segmentation is shown in one whole-tumour colour, here and in the 3-D viewer: the
    # core and enhancing labels the model wrote are not measured, so not shown as such.
    shown = np.unique(read_layer(run_files(run).display, "labels"))
    assert set(shown) == {0, WHOLE_TUMOUR}
    assert "tumour, sub-regions not measured (no T1 post-contrast)" in page
    colours = json.loads(page.split('id="niivue-labels" type="application/json">')[1].split("<")[0])
    assert colours["I"] == [0, 1, 2, 3]
    assert set(colours["G"][1:]) == {0x9E}
    baseline = AnalysisRun.objects.get(code=visits[0]["results"]["run"])
    assert set(np.unique(read_layer(run_files(baseline).display, "labels"))) <= {0, 1, 2, 3}
    slices = f"/visits/{follow_up['code']}/slices"
    assert web.get(f"{slices}/flair/axial/10.png").status_code == 200
    assert web.get(f"{slices}/t1c/axial/10.png").status_code == 404
    assert web.get(f"/patients/{patient.code}/export/report.pdf").status_code == 200


def test_the_report_legend_lists_the_colours_its_key_slices_use() -> None:
    legend = _legend([{"labels_shown": [9]}, {"labels_shown": []}])
    assert legend == [
        {"name": "tumour, sub-regions not measured (no T1 post-contrast)", "colour": "#009e73"}
    ]
    names = [item["name"] for item in _legend([{"labels_shown": [1, 2, 3]}])]
    assert names == ["necrotic core (NCR)", "oedema (ED)", "enhancing tumour (ET)"]


def test_a_follow_up_with_no_tumour_left_is_assessed(teams: dict[str, Any]) -> None:
    """An all-zero lesion map is a complete response, not an unreadable image."""
    patient = Patient.objects.create(team=teams["team_a"], label="GBM-CR", setting="recurrent")
    full = ["t1", "t1c", "t2", "flair"]
    first = _analysed_visit(patient, "2024-01-01", full, ["ET", "TC", "WT"], longest_mm=20.0)
    later = _analysed_visit(
        patient, "2024-03-01", full, ["ET", "TC", "WT"], longest_mm=0.0, first=first, gone=True
    )
    patient_assess(patient=patient)
    assessment = Assessment.objects.get(visit=later, is_current=True)
    assert assessment.category == "CR"
    assert assessment.confirmed is False
