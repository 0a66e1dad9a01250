"""Print the demo cohort's timelines: per visit the RANO 2.0 category and volumes."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tracker import selectors
from tracker.models import Patient


class Command(BaseCommand):
    help = "Summarise the demo team's patients (SYNTHETIC PHANTOM DATA)."

    def handle(self, *args: Any, **options: Any) -> None:
        patients = Patient.objects.filter(team__name="Demo team").order_by("label")
        for patient in patients:
            self.stdout.write(f"{patient.label}  [SYNTHETIC PHANTOM]")
            for visit in selectors.patient_timeline(patient)["visits"]:
                run = selectors.current_run(visit)
                latest = selectors.latest_run(visit)
                assessment = next(
                    (a for a in selectors.related(visit, "assessments") if a.is_current), None
                )
                if assessment is None:
                    state = f"{latest.stage}/{latest.status}" if latest else "no analysis"
                    error = f": {latest.error}" if latest and latest.error else ""
                    self.stdout.write(f"  {visit.acquired_on}  not assessed ({state}{error})")
                    continue
                confirmed = {True: " confirmed", False: " preliminary", None: ""}[
                    assessment.confirmed
                ]
                volumes = run.measurement.volumes_ml if run and hasattr(run, "measurement") else {}
                self.stdout.write(
                    f"  {visit.acquired_on}  {assessment.category}{confirmed:<12}  "
                    f"WT {_ml(volumes.get('WT', 0), 6)}  ET {_ml(volumes.get('ET', 0), 5)}  "
                    f"{assessment.reasons[0] if assessment.reasons else ''}"
                )


def _ml(value: float | None, width: int) -> str:
    """A volume, or 'not measured' where the visit's sequences do not support it."""
    return "not measured" if value is None else f"{value:{width}.1f} mL"
