"""CSV and FHIR exports of a patient timeline, built from timeline dicts shaped like the API's
``GET /api/patients/{id}/timeline/`` response (no database)."""

from __future__ import annotations

import copy
import csv
import io
from typing import Any

import pytest

from tracker.reports.exports import (
    MEASUREMENT_COLUMNS,
    fhir_bundle,
    lesions_csv,
    measurements_csv,
    validate_fhir_bundle,
)

GENERATED_AT = "2025-03-01T12:00:00Z"
PATIENT_CODE = "a602ab52-d78b-4624-a5bf-c667e0abc53f"
VOLUMES = {"ET": 3.0, "NCR": 1.0, "ED": 10.0, "TC": 4.0, "WT": 14.0}


def lesion(number: int, *, product_mm2: float = 200.0, measurable: bool = True) -> dict[str, Any]:
    return {
        "number": number,
        "track": f"L{number}",
        "volume_ml": 2.0,
        "et_volume_ml": 1.0,
        "longest_mm": 20.0,
        "perpendicular_mm": product_mm2 / 20.0,
        "product_mm2": product_mm2,
        "measurable": measurable,
        "target": measurable,
        "centroid_mm": [0.0, 0.0, 0.0],
    }


def results(
    run: str,
    *,
    scale: float = 1.0,
    lesions: list[dict[str, Any]] | None = None,
    intervals: dict[str, Any] | None = None,
) -> dict[str, Any]:
    lesions = [lesion(1), lesion(2)] if lesions is None else lesions
    return {
        "run": run,
        "model": {"name": "tumour-segmenter", "version": "1.2", "weights_sha256": "ab" * 32},
        "volumes_ml": {region: value * scale for region, value in VOLUMES.items()},
        "volume_intervals_ml": intervals or {},
        "sum_of_products_mm2": sum(x["product_mm2"] for x in lesions if x["measurable"]),
        "lesions": lesions,
        "registrations": [],
    }


def assessment(
    category: str, *, confirmed: bool | None = None, change: float | None = None
) -> dict[str, Any]:
    return {
        "category": category,
        "confirmed": confirmed,
        "reference_visit": None,
        "relative_change": change,
        "reasons": [f"{category} by the sum of products"],
        "is_progression_visit": category == "PD",
        "criteria": "rano2-2d",
        "model_versions": ["tumour-segmenter 1.2"],
        "assessed_at": "2025-02-01T10:00:00Z",
    }


def review(action: str, at: str, *, category: str = "", reason: str = "") -> dict[str, Any]:
    return {
        "action": action,
        "category": category,
        "reason": reason,
        "reviewer": "alice",
        "reviewed_at": at,
    }


def visit(
    code: str,
    acquired_on: str,
    *,
    results: dict[str, Any] | None = None,
    assessment: dict[str, Any] | None = None,
    reviews: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "code": code,
        "patient": PATIENT_CODE,
        "acquired_on": acquired_on,
        "clinical_status": "stable",
        "steroid_dose_mg": "0.00",
        "non_target": "absent",
        "notes": "",
        "analysis": None,
        "results": results,
        "assessment": assessment,
        "reviews": reviews or [],
    }


WT_INTERVAL = {
    "WT": {"volume_ml": 14.0, "expected_ml": 14.2, "low_ml": 13.1, "high_ml": 15.4},
    "ET": {"volume_ml": 3.0, "expected_ml": 3.1, "low_ml": 2.7, "high_ml": 3.5},
}


def make_timeline(label: str = "GBM-001") -> dict[str, Any]:
    """Four visits: baseline (with intervals, confirmed), SD (one lesion not measurable), PD
    awaiting confirmation (overridden by a reviewer), and one uploaded but not yet analysed."""
    return {
        "patient": {
            "code": PATIENT_CODE,
            "label": label,
            "team": "Neuro-A",
            "team_code": "b646edd7-c51f-40a0-85ad-1ad44a1b5a19",
            "diagnosis": "glioblastoma",
            "who_grade": 4,
            "idh_status": "wildtype",
            "presentation": "ce",
            "setting": "newly_diagnosed",
            "criteria": "rano2-2d",
            "confirm_progression": True,
            "created_at": "2025-01-01T08:00:00Z",
        },
        "treatments": [
            {
                "code": "a160da13-7081-4fe3-84ea-e717b7264bff",
                "kind": "radiotherapy",
                "started_on": "2023-10-23",
                "ended_on": "2023-12-04",
                "dose_mg": None,
                "notes": "",
            }
        ],
        "visits": [
            visit(
                "v1",
                "2024-01-01",
                results=results("r1", intervals=WT_INTERVAL),
                assessment=assessment("baseline"),
                reviews=[review("confirm", "2025-02-02T09:00:00Z")],
            ),
            visit(
                "v2",
                "2024-03-01",
                results=results("r2", lesions=[lesion(1), lesion(2, measurable=False)]),
                assessment=assessment("SD", change=-0.25),
            ),
            visit(
                "v3",
                "2024-05-01",
                results=results("r3", scale=2.0, lesions=[lesion(1, product_mm2=500.0)]),
                assessment=assessment("PD", confirmed=False, change=1.5),
                # Listed oldest first on purpose: the newest (the override) is the one that counts.
                reviews=[
                    review("confirm", "2025-02-02T09:00:00Z"),
                    review(
                        "override",
                        "2025-02-03T09:00:00Z",
                        category="SD",
                        reason="pseudoprogression",
                    ),
                ],
            ),
            visit("v4", "2024-07-01"),
        ],
        "progression_visit": None,
    }


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# Measurements CSV -------------------------------------------------------------------------------


def test_it_writes_a_header_and_one_row_per_visit() -> None:
    text = measurements_csv(make_timeline())

    header = text.split("\n")[0]
    assert header.split(",")[:11] == [
        "patient_label",
        "visit_code",
        "acquired_on",
        "run_code",
        "model_name",
        "model_version",
        "ET_ml",
        "NCR_ml",
        "ED_ml",
        "TC_ml",
        "WT_ml",
    ]
    assert header.split(",") == MEASUREMENT_COLUMNS
    for column in (
        "WT_low_ml",
        "WT_high_ml",
        "ET_low_ml",
        "review_category",
        "relative_change_percent",
    ):
        assert column in MEASUREMENT_COLUMNS
    assert "\r" not in text
    assert text.endswith("\n")
    assert text.count("\n") == 5  # the header and four visits
    rows = read_csv(text)
    assert [row["visit_code"] for row in rows] == ["v1", "v2", "v3", "v4"]
    assert {row["patient_label"] for row in rows} == {"GBM-001"}


def test_it_writes_the_numbers_of_each_visit() -> None:
    v1, v2, v3, _ = read_csv(measurements_csv(make_timeline()))

    assert (v1["run_code"], v1["model_name"], v1["model_version"]) == (
        "r1",
        "tumour-segmenter",
        "1.2",
    )
    assert [float(v1[f"{r}_ml"]) for r in ("ET", "NCR", "ED", "TC", "WT")] == [
        3.0,
        1.0,
        10.0,
        4.0,
        14.0,
    ]
    assert [float(v3[f"{r}_ml"]) for r in ("ET", "WT")] == [6.0, 28.0]
    assert (float(v1["WT_low_ml"]), float(v1["WT_high_ml"])) == (13.1, 15.4)
    assert (float(v1["ET_low_ml"]), float(v1["ET_high_ml"])) == (2.7, 3.5)
    assert v1["NCR_low_ml"] == v1["TC_high_ml"] == v2["WT_low_ml"] == ""
    assert (float(v1["sum_of_products_mm2"]), float(v3["sum_of_products_mm2"])) == (400.0, 500.0)
    assert (v1["lesion_count"], v1["measurable_lesions"]) == ("2", "2")
    assert (v2["lesion_count"], v2["measurable_lesions"]) == ("2", "1")
    assert (v1["response_category"], v2["response_category"], v3["response_category"]) == (
        "baseline",
        "SD",
        "PD",
    )
    assert (v1["confirmed"], v3["confirmed"]) == ("", "false")
    assert (v1["relative_change_percent"], float(v2["relative_change_percent"])) == ("", -25.0)
    assert (v1["reviewed"], v1["review_category"]) == ("agreed", "")
    assert (v2["reviewed"], v2["review_category"]) == ("", "")
    assert (v3["reviewed"], v3["review_category"]) == ("overridden", "SD")


def test_a_visit_without_results_or_assessment_gives_empty_cells() -> None:
    *_, v4 = read_csv(measurements_csv(make_timeline()))

    assert (v4["visit_code"], v4["acquired_on"]) == ("v4", "2024-07-01")
    assert all(v4[column] == "" for column in MEASUREMENT_COLUMNS[3:]), v4


def test_it_escapes_cells_a_spreadsheet_would_run_as_formulas() -> None:
    timeline = make_timeline(label='=HYPERLINK("http://evil.example","x")')
    timeline["visits"][0]["results"]["lesions"][0]["track"] = "+cmd|' /C calc'!A0"
    timeline["visits"][0]["results"]["lesions"][1]["track"] = "@SUM(1)"
    timeline["visits"][1]["results"]["lesions"][0]["track"] = "-2+3"
    timeline["visits"][1]["results"]["lesions"][1]["track"] = "\t=1"

    measurements = read_csv(measurements_csv(timeline))
    lesions = read_csv(lesions_csv(timeline))

    assert {row["patient_label"] for row in measurements} == {
        """'=HYPERLINK("http://evil.example","x")"""
    }
    assert [row["track"] for row in lesions[:4]] == [
        "'+cmd|' /C calc'!A0",
        "'@SUM(1)",
        "'-2+3",
        "'\t=1",
    ]
    assert measurements[1]["relative_change_percent"] == "-25.0"  # a negative number stays a number


# Lesions CSV ------------------------------------------------------------------------------------


def test_it_writes_one_row_per_lesion_of_each_analysed_visit() -> None:
    rows = read_csv(lesions_csv(make_timeline()))

    assert [(row["visit_code"], row["track"]) for row in rows] == [
        ("v1", "L1"),
        ("v1", "L2"),
        ("v2", "L1"),
        ("v2", "L2"),
        ("v3", "L1"),
    ]
    assert list(rows[0]) == [
        "patient_label",
        "visit_code",
        "acquired_on",
        "kind",
        "track",
        "number",
        "volume_ml",
        "et_volume_ml",
        "longest_mm",
        "perpendicular_mm",
        "product_mm2",
        "measurable",
        "target",
    ]
    v3 = rows[-1]
    assert (v3["acquired_on"], v3["number"], float(v3["product_mm2"])) == ("2024-05-01", "1", 500.0)
    assert (float(v3["longest_mm"]), float(v3["perpendicular_mm"])) == (20.0, 25.0)
    assert (rows[3]["measurable"], rows[3]["target"]) == ("false", "false")
    assert (rows[0]["measurable"], rows[0]["target"]) == ("true", "true")


def test_a_timeline_without_analysed_visits_gives_only_headers() -> None:
    timeline = make_timeline()
    timeline["visits"] = [visit("v9", "2024-01-01")]

    assert lesions_csv(timeline).count("\n") == 1
    assert len(read_csv(measurements_csv(timeline))) == 1


# FHIR bundle ------------------------------------------------------------------------------------


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def is_disease_status(observation: dict[str, Any]) -> bool:
    return any(c.get("code") == "97509-4" for c in observation["code"].get("coding", []))


def all_references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for item in value.values() for r in all_references(item)]
    if isinstance(value, list):
        return [r for item in value for r in all_references(item)]
    return []


@pytest.fixture
def bundle() -> dict[str, Any]:
    return fhir_bundle(make_timeline(), generated_at=GENERATED_AT)


def test_the_bundle_is_a_valid_collection(bundle: dict[str, Any]) -> None:
    validate_fhir_bundle(bundle)

    assert (bundle["resourceType"], bundle["type"], bundle["timestamp"]) == (
        "Bundle",
        "collection",
        GENERATED_AT,
    )


def test_the_same_timeline_gives_the_same_bundle(bundle: dict[str, Any]) -> None:
    again = fhir_bundle(make_timeline(), generated_at="2030-01-01T00:00:00Z")
    other = make_timeline()
    other["visits"][0]["results"]["run"] = "r1-rerun"

    assert again["entry"] == bundle["entry"]
    changed = fhir_bundle(other, generated_at=GENERATED_AT)
    assert [e["fullUrl"] for e in changed["entry"]] != [e["fullUrl"] for e in bundle["entry"]]


def test_every_entry_has_a_urn_uuid_and_every_reference_resolves(bundle: dict[str, Any]) -> None:
    urls = [entry["fullUrl"] for entry in bundle["entry"]]
    references = all_references(bundle)

    assert all(url.startswith("urn:uuid:") and len(url) == len("urn:uuid:") + 36 for url in urls)
    assert len(set(urls)) == len(urls)
    assert len(references) > 20
    assert set(references) <= set(urls)


def test_the_patient_is_identified_by_the_label_only(bundle: dict[str, Any]) -> None:
    (patient,) = resources(bundle, "Patient")

    assert set(patient) == {"resourceType", "id", "identifier"}
    assert "name" not in patient
    assert patient["identifier"] == [
        {"system": "urn:tumour-tracker:patient-label", "value": "GBM-001"},
        {"system": "urn:tumour-tracker:patient-code", "value": PATIENT_CODE},
    ]
    patient_url = bundle["entry"][0]["fullUrl"]
    for kind in ("Observation", "DiagnosticReport"):
        assert {r["subject"]["reference"] for r in resources(bundle, kind)} == {patient_url}


def test_one_volume_observation_per_region_per_analysed_visit(bundle: dict[str, Any]) -> None:
    volumes = [
        o
        for o in resources(bundle, "Observation")
        if o["code"]["coding"][0]["code"].startswith("volume-")
    ]

    by_visit: dict[str, dict[str, dict[str, Any]]] = {}
    for o in volumes:
        region = o["code"]["coding"][0]["code"].removeprefix("volume-")
        by_visit.setdefault(o["effectiveDateTime"], {})[region] = o
    assert sorted(by_visit) == ["2024-01-01", "2024-03-01", "2024-05-01"]
    assert len(volumes) == 15
    for observations in by_visit.values():
        assert sorted(observations) == ["ED", "ET", "NCR", "TC", "WT"]
    wt = by_visit["2024-05-01"]["WT"]
    assert wt["valueQuantity"] == {
        "value": 28.0,
        "unit": "mL",
        "system": "http://unitsofmeasure.org",
        "code": "mL",
    }
    assert wt["status"] == "final"
    assert wt["code"]["text"] == "Whole tumour volume"
    assert by_visit["2024-01-01"]["ET"]["code"]["text"] == "Enhancing tumour volume"
    assert wt["code"]["coding"][0]["system"] == "urn:tumour-tracker:measure"
    assert "tumour-segmenter 1.2" in wt["method"]["text"]


def test_a_probability_range_becomes_a_note(bundle: dict[str, Any]) -> None:
    first = {
        o["code"]["coding"][0]["code"]: o
        for o in resources(bundle, "Observation")
        if o["effectiveDateTime"] == "2024-01-01"
    }

    assert "probability range 13.1-15.4 mL" in first["volume-WT"]["note"][0]["text"]
    assert "probability range 2.7-3.5 mL" in first["volume-ET"]["note"][0]["text"]
    assert "note" not in first["volume-NCR"]


def test_the_sum_of_products_is_an_observation_in_mm2(bundle: dict[str, Any]) -> None:
    sums = [
        o
        for o in resources(bundle, "Observation")
        if o["code"]["coding"][0]["code"] == "sum-of-products"
    ]

    assert [(o["effectiveDateTime"], o["valueQuantity"]["value"]) for o in sums] == [
        ("2024-01-01", 400.0),
        ("2024-03-01", 200.0),
        ("2024-05-01", 500.0),
    ]
    assert {(o["valueQuantity"]["unit"], o["valueQuantity"]["code"]) for o in sums} == {
        ("mm2", "mm2")
    }


def test_each_assessed_visit_has_a_disease_status_with_its_category(
    bundle: dict[str, Any],
) -> None:
    statuses = [o for o in resources(bundle, "Observation") if is_disease_status(o)]

    assert [o["effectiveDateTime"] for o in statuses] == ["2024-01-01", "2024-03-01", "2024-05-01"]
    assert statuses[0]["code"]["coding"] == [
        {"system": "http://loinc.org", "code": "97509-4", "display": "Cancer disease status"}
    ]
    codings = [o["valueCodeableConcept"]["coding"][0] for o in statuses]
    # The third visit's PD was overridden to SD by a clinician: the override is the answer.
    assert [c["code"] for c in codings] == ["baseline", "SD", "SD"]
    assert codings[2] == {
        "system": "urn:tumour-tracker:rano",
        "code": "SD",
        "display": "Stable disease",
    }
    notes = [n["text"] for n in statuses[2]["note"]]
    assert notes[0].startswith("automated assessment: PD (Progressive disease), awaiting")
    assert "PD by the sum of products" in notes
    assert "relative change +150.0%" in notes
    assert any(n.startswith("Overridden by alice") and "pseudoprogression" in n for n in notes)
    first_notes = [x["text"] for x in statuses[0]["note"]]
    assert any(n.startswith("Agreed with the assessment: alice") for n in first_notes)


def test_an_unconfirmed_assessment_is_preliminary(bundle: dict[str, Any]) -> None:
    statuses = [o for o in resources(bundle, "Observation") if is_disease_status(o)]
    reports = resources(bundle, "DiagnosticReport")

    # confirmed None (not applicable), None, then False but overridden by a clinician:
    assert [o["status"] for o in statuses] == ["final", "final", "amended"]
    assert [r["status"] for r in reports] == ["final", "final", "amended"]

    timeline = make_timeline()
    timeline["visits"][2]["reviews"] = []
    unreviewed = fhir_bundle(timeline, generated_at=GENERATED_AT)
    assert [r["status"] for r in resources(unreviewed, "DiagnosticReport")][2] == "preliminary"
    timeline["visits"][2]["assessment"]["confirmed"] = True
    confirmed = fhir_bundle(timeline, generated_at=GENERATED_AT)
    assert [r["status"] for r in resources(confirmed, "DiagnosticReport")][2] == "final"
    assert (
        "PD (Progressive disease), confirmed."
        in resources(confirmed, "DiagnosticReport")[2]["conclusion"]
    )


def test_one_report_per_visit_referencing_its_observations(bundle: dict[str, Any]) -> None:
    reports = resources(bundle, "DiagnosticReport")
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}

    assert [r["effectiveDateTime"] for r in reports] == ["2024-01-01", "2024-03-01", "2024-05-01"]
    for report in reports:
        results = [by_url[ref["reference"]] for ref in report["result"]]
        assert len(results) == 7  # five volumes, the sum of products, the disease status
        assert {o["effectiveDateTime"] for o in results} == {report["effectiveDateTime"]}
        assert report["code"]["text"] == "Brain tumour MRI volumetric response assessment"
    conclusion = reports[2]["conclusion"]
    assert conclusion.startswith("SD (Stable disease) by a clinician's review: ")
    assert "Automated assessment: PD (Progressive disease), awaiting confirmation." in conclusion
    assert "PD by the sum of products" in conclusion
    assert conclusion.endswith("Not for diagnostic use.")
    assert reports[2]["conclusionCode"][0]["coding"][0]["code"] == "SD"  # the override


def test_unanalysed_or_unassessed_visits_give_no_observations() -> None:
    timeline = make_timeline()
    timeline["visits"][1]["assessment"] = None  # analysed, not assessed
    timeline["visits"].append(
        visit("v5", "2024-09-01", assessment=assessment("indeterminate"))  # assessed only
    )

    bundle = fhir_bundle(timeline, generated_at=GENERATED_AT)

    validate_fhir_bundle(bundle)
    observations = resources(bundle, "Observation")
    dates = [o["effectiveDateTime"] for o in observations]
    assert "2024-07-01" not in dates  # v4: neither
    assert dates.count("2024-03-01") == 6  # volumes and sum, no disease status
    assert [(o["effectiveDateTime"], is_disease_status(o)) for o in observations][-1] == (
        "2024-09-01",
        True,
    )
    reports = {r["effectiveDateTime"]: r for r in resources(bundle, "DiagnosticReport")}
    assert sorted(reports) == ["2024-01-01", "2024-03-01", "2024-05-01", "2024-09-01"]
    assert reports["2024-03-01"]["status"] == "preliminary"
    assert "not assessed" in reports["2024-03-01"]["conclusion"]
    assert len(reports["2024-09-01"]["result"]) == 1


def test_a_server_base_url_gives_restful_full_urls() -> None:
    bundle = fhir_bundle(
        make_timeline(), generated_at=GENERATED_AT, base_url="https://fhir.example.org/r4/"
    )

    validate_fhir_bundle(bundle)
    first = bundle["entry"][0]
    assert first["fullUrl"] == f"https://fhir.example.org/r4/Patient/{first['resource']['id']}"


# Validation -------------------------------------------------------------------------------------


def test_an_observation_without_status_fails_validation(bundle: dict[str, Any]) -> None:
    broken = copy.deepcopy(bundle)
    del broken["entry"][1]["resource"]["status"]

    with pytest.raises(
        ValueError, match=r"R4 Bundle(?s:.*)entry\.1(?s:.*)\"status\"(?s:.*)missing"
    ):
        validate_fhir_bundle(broken)


def test_an_unknown_field_or_a_bad_date_fails_validation(bundle: dict[str, Any]) -> None:
    named = copy.deepcopy(bundle)
    named["entry"][0]["resource"]["nickname"] = "Bob"
    bad_date = copy.deepcopy(bundle)
    bad_date["entry"][1]["resource"]["effectiveDateTime"] = "2024-13-01"

    with pytest.raises(ValueError, match="nickname"):
        validate_fhir_bundle(named)
    with pytest.raises(ValueError, match="effectiveDateTime"):
        validate_fhir_bundle(bad_date)


def test_a_dangling_reference_fails_validation(bundle: dict[str, Any]) -> None:
    broken = copy.deepcopy(bundle)
    patient_url = broken["entry"][0]["fullUrl"]
    del broken["entry"][0]
    duplicated = copy.deepcopy(bundle)
    duplicated["entry"][2]["fullUrl"] = duplicated["entry"][1]["fullUrl"]

    with pytest.raises(ValueError, match=f"refers to {patient_url}"):
        validate_fhir_bundle(broken)
    with pytest.raises(ValueError, match="duplicate fullUrl"):
        validate_fhir_bundle(duplicated)


def test_resources_share_no_objects(bundle: dict[str, Any]) -> None:
    first, second = resources(bundle, "Observation")[:2]

    first["subject"]["reference"] = "changed"
    first["category"][0]["coding"][0]["code"] = "changed"

    assert second["subject"]["reference"] == bundle["entry"][0]["fullUrl"]
    assert second["category"][0]["coding"][0]["code"] == "imaging"


def test_t2_flair_lesions_and_not_evaluable_visits_are_exported() -> None:
    timeline = make_timeline()
    first = timeline["visits"][0]["results"]
    first["t2_flair_lesions"] = [{**first["lesions"][0], "track": "N1", "longest_mm": 41.0}]
    timeline["visits"].append(visit("v5", "2024-09-01", assessment=assessment("NE")))

    lesions = read_csv(lesions_csv(timeline))
    measurements = read_csv(measurements_csv(timeline))
    bundle = fhir_bundle(timeline, generated_at=GENERATED_AT)

    assert [(r["visit_code"], r["kind"], r["track"]) for r in lesions[:3]] == [
        ("v1", "core", "L1"),
        ("v1", "core", "L2"),
        ("v1", "t2flair", "N1"),
    ]
    assert measurements[-1]["response_category"] == "NE"
    validate_fhir_bundle(bundle)
    status = [o for o in resources(bundle, "Observation") if is_disease_status(o)][-1]
    assert status["valueCodeableConcept"]["coding"][0]["display"] == "Not evaluable"


def test_formulas_behind_blanks_full_width_signs_or_pipes_are_escaped() -> None:
    timeline = make_timeline()
    tracks = ["  =1+1", "\uff1dHYPERLINK(1)", "|calc", "\u3000+1"]
    for lesion, track in zip(timeline["visits"][0]["results"]["lesions"], tracks[:2], strict=True):
        lesion["track"] = track
    for lesion, track in zip(timeline["visits"][1]["results"]["lesions"], tracks[2:], strict=True):
        lesion["track"] = track
    rows = read_csv(lesions_csv(timeline))
    assert [row["track"] for row in rows[:4]] == ["'" + t for t in tracks]
