"""The pages in a real browser: Debian's headless Chromium driven by Playwright (the browser on
this machine; nothing downloaded). A phantom patient's two visits are analysed for real in this
process first (SYNTHETIC PHANTOM DATA), then a person logs in, opens the timeline (one chart
point per visit, tooltips, series toggles, keyboard), opens a visit (slices load, the overlay
toggles, the prior visit is compared), reviews it, downloads the PDF and reads its text, tries
another team's patient and gets a 404, and meets the upload form's validation. No console
errors anywhere. Screenshots of each page are written to ``$TRACKER_ARTIFACTS/browser`` (default
``test-artifacts/browser``) to be looked at.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inference.measurement import render
from tests.tracker.conftest import run_all_stages, upload_files
from tracker.models import AnalysisRun, Patient, Review, TreatmentEvent
from tracker.storage import run_files

CHROMIUM = os.environ.get("TRACKER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("TRACKER_ARTIFACTS", "test-artifacts")) / "browser"

# Every slice picture on show has loaded (hidden ones are not fetched).
SHOWN_IMAGES_LOADED = (
    "() => [...document.querySelectorAll('#viewer img.layer')].every(e => e.hidden"
    " || e.closest('.stack').hidden || (e.complete && e.naturalWidth > 0))"
)

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() or shutil.which("pdftotext") is None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser tests need {CHROMIUM} and pdftotext under CI")
        pytest.skip("needs Debian's chromium and poppler-utils")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM reads are
    # plain synchronous code all the same.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def analysed_patient(
    teams: dict[str, Any], phantom_visits: list[Path], django_capture_on_commit_callbacks: Any
) -> Patient:
    from tests.tracker.conftest import client_for

    patient = teams["patient"]
    TreatmentEvent.objects.create(
        patient=patient, kind="radiotherapy", started_on="2023-11-20", ended_on="2023-12-29"
    )
    TreatmentEvent.objects.create(patient=patient, kind="chemotherapy", started_on="2024-01-08")
    client = client_for(teams["alice"])
    runs = []
    for folder in phantom_visits:
        truth = json.loads((folder / "truth.json").read_text())
        with django_capture_on_commit_callbacks(execute=False):
            response = client.post(
                f"/api/patients/{patient.code}/visits/",
                {"acquired_on": truth["acquired_on"], **upload_files(folder)},
                format="multipart",
            )
        assert response.status_code == 201, response.content
        runs.append(AnalysisRun.objects.get(visit__code=response.json()["code"]))
    # The visits arrive together and the follow-up is analysed first (a history sent at once):
    # the page must still compare it with its prior.
    for run in reversed(runs):
        run_all_stages(run)
    return patient


def _watch(page: Any, problems: list[str]) -> None:
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))


def test_a_clinician_reviews_a_patient_in_a_real_browser(
    live_server: Any,
    browser: Any,
    *,
    teams: dict[str, Any],
    analysed_patient: Patient,
    phantom_visits: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    patient = analysed_patient
    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    _watch(page, problems)

    # Log in (the list redirects there first).
    page.goto(f"{live_server.url}/patients/")
    assert "/accounts/login/" in page.url
    page.screenshot(path=ARTIFACTS / "01-login.png")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "alice-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/patients/")
    assert page.locator("table.patients tbody tr").count() == 1
    page.screenshot(path=ARTIFACTS / "02-patients.png", full_page=True)

    # The timeline: one chart point per visit, tooltips, toggles, keyboard.
    page.click(f'table.patients a[href="/patients/{patient.code}/"]')
    page.wait_for_selector("svg.growth-chart")
    visits = list(patient.visits.order_by("acquired_on"))
    wt_points = page.locator('svg.growth-chart .point[data-series="WT"]')
    assert wt_points.count() == len(visits) == 2
    wt_points.first.hover()
    tooltip = page.locator(".growth-chart-tooltip")
    tooltip.wait_for(state="visible")
    assert "WT" in tooltip.inner_text()
    legend = page.locator('svg.growth-chart .legend-item[data-series="ED"]')
    legend.click()
    assert legend.get_attribute("aria-pressed") == "false"
    assert not page.locator('svg.growth-chart g.series[data-series="ED"]').is_visible()
    legend.focus()
    page.keyboard.press("Enter")
    assert legend.get_attribute("aria-pressed") == "true"
    assert page.locator(".badge.cat-baseline").count() >= 1
    page.locator("details.reasons summary").first.click()
    assert page.locator("details.reasons li").first.is_visible()
    page.screenshot(path=ARTIFACTS / "03-timeline.png", full_page=True)

    # The follow-up visit: slices load, the overlay toggles, the prior comparison appears.
    page.click(f'table.visits a[href="/visits/{visits[1].code}/"]')
    page.wait_for_selector("#viewer")
    page.wait_for_function(SHOWN_IMAGES_LOADED)
    # It opens on the target lesion's measured slice: the tumour is in the first view.
    config = json.loads(page.get_attribute("#viewer", "data-config") or "{}")
    display = run_files(AnalysisRun.objects.get(visit=visits[1], is_current=True)).display
    meta = render.read_meta(display)
    assert meta["lesions"], "no target lesion placed on the display grid"
    assert config["start"] == meta["lesions"][0]["slices"]
    labels = render.read_layer(display, "labels")
    assert render.cut(labels, "axial", config["start"]["axial"]).any()
    labels = page.locator('figure[data-plane="axial"] .stack.current img.labels')
    assert labels.is_visible()
    page.uncheck("#show-labels")
    assert not labels.is_visible()
    page.check("#show-labels")
    page.fill("#opacity", "80")
    page.dispatch_event("#opacity", "input")
    assert labels.evaluate("e => e.style.opacity") == "0.8"
    page.check("#show-heat")
    page.check("#show-prior")
    prior = page.locator('figure[data-plane="axial"] .stack.prior img.base')
    prior.wait_for(state="visible")
    page.wait_for_function(SHOWN_IMAGES_LOADED)
    slider = page.locator('figure[data-plane="axial"] input.slice')
    before = page.locator('figure[data-plane="axial"] .stack.current img.base').get_attribute("src")
    slider.focus()
    page.keyboard.press("ArrowUp")
    after = page.locator('figure[data-plane="axial"] .stack.current img.base').get_attribute("src")
    assert before != after
    # Linked crosshair: a click in the axial plane moves the coronal and sagittal planes there,
    # and the position is given in mm; orientation letters on every plane.
    coronal = page.locator('figure[data-plane="coronal"] input.slice')
    sagittal = page.locator('figure[data-plane="sagittal"] input.slice')
    box = page.locator('figure[data-plane="axial"] .stack.current img.base').bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.75)
    counts = json.loads(page.get_attribute("#viewer", "data-config") or "{}")["counts"]
    assert int(sagittal.input_value()) == int(0.25 * counts["sagittal"])
    assert int(coronal.input_value()) == int(0.75 * counts["coronal"])
    assert re.search(
        r"Crosshair at -?\d+\.\d, -?\d+\.\d, -?\d+\.\d mm", page.inner_text("#position")
    )
    letters = page.locator('figure[data-plane="axial"] .stack.current .orient').all_inner_texts()
    assert sorted(letters) == ["A", "L", "P", "R"]
    page.fill("#zoom", "200")
    page.dispatch_event("#zoom", "input")
    zoomed = page.locator('figure[data-plane="axial"] .stack.current .zoomed')
    assert zoomed.evaluate("e => e.style.transform") == "scale(2)"
    # Window/level: a narrower window changes the picture, and is read out in the image's units.
    axial = page.locator('figure[data-plane="axial"] .stack.current img.base')
    before_window = axial.screenshot()
    page.fill("#window-width", "25")
    page.dispatch_event("#window-width", "input")
    page.fill("#window-level", "40")
    page.dispatch_event("#window-level", "input")
    ramp = page.locator("#window-filter feFuncR")
    assert float(ramp.get_attribute("slope") or 0) == pytest.approx(4.0)
    assert float(ramp.get_attribute("intercept") or 0) == pytest.approx(-1.1)
    assert axial.evaluate("e => e.style.filter") == 'url("#window-filter")'
    assert axial.screenshot() != before_window
    assert re.search(
        r"Window \d+\.\d\d, level -?\d+\.\d\d \(t1c", page.inner_text("#window-values")
    )
    page.click("#window-reset")
    assert float(ramp.get_attribute("slope") or 0) == pytest.approx(1.0)
    page.select_option("#sequence", "flair")
    assert "/flair/" in (
        page.locator('figure[data-plane="axial"] .stack.current img.base').get_attribute("src")
        or ""
    )
    page.screenshot(path=ARTIFACTS / "04-visit.png", full_page=True)

    # The WebGL2 viewer (NiiVue): loads where WebGL2 exists, says so where it does not.
    page.click("#niivue-panel summary")
    page.wait_for_function(
        "() => ['loaded', 'unavailable', 'failed']"
        ".includes(document.getElementById('niivue-panel').dataset.state)",
        timeout=60_000,
    )
    state = page.get_attribute("#niivue-panel", "data-state")
    (ARTIFACTS / "niivue-state.txt").write_text(f"{state}\n")
    assert state in {"loaded", "unavailable"}, page.inner_text("#niivue-status")
    if state == "loaded":
        page.wait_for_timeout(500)
        page.locator("#niivue-canvas").screenshot(path=ARTIFACTS / "04b-niivue.png")
        _edit_the_segmentation(page, visits[1])

    # Review: confirm the follow-up's response; the badge says so afterwards.
    page.check("input[name=action][value=confirm]")
    page.click("form.review button[type=submit]")
    page.wait_for_selector("#review li")
    assert Review.objects.filter(visit=visits[1], action="confirm").count() == 1

    # The tumour-board report.
    page.goto(f"{live_server.url}/patients/{patient.code}/")
    with page.expect_download() as download_info:
        page.click("#export-pdf")
    pdf = ARTIFACTS / "report.pdf"
    download_info.value.save_as(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, encoding="utf-8", check=True
    ).stdout
    for expected in (patient.label, "Not for diagnostic use", "baseline", "radiotherapy"):
        assert expected in text, expected
    assert re.search(r"[+-]\d+\.\d %", text)  # the follow-up's change from baseline
    assert "No images stored" not in text  # the key slices are in
    # ... and the same place at the baseline, brought onto the latest visit's key slice
    assert "The same place at each key visit" in text
    assert "Not registered to this visit" not in text
    assert "Images not readable" not in text
    subprocess.run(
        ["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "2", str(pdf), str(ARTIFACTS / "report")],
        check=True,
    )
    # The key slices carry the RANO calipers (longest yellow, perpendicular cyan).
    for stale in ARTIFACTS.glob("report-image-*.png"):
        stale.unlink()
    subprocess.run(["pdfimages", "-png", str(pdf), str(ARTIFACTS / "report-image")], check=True)
    pictures = [
        np.asarray(Image.open(p).convert("RGB")) for p in ARTIFACTS.glob("report-image-*.png")
    ]
    r, g, b = (np.concatenate([a[..., c].ravel() for a in pictures]) for c in range(3))
    yellow, cyan = (
        ((r > 230) & (g > 200) & (b < 40)).sum(),
        ((r < 40) & (g > 200) & (b > 230)).sum(),
    )
    assert yellow > 0, "no longest diameter drawn on a key slice"
    assert cyan > 0, "no perpendicular diameter drawn on a key slice"

    # A tablet.
    tablet = browser.new_context(viewport={"width": 820, "height": 1180})
    tablet_page = tablet.new_page()
    _watch(tablet_page, problems)
    tablet_page.context.add_cookies(context.cookies())
    tablet_page.goto(f"{live_server.url}/visits/{visits[1].code}/")
    tablet_page.wait_for_selector("#viewer")
    width = tablet_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 820, width  # nothing runs off the side
    tablet_page.screenshot(path=ARTIFACTS / "05-visit-tablet.png", full_page=True)
    # The timeline on a tablet: no response badge is cut off, the chart's text stays readable.
    tablet_page.goto(f"{live_server.url}/patients/{patient.code}/")
    clipped = tablet_page.evaluate(
        "[...document.querySelectorAll('.badge')].filter(b => {"
        " const r = b.getBoundingClientRect();"
        " const c = (b.closest('.table-wrap') || b.parentElement).getBoundingClientRect();"
        " return b.scrollWidth > b.clientWidth + 1 || r.right > c.right + 1; }).length"
    )
    assert clipped == 0
    smallest = tablet_page.evaluate(
        "Math.min(...[...document.querySelectorAll('svg.growth-chart text')]"
        ".map(t => t.getBoundingClientRect().height).filter(h => h > 0))"
    )
    assert smallest >= 7, smallest  # px on screen: the 820 px chart is not shrunk past reading
    tablet_page.screenshot(path=ARTIFACTS / "05b-timeline-tablet.png", full_page=True)
    tablet.close()

    # The API docs: Swagger UI from vendored files under the Content-Security-Policy.
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() >= 10
    assert not problems, problems
    # The policy is enforced: an injected inline script does not run (the browser says so).
    with contextlib.suppress(Exception):
        page.add_script_tag(content="window.injected = true;")
    assert page.evaluate("window.injected === undefined")
    assert any("Content Security Policy" in p for p in problems), problems
    problems.clear()

    # The upload form: an empty submit names what it needs without sending anything; the
    # server's messages name each field and its file; the progress bar resets; nothing stored.
    page.goto(f"{live_server.url}/patients/{patient.code}/upload/")
    page.fill("#acquired_on", "2024-06-03")
    page.click("#upload-form button[type=submit]")
    page.locator("#upload-errors").wait_for(state="visible")
    assert "no file chosen" in page.locator("#upload-errors").inner_text()
    bad = ARTIFACTS / "not-an-image.nii.gz"
    bad.write_bytes(b"this is not a NIfTI file")
    page.set_input_files("#t1", str(bad))
    page.click("#upload-form button[type=submit]")
    page.wait_for_function(
        "() => document.getElementById('upload-status').textContent.startsWith('Refused')"
    )
    message = page.locator("#upload-errors").inner_text()
    assert "T1 (not-an-image.nii.gz)" in message, message
    assert "FLAIR" in message, message
    assert page.locator("#upload-progress").is_hidden()
    assert patient.visits.count() == 2
    page.screenshot(path=ARTIFACTS / "06-upload-refused.png", full_page=True)
    # The refused upload's 400 is logged by the browser; nothing else may be.
    assert [p for p in problems if "status of 400" not in p] == [], problems
    problems.clear()

    # A good upload: the progress bar, then the timeline with the new visit queued and the
    # page following its progress (no worker here: the task is recorded, not sent).
    from tracker.services import enqueue

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(enqueue, "task_send", lambda task, code: sent.append((code, task)))
    page.reload()
    page.fill("#acquired_on", "2024-06-03")
    for field, suffix in (("t1", "t1n"), ("t1c", "t1c"), ("t2", "t2w"), ("flair", "t2f")):
        page.set_input_files(f"#{field}", str(next(phantom_visits[0].glob(f"*-{suffix}.nii.gz"))))
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/patients/{patient.code}/")
    queued = patient.visits.get(acquired_on="2024-06-03")
    row = page.locator(f'tr[data-visit="{queued.code}"] td.status')
    assert row.inner_text() == "prepare (queued)"
    assert "Analyses are running" in page.inner_text("#progress-note")
    assert sent
    assert sent[0][1] == "tracker.prepare"
    page.wait_for_timeout(3500)  # one poll of the progress endpoint
    page.screenshot(path=ARTIFACTS / "07-uploaded-queued.png", full_page=True)
    assert not problems, problems

    # Another team's patient is not found.
    other = Patient.objects.create(team=teams["team_b"], label="NOT-YOURS")
    response = page.goto(f"{live_server.url}/patients/{other.code}/")
    assert response is not None
    assert response.status == 404
    assert "NOT-YOURS" not in page.content()
    context.close()


def _labels_drawn(page: Any) -> list[int]:
    """Voxels per label (0-3) of the drawing being edited, as the page counts them."""
    return [int(n) for n in (page.get_attribute("#niivue-panel", "data-labels") or "").split(",")]


def _drag(page: Any, start: float, end: float) -> None:
    """A horizontal stroke across the middle of the (single-plane) drawing canvas, in view."""
    page.locator("#niivue-canvas").scroll_into_view_if_needed()
    box = page.locator("#niivue-canvas").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * start, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * end, y, steps=12)
    page.mouse.up()


def _edit_the_segmentation(page: Any, visit: Any) -> None:
    """NiiVue's drawing tools: paint enhancing tumour, undo, redo, erase part of it, save as a
    new version; once measured, the visit page shows the volumes it changed."""
    from tracker.models import AnalysisRun, SegmentationVersion, Stage
    from tracker.services.runs import stage_execute

    page.click("#edit-start")
    page.wait_for_function(
        "() => document.getElementById('niivue-panel').dataset.editing === 'true'"
        " || document.getElementById('niivue-panel').dataset.state === 'failed'",
        timeout=60_000,
    )
    assert page.get_attribute("#niivue-panel", "data-editing") == "true", page.inner_text(
        "#niivue-status"
    )
    before = _labels_drawn(page)
    page.select_option("#edit-pen", "3")
    page.fill("#edit-size", "8")
    page.dispatch_event("#edit-size", "change")
    _drag(page, 0.3, 0.7)
    painted = _labels_drawn(page)
    assert painted[3] > before[3], (before, painted)
    page.click("#edit-undo")
    assert _labels_drawn(page) == before
    page.click("#edit-redo")
    assert _labels_drawn(page) == painted
    page.select_option("#edit-pen", "0")  # erase
    _drag(page, 0.42, 0.58)
    erased = _labels_drawn(page)
    assert erased[3] < painted[3]
    assert erased[3] > before[3]
    page.locator("#niivue-canvas").screenshot(path=ARTIFACTS / "04c-editing.png")
    page.fill("#edit-reason", "browser test: enhancing tumour added along a line")
    page.click("#edit-save")
    page.wait_for_selector("#segmentation details.versions")
    page.wait_for_function(
        "() => document.querySelector('#segmentation details.versions summary')"
        ".textContent.includes('(2)')",
        timeout=30_000,
    )
    correction = SegmentationVersion.objects.get(visit=visit)
    assert (correction.number, correction.source) == (2, "edit")
    for stage in (Stage.MEASURE, Stage.ASSESS):
        assert stage_execute(run_code=str(correction.run.code), stage=stage) == "done", (
            AnalysisRun.objects.get(pk=correction.run.pk).error
        )
    page.reload()
    text = page.inner_text("#segmentation")
    assert "corrected by alice" in text
    row = page.locator(".correction-changes tr", has_text="ET").inner_text().split()
    before_ml, after_ml = float(row[1]), float(row[2])
    assert after_ml > before_ml, row  # the volumes follow the edit
    page.screenshot(path=ARTIFACTS / "04d-corrected.png", full_page=True)
