"""How the model does on a team's own patients: every visit a clinician corrected is a case
(the model's segmentation against the latest correction of it, measured when the correction was
saved), summarised per model version by ``inference.measurement.agreement``. Continuous
validation, with no data leaving the team."""

from __future__ import annotations

from typing import Any

from inference.measurement.agreement import REGIONS, Case, summarise
from tracker.models import CareTeam, RunStatus, SegmentationVersion


def teams_for_user(user: Any) -> list[CareTeam]:
    if not getattr(user, "is_authenticated", False):
        return []
    return list(CareTeam.objects.filter(membership__user=user).order_by("name"))


def model_performance(*, team: CareTeam) -> dict[str, Any]:
    """The team's corrected visits as evidence about each model version."""
    versions = (
        SegmentationVersion.objects.filter(visit__patient__team=team, run__status=RunStatus.DONE)
        .select_related("visit__patient", "run", "created_by")
        .order_by("visit_id", "-number")
    )
    latest: dict[int, SegmentationVersion] = {}
    for version in versions:
        latest.setdefault(version.visit_id, version)
    cases = []
    for version in latest.values():
        against = version.changes.get("against_model")
        if not against:
            continue
        # a region empty in both says nothing about the model (Dice would be 1 by convention)
        regions = {
            r: v for r, v in against["regions"].items() if v["model_ml"] or v["corrected_ml"]
        }
        visit = version.visit
        model = against["model"]
        cases.append(
            Case(
                model=f"{model['name']} {model['version']}".strip(),
                visit=str(visit.code),
                label=f"{visit.patient.label} {visit.acquired_on}",
                dice={r: regions[r]["dice"] for r in REGIONS if r in regions},
                model_ml={r: regions[r]["model_ml"] for r in REGIONS if r in regions},
                corrected_ml={r: regions[r]["corrected_ml"] for r in REGIONS if r in regions},
                category_before=version.changes.get("category_before"),
                category_after=version.changes.get("category_after"),
                details={
                    "patient": str(visit.patient.code),
                    "version": version.number,
                    "corrected_by": version.created_by.username,
                },
            )
        )
    return {
        "team": team.name,
        "corrected_visits": len(cases),
        "models": summarise(cases),
    }
