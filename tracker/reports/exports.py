"""A patient's timeline, as ``GET /api/patients/{id}/timeline/`` returns it, exported for use
outside the service: two CSV tables for spreadsheets (one row per visit, one row per lesion) and
a FHIR R4 ``collection`` Bundle for clinical systems, with a validator for the Bundle.

The functions are pure (a timeline dict in, text or a dict out) so that the same export can be
built from an API response, a stored snapshot or a test, without a database.

Visits that were not analysed (``results`` null) or not assessed (``assessment`` null) give
empty cells in the CSV and no Observations in the Bundle. Labels, notes and track names come
from users, so every CSV text cell that a spreadsheet would read as a formula is escaped.
The Bundle identifies the patient only by the pseudonymous label and the opaque code; its
UUIDs are derived from the visit and run codes, so the same timeline gives the same Bundle.
"""

from __future__ import annotations

import copy
import csv
import io
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

REGIONS = ("ET", "NCR", "ED", "TC", "WT")
# A review as people read it ("confirm" is the API's word for agreeing with the engine).
REVIEW_VERBS = {"confirm": "agreed", "override": "overridden"}

MEASUREMENT_COLUMNS = [
    "patient_label",
    "visit_code",
    "acquired_on",
    "run_code",
    "model_name",
    "model_version",
    *(f"{region}_ml" for region in REGIONS),
    *(f"{region}_{bound}_ml" for region in REGIONS for bound in ("low", "high")),
    "sum_of_products_mm2",
    "lesion_count",
    "measurable_lesions",
    "sequences_used",
    "not_measured",
    "response_category",
    "confirmed",
    "relative_change_percent",
    "reviewed",
    "review_category",
    # added December 2026, at the end so that readers by position keep working
    "segmentation_version",
    "segmentation_corrected_by",
]

LESION_COLUMNS = [
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

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "|")
# Full-width forms a spreadsheet reads as their ASCII twins (＝ ＋ － ＠ ｜).
_FULL_WIDTH = str.maketrans("＝＋－＠｜", "=+-@|")

# FHIR systems and codes -------------------------------------------------------------------------

PATIENT_LABEL_SYSTEM = "urn:tumour-tracker:patient-label"
PATIENT_CODE_SYSTEM = "urn:tumour-tracker:patient-code"
MEASURE_SYSTEM = "urn:tumour-tracker:measure"
RANO_SYSTEM = "urn:tumour-tracker:rano"
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
DISEASE_STATUS_LOINC = "97509-4"
NOT_FOR_DIAGNOSIS = "Not for diagnostic use."

# Namespace of the export's deterministic UUIDs (uuid5 of a name built from the codes).
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:tumour-tracker:fhir-export")

VOLUME_NAMES = {
    "ET": "Enhancing tumour volume",
    "NCR": "Necrotic tumour core volume",
    "ED": "Peritumoural oedema volume",
    "TC": "Tumour core volume",
    "WT": "Whole tumour volume",
}

RANO_DISPLAY = {
    "pre_baseline": "Before baseline",
    "baseline": "Baseline",
    "CR": "Complete response",
    "PR": "Partial response",
    "MR": "Minor response",
    "SD": "Stable disease",
    "PD": "Progressive disease",
    "indeterminate": "Indeterminate",
    "NE": "Not evaluable",
}

_IMAGING_CATEGORY = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "imaging",
                "display": "Imaging",
            }
        ]
    }
]
_RADIOLOGY_CATEGORY = [
    {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                "code": "RAD",
                "display": "Radiology",
            }
        ]
    }
]


# Shared helpers -----------------------------------------------------------------------------------


def _latest_review(visit: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The visit's newest review (the API lists them newest first; not relied on here)."""
    reviews = visit.get("reviews") or []
    if not reviews:
        return None
    latest: Mapping[str, Any] = max(reviews, key=lambda r: r.get("reviewed_at") or "")
    return latest


def _interval(results: Mapping[str, Any], region: str) -> Mapping[str, Any]:
    """The region's ``{volume_ml, expected_ml, low_ml, high_ml}``, or ``{}`` when absent."""
    intervals = results.get("volume_intervals_ml") or {}
    value = intervals.get(region) if isinstance(intervals, Mapping) else None
    return value if isinstance(value, Mapping) else {}


# CSV --------------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    """A CSV cell: numbers stay numbers, booleans are ``true``/``false``, None is empty, and text
    that a spreadsheet would run as a formula gets a leading apostrophe.

    >>> [_cell(x) for x in (-1.5, True, None, "=1+1", "-x", "@SUM", "GBM-1")]
    [-1.5, 'true', '', "'=1+1", "'-x", "'@SUM", 'GBM-1']
    >>> [_cell(x) for x in ("  =1+1", "\uff1d1+1", "|cmd", "a=b")]
    ["'  =1+1", "'\uff1d1+1", "'|cmd", 'a=b']
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    # Leading blanks are skipped by spreadsheets before they look for a formula.
    lead = text.lstrip(" \u00a0\u3000").translate(_FULL_WIDTH)
    return "'" + text if lead.startswith(_FORMULA_STARTS) else text


def _write_csv(columns: list[str], rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: _cell(row.get(column)) for column in columns})
    return out.getvalue()


def measurements_csv(timeline: Mapping[str, Any]) -> str:
    """One row per visit: its current run's volumes (with the probability range where the
    pipeline gave one), sum of products, lesion counts, the response assessment and the newest
    review. A visit without results or assessment keeps its row, with those cells empty."""
    label = timeline["patient"]["label"]
    rows = []
    for visit in timeline.get("visits") or []:
        row: dict[str, Any] = {
            "patient_label": label,
            "visit_code": visit.get("code"),
            "acquired_on": visit.get("acquired_on"),
        }
        results = visit.get("results")
        if results:
            model = results.get("model") or {}
            volumes = results.get("volumes_ml") or {}
            lesions = results.get("lesions") or []
            row |= {
                "run_code": results.get("run"),
                "model_name": model.get("name"),
                "model_version": model.get("version"),
                "segmentation_version": (results.get("segmentation") or {}).get("version"),
                "segmentation_corrected_by": (results.get("segmentation") or {}).get(
                    "corrected_by"
                ),
                "sum_of_products_mm2": results.get("sum_of_products_mm2"),
                "sequences_used": " ".join(results.get("sequences_used") or []),
                "not_measured": "; ".join(
                    f"{name}: {why}" for name, why in (results.get("not_measured") or {}).items()
                ),
            }
            if results.get("sum_of_products_mm2") is not None:  # lesions need the core
                row["lesion_count"] = len(lesions)
                row["measurable_lesions"] = sum(1 for x in lesions if x.get("measurable"))
            for region in REGIONS:
                interval = _interval(results, region)
                row[f"{region}_ml"] = volumes.get(region)
                row[f"{region}_low_ml"] = interval.get("low_ml")
                row[f"{region}_high_ml"] = interval.get("high_ml")
        assessment = visit.get("assessment")
        if assessment:
            row |= {
                "response_category": assessment.get("category"),
                "confirmed": assessment.get("confirmed"),
                # a percentage with one decimal, as the pages show it
                "relative_change_percent": None
                if assessment.get("relative_change") is None
                else round(100 * float(assessment["relative_change"]), 1),
            }
        review = _latest_review(visit)
        if review:
            row |= {
                "reviewed": REVIEW_VERBS.get(review.get("action") or "", review.get("action")),
                "review_category": review.get("category"),
            }
        rows.append(row)
    return _write_csv(MEASUREMENT_COLUMNS, rows)


def lesions_csv(timeline: Mapping[str, Any]) -> str:
    """One row per lesion per analysed visit (visits without results give no rows): the tumour
    core's lesions (``kind`` core), then the T2/FLAIR abnormality's (``t2flair``)."""
    label = timeline["patient"]["label"]
    rows = []
    for visit in timeline.get("visits") or []:
        results = visit.get("results") or {}
        for kind, key in (("core", "lesions"), ("t2flair", "t2_flair_lesions")):
            for lesion in results.get(key) or []:
                rows.append(
                    {
                        "patient_label": label,
                        "visit_code": visit.get("code"),
                        "acquired_on": visit.get("acquired_on"),
                        **{column: lesion.get(column) for column in LESION_COLUMNS[3:]},
                        "kind": kind,
                    }
                )
    return _write_csv(LESION_COLUMNS, rows)


# FHIR -------------------------------------------------------------------------------------------


def _uuid(name: str) -> str:
    return str(uuid.uuid5(UUID_NAMESPACE, name))


def _full_url(base_url: str, resource_type: str, resource_id: str) -> str:
    """``urn:uuid:<id>`` by default; with a server base, ``<base>/<type>/<id>``."""
    if base_url.endswith(":"):
        return f"{base_url}{resource_id}"
    return f"{base_url.rstrip('/')}/{resource_type}/{resource_id}"


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _rano_concept(category: str) -> dict[str, Any]:
    display = RANO_DISPLAY.get(category, category)
    return {
        "coding": [{"system": RANO_SYSTEM, "code": category, "display": display}],
        "text": display,
    }


def _review_note(review: Mapping[str, Any]) -> str:
    who = review.get("reviewer") or "unknown reviewer"
    when = review.get("reviewed_at") or "unknown time"
    if review.get("action") == "override":
        category = review.get("category") or ""
        display = RANO_DISPLAY.get(category, category)
        return f"Overridden by {who} at {when} to {category} ({display}): {review.get('reason')}"
    return f"Agreed with the assessment: {who} at {when}."


def _measurement_observations(
    visit: Mapping[str, Any], results: Mapping[str, Any], patient_ref: dict[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """(uuid, Observation) for each region volume present and for the sum of products."""
    run = str(results.get("run"))
    model = results.get("model") or {}
    method = {
        "text": (
            f"Automated segmentation: {model.get('name')} {model.get('version')} "
            f"(weights sha256 {model.get('weights_sha256')}), analysis run {run}"
        )
    }
    correction = results.get("segmentation") or {}
    if correction.get("corrected_by"):
        method["text"] += (
            f"; corrected by {correction['corrected_by']} on "
            f"{str(correction.get('corrected_at'))[:10]} (segmentation version "
            f"{correction.get('version')}: {correction.get('reason')})"
        )
    common = {
        "status": "final",
        "category": _IMAGING_CATEGORY,
        "subject": patient_ref,
        "effectiveDateTime": visit["acquired_on"],
        "method": method,
    }
    observations = []
    volumes = results.get("volumes_ml") or {}
    for region in REGIONS:
        if volumes.get(region) is None:
            continue
        name = VOLUME_NAMES[region]
        resource_id = _uuid(f"observation:{visit['code']}:{run}:volume-{region}")
        observation = {
            "resourceType": "Observation",
            "id": resource_id,
            **common,
            "code": {
                "coding": [{"system": MEASURE_SYSTEM, "code": f"volume-{region}", "display": name}],
                "text": name,
            },
            "valueQuantity": _quantity(float(volumes[region]), "mL"),
        }
        interval = _interval(results, region)
        if interval.get("low_ml") is not None and interval.get("high_ml") is not None:
            observation["note"] = [
                {
                    "text": (
                        f"probability range {interval['low_ml']}-{interval['high_ml']} mL "
                        "(voxels with region probability >= 0.75 and >= 0.25; not a "
                        "confidence interval)"
                    )
                }
            ]
        observations.append((resource_id, observation))
    if results.get("sum_of_products_mm2") is not None:
        name = "Sum of products of perpendicular diameters"
        resource_id = _uuid(f"observation:{visit['code']}:{run}:sum-of-products")
        observations.append(
            (
                resource_id,
                {
                    "resourceType": "Observation",
                    "id": resource_id,
                    **common,
                    "code": {
                        "coding": [
                            {"system": MEASURE_SYSTEM, "code": "sum-of-products", "display": name}
                        ],
                        "text": name,
                    },
                    "valueQuantity": _quantity(float(results["sum_of_products_mm2"]), "mm2"),
                },
            )
        )
    return observations


def _disease_status(
    visit: Mapping[str, Any],
    assessment: Mapping[str, Any],
    patient_ref: dict[str, str],
    derived_from: list[dict[str, str]],
    acquired_on_by_code: Mapping[str, str],
) -> tuple[str, dict[str, Any]]:
    """(uuid, Observation) of the RANO category, preliminary while awaiting confirmation."""
    resource_id = _uuid(f"disease-status:{visit['code']}:{assessment.get('assessed_at')}")
    notes = [{"text": str(reason)} for reason in assessment.get("reasons") or []]
    change = assessment.get("relative_change")
    if change is not None:
        notes.append({"text": f"relative change {float(change):+.1%}"})
    reference = assessment.get("reference_visit")
    if reference:
        when = acquired_on_by_code.get(reference, reference)
        notes.append({"text": f"compared with the visit of {when}"})
    review = _latest_review(visit)
    if review:
        notes.append({"text": _review_note(review)})
    # A clinician's override is the answer (as on the pages); the automated category is noted.
    category, status = str(assessment.get("category")), _status(assessment)
    if _overridden(review):
        assert review is not None
        notes.insert(0, {"text": f"automated assessment: {_conclusion(assessment, notice=False)}"})
        category, status = str(review["category"]), "amended"
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": status,
        "category": _IMAGING_CATEGORY,
        "code": {
            "coding": [
                {
                    "system": LOINC,
                    "code": DISEASE_STATUS_LOINC,
                    "display": "Cancer disease status",
                }
            ],
            "text": "Cancer disease status",
        },
        "subject": patient_ref,
        "effectiveDateTime": visit["acquired_on"],
        "method": {"text": f"RANO 2.0 ({assessment.get('criteria')})"},
        "valueCodeableConcept": _rano_concept(category),
    }
    if assessment.get("assessed_at"):
        observation["issued"] = assessment["assessed_at"]
    if notes:
        observation["note"] = notes
    if derived_from:
        observation["derivedFrom"] = derived_from
    return resource_id, observation


def _overridden(review: Mapping[str, Any] | None) -> bool:
    return bool(review and review.get("action") == "override" and review.get("category"))


def _status(assessment: Mapping[str, Any]) -> str:
    return "preliminary" if assessment.get("confirmed") is False else "final"


def _conclusion(assessment: Mapping[str, Any] | None, *, notice: bool = True) -> str:
    if assessment is None:
        return f"Volumes measured; response not assessed. {NOT_FOR_DIAGNOSIS}"
    category = str(assessment.get("category"))
    confirmed = assessment.get("confirmed")
    status = (
        "confirmed" if confirmed is True else "awaiting confirmation" if confirmed is False else ""
    )
    text = f"{category} ({RANO_DISPLAY.get(category, category)})"
    if status:
        text += f", {status}"
    reasons = "; ".join(str(reason) for reason in assessment.get("reasons") or [])
    if reasons:
        text += f". Reasons: {reasons}"
    return f"{text}. {NOT_FOR_DIAGNOSIS}" if notice else text


def fhir_bundle(
    timeline: Mapping[str, Any], *, generated_at: str, base_url: str = "urn:uuid:"
) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle of the timeline.

    Entries: one Patient (identifiers only: the pseudonymous label and the opaque code, never a
    name); per analysed visit one Observation per region volume (mL) and one for the sum of
    products (mm2); per assessed visit one disease-status Observation (LOINC 97509-4) whose value
    is the RANO category, with the reasons and the newest review as notes; and per visit with
    either, one DiagnosticReport whose ``result`` lists those Observations. A status is
    ``preliminary`` while the assessment awaits confirmation (``confirmed`` false), and for a
    report without an assessment; ``final`` otherwise.

    ``generated_at`` is the Bundle's timestamp (a FHIR instant, e.g. ``2025-01-01T00:00:00Z``).
    """
    patient = timeline["patient"]
    patient_id = _uuid(f"patient:{patient['code']}")
    patient_url = _full_url(base_url, "Patient", patient_id)
    patient_ref = {"reference": patient_url}
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "id": patient_id,
                "identifier": [
                    {"system": PATIENT_LABEL_SYSTEM, "value": str(patient["label"])},
                    {"system": PATIENT_CODE_SYSTEM, "value": str(patient["code"])},
                ],
            },
        }
    ]
    visits = timeline.get("visits") or []
    acquired_on_by_code = {str(v.get("code")): str(v.get("acquired_on")) for v in visits}

    def add(resource_id: str, resource: dict[str, Any]) -> dict[str, str]:
        url = _full_url(base_url, resource["resourceType"], resource_id)
        entries.append({"fullUrl": url, "resource": resource})
        return {"reference": url}

    for visit in visits:
        results = visit.get("results")
        assessment = visit.get("assessment")
        if not results and not assessment:
            continue
        measured = (
            [add(*pair) for pair in _measurement_observations(visit, results, patient_ref)]
            if results
            else []
        )
        report_results = list(measured)
        if assessment:
            report_results.append(
                add(*_disease_status(visit, assessment, patient_ref, measured, acquired_on_by_code))
            )
        report_id = _uuid(
            f"report:{visit['code']}:{(results or {}).get('run')}:"
            f"{(assessment or {}).get('assessed_at')}"
        )
        review = _latest_review(visit)
        status = _status(assessment) if assessment else "preliminary"
        conclusion = _conclusion(assessment)
        category = str((assessment or {}).get("category"))
        if assessment and _overridden(review):
            assert review is not None
            category, status = str(review["category"]), "amended"
            conclusion = (
                f"{category} ({RANO_DISPLAY.get(category, category)}) by a clinician's review: "
                f"{review.get('reason')}. Automated assessment: {conclusion}"
            )
        report: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "id": report_id,
            "status": status,
            "category": _RADIOLOGY_CATEGORY,
            "code": {"text": "Brain tumour MRI volumetric response assessment"},
            "subject": patient_ref,
            "effectiveDateTime": visit["acquired_on"],
            "result": report_results,
            "conclusion": conclusion,
        }
        if assessment:
            report["conclusionCode"] = [_rano_concept(category)]
            if assessment.get("assessed_at"):
                report["issued"] = assessment["assessed_at"]
        add(report_id, report)

    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": generated_at,
        # Shared pieces (the patient reference, categories) copied so that no two resources alias.
        "entry": [copy.deepcopy(entry) for entry in entries],
    }


def _references(value: Any) -> Iterable[str]:
    """Every ``reference`` string inside a resource (Reference elements at any depth)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def validate_fhir_bundle(bundle: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``bundle`` is a valid FHIR R4 Bundle whose fullUrls are unique and
    whose every reference is one of its fullUrls. Two model libraries check it: ``fhirclient``'s
    models, generated from FHIR 4.0.1 (R4 itself: required elements, types, unknown elements),
    and ``fhir.resources``' R4B models (R4's technical correction; pydantic, stricter on value
    formats such as dates and codes)."""
    from fhir.resources.R4B.bundle import Bundle  # noqa: PLC0415  (a large package: load lazily)
    from fhirclient.models.bundle import Bundle as R4Bundle  # noqa: PLC0415
    from fhirclient.models.fhirabstractbase import FHIRValidationError  # noqa: PLC0415
    from pydantic import ValidationError  # noqa: PLC0415

    try:
        R4Bundle(dict(bundle), strict=True)
    except FHIRValidationError as error:
        raise ValueError(f"invalid FHIR R4 Bundle: {error}") from error
    try:
        Bundle.model_validate(bundle)
    except ValidationError as error:
        raise ValueError(f"invalid FHIR Bundle: {error}") from error

    entries = bundle.get("entry") or []
    urls = [entry.get("fullUrl") for entry in entries]
    if any(url is None for url in urls):
        raise ValueError("invalid FHIR Bundle: an entry has no fullUrl")
    duplicates = sorted(url for url, count in Counter(urls).items() if count > 1)
    if duplicates:
        raise ValueError(f"invalid FHIR Bundle: duplicate fullUrl {', '.join(duplicates)}")
    known = set(urls)
    for entry in entries:
        for reference in _references(entry.get("resource")):
            if reference not in known:
                raise ValueError(
                    f"invalid FHIR Bundle: {entry['fullUrl']} refers to {reference}, "
                    "which is not in the bundle"
                )
