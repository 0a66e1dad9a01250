"""The patient exports, one builder for the pages and the API: the tumour-board PDF, the
measurements and lesions CSV, the timeline JSON and the FHIR R4 bundle. Each download is an
audit event, whoever asks and however."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.http import HttpResponse
from django.utils import timezone

from tracker.models import Patient
from tracker.reports import exports
from tracker.reports.pdf import progression_report
from tracker.services.visits import audit
from tracker.timeline import timeline_dict

EXPORTS = ("report.pdf", "measurements.csv", "lesions.csv", "timeline.json", "fhir.json")


def _export_name(patient: Patient, suffix: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in patient.label)[:60]
    return f"{safe}-{dt.date.today().isoformat()}.{suffix}"


def _download(body: bytes | str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def export_response(patient: Patient, kind: str, *, by: Any) -> HttpResponse:
    """The download of one export (``kind`` in ``EXPORTS``), audited."""
    timeline = timeline_dict(patient)
    generated_at = timezone.now().astimezone(dt.UTC).isoformat(timespec="seconds")
    body: bytes | str
    if kind == "report.pdf":
        body = progression_report(patient, timeline, generated_at=generated_at, by=by)
        response = _download(body, "application/pdf", _export_name(patient, "pdf"))
    elif kind == "measurements.csv":
        body = exports.measurements_csv(timeline)
        response = _download(body, "text/csv; charset=utf-8", _export_name(patient, "csv"))
    elif kind == "lesions.csv":
        body = exports.lesions_csv(timeline)
        response = _download(body, "text/csv; charset=utf-8", _export_name(patient, "lesions.csv"))
    elif kind == "timeline.json":
        body = json.dumps(timeline, indent=1)
        response = _download(body, "application/json", _export_name(patient, "json"))
    elif kind == "fhir.json":
        bundle = exports.fhir_bundle(timeline, generated_at=generated_at)
        exports.validate_fhir_bundle(bundle)
        body = json.dumps(bundle, indent=1)
        response = _download(body, "application/fhir+json", _export_name(patient, "fhir.json"))
    else:
        raise ValueError(f"no such export: {kind}")
    audit(
        user=by,
        action=f"export_{kind.replace('.', '_')}",
        patient=patient,
        code=str(patient.code),
        bytes=len(body),
    )
    return response
