"""The pages and exports: login, team scoping (another team's patient is a 404 everywhere), the
list's order, the timeline's chart and badges, review, upload errors, every export's content
and its audit row. Made-up records (tests.tracker.factories); the real images are exercised by
the slow pipeline test and the browser tests."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from typing import Any

import pytest
from django.test import Client

from tests.tracker.conftest import client_for
from tests.tracker.factories import analysed_patient
from tracker.models import (
    AnalysisRun,
    AuditEvent,
    Patient,
    Review,
    RunStatus,
    Scan,
    Stage,
    Visit,
)

pytestmark = pytest.mark.django_db


def _web(user: Any) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def analysed(teams: dict[str, Any]) -> Patient:
    return analysed_patient(teams["team_a"], "GBM-EXPORT", 4)


def _urls(patient: Patient) -> list[str]:
    visit = patient.visits.order_by("acquired_on").first()
    assert visit is not None
    return [
        f"/patients/{patient.code}/",
        f"/patients/{patient.code}/progress/",
        f"/patients/{patient.code}/upload/",
        f"/patients/{patient.code}/export/report.pdf",
        f"/patients/{patient.code}/export/measurements.csv",
        f"/patients/{patient.code}/export/lesions.csv",
        f"/patients/{patient.code}/export/timeline.json",
        f"/patients/{patient.code}/export/fhir.json",
        f"/visits/{visit.code}/",
        f"/visits/{visit.code}/slices/t1c/axial/0.png",
    ]


def test_every_page_needs_a_login_and_is_scoped_to_the_care_team(
    teams: dict[str, Any], analysed: Patient
) -> None:
    for url in ["/patients/", *_urls(analysed)]:
        anonymous = _web(None).get(url)
        assert anonymous.status_code == 302, url
        assert anonymous["Location"].startswith("/accounts/login/"), url
    for url in _urls(analysed):
        assert _web(teams["bob"]).get(url).status_code == 404, url
    member = _web(teams["alice"])
    for url in _urls(analysed)[:-1]:  # no images exist for made-up runs: the slice is a 404
        assert member.get(url).status_code == 200, url
    visit = analysed.visits.first()
    assert visit is not None
    response = _web(teams["bob"]).post(f"/visits/{visit.code}/review/", {"action": "confirm"})
    assert response.status_code == 404
    assert not Review.objects.exists()
    listing = _web(teams["bob"]).get("/patients/")
    assert b"GBM-EXPORT" not in listing.content


def test_the_login_page_logs_in_and_the_list_follows(teams: dict[str, Any]) -> None:
    client = Client()
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'name="password"' in page.content
    wrong = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert b"did not match" in wrong.content
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "alice-password-1"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/patients/"
    assert b"GBM-001" in client.get("/patients/").content


def test_the_list_is_sorted_by_what_needs_doing_next(teams: dict[str, Any]) -> None:
    team = teams["team_a"]
    quiet = analysed_patient(team, "A-REVIEWED", 2, reviewer=teams["alice"])
    needs_review = analysed_patient(team, "B-UNREVIEWED", 2)
    failing = analysed_patient(team, "C-FAILED", 2)
    visit = failing.visits.order_by("acquired_on").last()
    assert visit is not None
    AnalysisRun.objects.create(
        visit=visit, stage=Stage.SEGMENT, status=RunStatus.FAILED, error="segment: no brain"
    )
    page = _web(teams["alice"]).get("/patients/")
    text = page.content.decode()
    # Failed, then awaiting review, then no visits yet (upload one), then up to date.
    labels = ("C-FAILED", "B-UNREVIEWED", "GBM-001", "A-REVIEWED")
    order = [text.index(label) for label in labels]
    assert order == sorted(order), order
    assert "analysis failed: re-analyse" in text
    assert "review the latest response" in text
    only_failed = _web(teams["alice"]).get("/patients/?status=failed").content.decode()
    assert "C-FAILED" in only_failed
    assert "B-UNREVIEWED" not in only_failed
    searched = _web(teams["alice"]).get("/patients/?q=unrev").content.decode()
    assert "B-UNREVIEWED" in searched
    assert "C-FAILED" not in searched
    assert quiet.code
    assert needs_review.code
    assert AuditEvent.objects.filter(action="read_patient_list").count() == 3


def test_the_timeline_page_has_a_point_per_analysed_visit_badges_and_reasons(
    teams: dict[str, Any], analysed: Patient
) -> None:
    Visit.objects.create(patient=analysed, acquired_on="2025-06-01")  # not analysed yet
    page = _web(teams["alice"]).get(f"/patients/{analysed.code}/")
    text = page.content.decode()
    import re

    points = re.findall(r'class="point" data-series="WT"', text)
    assert len(points) == 4  # one per analysed visit, none for the unanalysed one
    assert "made up for a test" in text  # the reasons
    assert 'class="badge cat-baseline' in text
    assert "not analysed yet" in text
    assert AuditEvent.objects.filter(action="read_timeline_page", patient=analysed).exists()


def test_progress_reports_run_states_for_the_page_to_poll(
    teams: dict[str, Any], analysed: Patient
) -> None:
    visit = analysed.visits.order_by("acquired_on").last()
    assert visit is not None
    AnalysisRun.objects.create(visit=visit, stage=Stage.SEGMENT, status=RunStatus.RUNNING)
    state = _web(teams["alice"]).get(f"/patients/{analysed.code}/progress/").json()
    assert state["busy"] is True
    assert state["visits"][-1] == {
        "code": str(visit.code),
        "stage": "segment",
        "status": "running",
        "error": "",
    }


def test_a_review_is_saved_and_an_override_needs_a_reason(
    teams: dict[str, Any], analysed: Patient
) -> None:
    visit = analysed.visits.order_by("acquired_on").last()
    assert visit is not None
    client = _web(teams["alice"])
    refused = client.post(
        f"/visits/{visit.code}/review/", {"action": "override", "category": "PD"}, follow=True
    )
    assert b"an override needs a category and a reason" in refused.content
    assert not Review.objects.exists()
    client.post(
        f"/visits/{visit.code}/review/",
        {"action": "override", "category": "PD", "reason": "new lesion on FLAIR"},
    )
    review = Review.objects.get()
    assert (review.action, review.category, review.reviewer) == (
        "override",
        "PD",
        teams["alice"],
    )
    timeline = client.get(f"/patients/{analysed.code}/").content.decode()
    assert "overridden" in timeline
    assert "new lesion on FLAIR" in timeline
    listing = client.get("/patients/").content.decode()
    assert 'class="badge cat-PD"' in listing
    assert "overridden (engine: SD)" in listing
    assert AuditEvent.objects.filter(action="review_override").exists()


def test_review_wording_and_rules(teams: dict[str, Any], analysed: Patient) -> None:
    """'Agree', not 'Confirm' (a RANO confirmation is another thing); no override to the
    engine's own category nor to baseline; a refused review keeps what was chosen and typed."""
    visit = analysed.visits.order_by("acquired_on").last()
    assert visit is not None  # the engine says SD
    client = _web(teams["alice"])
    page = client.get(f"/visits/{visit.code}/").content.decode()
    assert "Agree with the engine" in page
    assert ">Confirm<" not in page
    assert '<option value="baseline"' not in page
    assert '<option value="pre_baseline"' not in page
    assert '<option value="SD"' not in page  # the engine's own category
    same = client.post(
        f"/visits/{visit.code}/review/",
        {"action": "override", "category": "SD", "reason": "looks stable"},
        follow=True,
    ).content.decode()
    assert "the engine already says SD: agree with it instead of overriding" in same
    assert '<input type="radio" name="action" value="override" checked>' in same
    assert ">looks stable</textarea>" in same
    to_baseline = client.post(
        f"/visits/{visit.code}/review/",
        {"action": "override", "category": "baseline", "reason": "this is the real baseline"},
        follow=True,
    ).content.decode()
    assert '<option value="PR"' in to_baseline
    assert not Review.objects.exists()
    api = client_for(teams["alice"]).post(
        f"/api/visits/{visit.code}/review/",
        {"action": "override", "category": "baseline", "reason": "x"},
        format="json",
    )
    assert api.status_code == 400
    api = client_for(teams["alice"]).post(
        f"/api/visits/{visit.code}/review/",
        {"action": "override", "category": "SD", "reason": "x"},
        format="json",
    )
    assert api.status_code == 400
    assert "agree with it instead" in api.json()["category"][0]
    client.post(f"/visits/{visit.code}/review/", {"action": "confirm"})
    review = Review.objects.get()
    page = client.get(f"/visits/{visit.code}/").content.decode()
    assert f"Agreed with by {review.reviewer} on {review.reviewed_at:%Y-%m-%d}" in page


def test_an_earlier_unreviewed_progression_keeps_the_patient_in_review(
    teams: dict[str, Any], analysed: Patient
) -> None:
    from tracker.models import Assessment

    second, latest = list(analysed.visits.order_by("acquired_on"))[1], analysed.visits.last()
    Assessment.objects.filter(visit=second, is_current=True).update(category="PD")
    for visit in analysed.visits.exclude(pk=second.pk):
        Review.objects.create(
            visit=visit,
            assessment=visit.assessments.get(is_current=True),
            action="confirm",
            reviewer=teams["alice"],
        )
    assert latest is not None
    listing = _web(teams["alice"]).get("/patients/").content.decode()
    assert "review progression" in listing
    needs_review = _web(teams["alice"]).get("/patients/?status=review").content.decode()
    assert analysed.label in needs_review


def test_the_upload_form_names_each_problem_and_stores_nothing(
    teams: dict[str, Any],
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    patient = teams["patient"]
    response = _web(teams["alice"]).post(
        f"/patients/{patient.code}/upload/",
        {
            "acquired_on": "2024-03-01",
            "t1": SimpleUploadedFile("t1.nii.gz", b"not an image"),
        },
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "Nothing was stored" in text
    assert "t1" in text
    assert "flair" in text
    # An empty date is left to a DICOM archive's headers; NIfTI files carry none.
    undated = _web(teams["alice"]).post(
        f"/patients/{patient.code}/upload/",
        {"acquired_on": "", "t1c": SimpleUploadedFile("t1c.nii.gz", b"not an image")},
    )
    assert undated.status_code == 400
    assert "the scan date is required" in undated.content.decode()
    assert not Visit.objects.filter(patient=patient).exists()
    assert not Scan.objects.exists()


def test_exports_carry_the_numbers_and_each_is_audited(
    teams: dict[str, Any], analysed: Patient
) -> None:
    from tracker.reports.exports import validate_fhir_bundle

    client = _web(teams["alice"])
    base = f"/patients/{analysed.code}/export/"
    rows = list(csv.DictReader(io.StringIO(client.get(base + "measurements.csv").content.decode())))
    assert len(rows) == 4
    assert rows[0]["WT_ml"] == "14.0"
    assert rows[0]["patient_label"] == "GBM-EXPORT"
    lesions = list(csv.DictReader(io.StringIO(client.get(base + "lesions.csv").content.decode())))
    assert len(lesions) == 8
    timeline = json.loads(client.get(base + "timeline.json").content)
    assert len(timeline["visits"]) == 4
    response = client.get(base + "fhir.json")
    assert response["Content-Type"] == "application/fhir+json"
    bundle = json.loads(response.content)
    validate_fhir_bundle(bundle)
    codes = [
        coding["code"]
        for entry in bundle["entry"]
        for coding in entry["resource"].get("code", {}).get("coding", [])
    ]
    assert codes.count("97509-4") == 4
    assert client.get(base + "nothing.txt").status_code == 404
    actions = set(AuditEvent.objects.filter(patient=analysed).values_list("action", flat=True))
    assert {
        "export_measurements_csv",
        "export_lesions_csv",
        "export_timeline_json",
        "export_fhir_json",
    } <= actions


def _pdf_text(content: bytes, folder: Any, *options: str) -> str:
    """The text of a PDF (poppler's pdftotext)."""
    path = folder / "report.pdf"
    path.write_bytes(content)
    return subprocess.run(
        ["pdftotext", *options, str(path), "-"], capture_output=True, encoding="utf-8", check=True
    ).stdout


def test_a_patient_label_cannot_restyle_the_report_or_make_it_fetch_anything(
    teams: dict[str, Any], analysed: Patient, tmp_path: Any
) -> None:
    """The label once sat in a CSS string: this one closed it, fetched an outside URL and
    removed the notices. Now it is HTML-escaped text, and the report reads no resource but
    its own embedded images."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    outside = f"http://127.0.0.1:{server.server_port}"
    # a newline ends a CSS string (HTML escaping does not touch it)
    analysed.label = (
        f"P\n}}}}body{{background:url({outside}/b)}}.notice,table{{display:none}}@page{{"
    )
    analysed.save(update_fields=["label"])
    try:
        response = _web(teams["alice"]).get(f"/patients/{analysed.code}/export/report.pdf")
    finally:
        server.shutdown()
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    assert len(analysed.label) <= 100
    assert hits == []
    if shutil.which("pdftotext"):
        text = " ".join(_pdf_text(response.content, tmp_path).split())
        assert "Not for diagnostic use" in text
        assert "NOT FOR DIAGNOSTIC USE" in text
        assert "background:url(" in text  # the label, shown as text


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs pdftotext (poppler-utils)")
def test_the_report_footer_shows_the_label_as_typed_on_every_page(
    teams: dict[str, Any], analysed: Patient, tmp_path: Any
) -> None:
    """HTML-escaped text placed in CSS came out as entities (O&#x27;Brien &amp; ...)."""
    analysed.label = 'O\'Brien & <Sons> "A"'
    analysed.save(update_fields=["label"])
    response = _web(teams["alice"]).get(f"/patients/{analysed.code}/export/report.pdf")
    pages = _pdf_text(response.content, tmp_path).rstrip("\f").split("\f")
    for number, page in enumerate(pages, 1):
        assert 'O\'Brien & <Sons> "A" · progression report' in page, number
    text = "".join(pages)
    for entity in ("&amp;", "&#x27;", "&lt;", "&quot;", "&#39;"):
        assert entity not in text, entity


def test_a_long_note_stored_before_the_limit_keeps_the_report_bounded(
    teams: dict[str, Any], analysed: Patient, tmp_path: Any
) -> None:
    from tracker.models import TreatmentEvent

    TreatmentEvent.objects.filter(patient=analysed).update(notes="long note " * 100_000)
    response = _web(teams["alice"]).get(f"/patients/{analysed.code}/export/report.pdf")
    assert response.status_code == 200
    assert len(response.content) < 2_000_000
    if shutil.which("pdftotext"):
        assert 0 < _pdf_text(response.content, tmp_path).count("long note") <= 60


def test_the_report_fetcher_serves_only_its_own_embedded_images() -> None:
    from tracker.reports.pdf import _url_fetcher

    fetcher = _url_fetcher()
    for url in ("file:///etc/passwd", "http://127.0.0.1:9/x", "data:text/css,body{}"):
        with pytest.raises(ValueError, match="refused"):
            fetcher.fetch(url)
    assert fetcher.fetch("data:image/png;base64,iVBORw0KGgo=") is not None


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs pdftotext (poppler-utils)")
def test_the_tumour_board_report_is_a_pdf_with_the_history_and_the_notice(
    teams: dict[str, Any], analysed: Patient, tmp_path: Any
) -> None:
    response = _web(teams["alice"]).get(f"/patients/{analysed.code}/export/report.pdf")
    assert response.status_code == 200
    assert response.content.startswith(b"%PDF")
    assert "attachment" in response["Content-Disposition"]
    text = _pdf_text(response.content, tmp_path, "-layout")
    for expected in (
        "Tumour progression report",
        "GBM-EXPORT",
        "Not for diagnostic use",
        "radiotherapy",
        "made up for a test",
        "tumour-segmenter test",
    ):
        assert expected in text, expected
    assert AuditEvent.objects.filter(action="export_report_pdf", patient=analysed).exists()


def test_a_flagged_registration_shows_its_stored_reason_wherever_it_is_used(
    teams: dict[str, Any], analysed: Patient
) -> None:
    """The stored reason (not a rotation that passed) on the visit page, beside the response
    badge on the timeline, in the patient list, the API and the report."""
    from tracker.models import Registration

    first, second = analysed.visits.order_by("acquired_on")[:2]
    reason = (
        "low similarity after registration (correlation 0.14 inside the mask, "
        "at least 0.40 expected)"
    )
    Registration.objects.create(
        run=second.runs.get(),
        to_visit=first,
        role="prior",
        transform="x",
        passed=False,
        quality={
            "transform": {"rotation_deg": 6.0},
            "quality": {"ok": False, "problems": [reason]},
        },
    )
    client = _web(teams["alice"])
    visit_page = client.get(f"/visits/{second.code}/").content.decode()
    assert reason in visit_page
    assert "rotation 6.0 degrees" not in visit_page
    timeline_page = client.get(f"/patients/{analysed.code}/").content.decode()
    assert "⚠ registration flagged" in timeline_page
    assert f"registration to the prior visit flagged: {reason}" in timeline_page
    listing = client.get("/patients/").content.decode()
    assert listing.count("⚠ registration flagged") == 1
    api = client_for(teams["alice"]).get(f"/api/visits/{second.code}/").json()
    assert api["results"]["registrations"][0]["problems"] == [reason]


def test_the_headline_says_where_the_patient_stands(
    teams: dict[str, Any], analysed: Patient, tmp_path: Any
) -> None:
    """The latest category with its change against the engine's baseline and nadir, when a
    confirmation scan counts, and where a progression was pseudoprogression: on the timeline
    page and the report's first page."""
    import datetime as dt

    from inference.response.rano import PSEUDOPROGRESSION
    from tracker.models import Assessment

    visits = list(analysed.visits.order_by("acquired_on"))  # SPD 400, 401, 402, 403 mm²
    Assessment.objects.filter(visit=visits[1]).update(is_nadir_visit=True)
    Assessment.objects.filter(visit=visits[1]).update(category="PD", confirmed=False)
    Assessment.objects.filter(visit=visits[2]).update(
        category="SD",
        reasons=[f"the preliminary progression of v1 ... was {PSEUDOPROGRESSION}"],
        pseudoprogression_of=visits[1],
    )
    Assessment.objects.filter(visit=visits[3]).update(category="PD", confirmed=False)
    page = _web(teams["alice"]).get(f"/patients/{analysed.code}/").content.decode()
    text = " ".join(page.split())
    latest = visits[3].acquired_on
    assert f"Now ({latest}):" in text
    assert "progressive disease, preliminary" in text
    assert f"+0.8 % against the baseline ({visits[0].acquired_on})" in text
    assert f"+0.5 % against the nadir ({visits[1].acquired_on})" in text
    due = latest + dt.timedelta(days=28)
    assert f"a scan on or after <strong>{due}</strong>" in text
    assert (
        f"the preliminary progression of {visits[1].acquired_on} was not confirmed by the scan "
        f"of {visits[2].acquired_on}" in text
    )
    chart = text[text.index("<svg") :]
    assert (
        f'class="marker-pseudoprogression" data-from="{visits[1].acquired_on}" '
        f'data-to="{visits[2].acquired_on}"' in chart
    )
    pdf = _web(teams["alice"]).get(f"/patients/{analysed.code}/export/report.pdf")
    report = _pdf_text(pdf.content, tmp_path)
    assert "Where it stands" in report
    assert str(due) in report


def test_the_lesions_are_tabled_over_time(teams: dict[str, Any], analysed: Patient) -> None:
    from tracker.models import Lesion

    visits = list(analysed.visits.order_by("acquired_on"))
    Lesion.objects.filter(run__visit=visits[2], track="L2").delete()  # L2 not seen at visit 3
    page = _web(teams["alice"]).get(f"/patients/{analysed.code}/").content.decode()
    table = page[page.index('id="lesion-table"') :]
    table = table[: table.index("</table>")]
    header = [f'<th scope="col">{v.acquired_on}</th>' for v in visits]
    assert all(h in table for h in header)
    l1 = table[table.index('<th scope="row">L1</th>') :].split("</tr>")[0]
    assert l1.count("20.0 × 11.0*") == 4
    l2 = table[table.index('<th scope="row">L2</th>') :].split("</tr>")[0]
    assert l2.count("20.0 × 12.0*") == 3
    assert l2.count('<td class="num">–</td>') == 1


def test_the_3d_viewer_gets_the_prepared_or_the_original_image_and_nothing_else(
    teams: dict[str, Any], analysed: Patient
) -> None:
    from tracker.storage import original_folder, run_files

    visit = analysed.visits.order_by("acquired_on").last()
    assert visit is not None
    run = visit.runs.get()
    files = run_files(run)
    files.prepared.mkdir(parents=True)
    files.segmentation.mkdir(parents=True)
    original_folder(visit).mkdir(parents=True)
    (files.prepared / "t1c.nii.gz").write_bytes(b"prepared")
    files.labels.write_bytes(b"labels")
    (original_folder(visit) / "t1c.nii").write_bytes(b"original")
    client = _web(teams["alice"])
    served = {
        name: b"".join(client.get(f"/visits/{visit.code}/volumes/{name}.nii.gz").streaming_content)
        for name in ("t1c", "original-t1c", "seg")
    }
    assert served == {"t1c": b"prepared", "original-t1c": b"original", "seg": b"labels"}
    for name in ("flair", "original-flair", "original-t1", "prepared/../../x"):
        assert client.get(f"/visits/{visit.code}/volumes/{name}.nii.gz").status_code == 404
    assert AuditEvent.objects.filter(action="read_volume").count() == 3
