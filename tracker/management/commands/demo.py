"""Seed a demo cohort of SYNTHETIC PHANTOM patients (treatments, visits) and queue their analysis.

    python manage.py demo [--patients 2] [--visits 3] [--wait]

Creates the care team "Demo team" and the login ``demo`` (password printed). Phantom patients are
rendered under ``var/demo-cohort`` and uploaded through the same service as the API; ``--wait``
polls until every run has finished (a worker must be running).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from inference.segmentation import phantoms
from tracker.models import AnalysisRun, CareTeam, Membership, Patient, RunStatus, TreatmentEvent
from tracker.services.imports import visit_create_from_folder

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-tracker-2026"
FIRST_SEED = 940000
SCENARIOS = [
    phantoms.Scenario.PSEUDOPROGRESSION,
    phantoms.Scenario.PARTIAL_RESPONSE,
    phantoms.Scenario.PROGRESSION,
    phantoms.Scenario.STABLE,
    phantoms.Scenario.NEW_LESION,
    phantoms.Scenario.COMPLETE_RESPONSE,
]


class Command(BaseCommand):
    help = "Seed a demo cohort of synthetic phantom patients and queue their analysis."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, default=2)
        parser.add_argument("--visits", type=int, default=3)
        parser.add_argument("--wait", action="store_true", help="wait until every run finished")
        parser.add_argument("--timeout", type=int, default=3600)

    def handle(self, *args: Any, **options: Any) -> None:
        user, created = User.objects.get_or_create(username=DEMO_USER)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        team, _ = CareTeam.objects.get_or_create(name="Demo team")
        Membership.objects.get_or_create(team=team, user=user)
        out = Path(settings.VAR_DIR) / "demo-cohort"
        for index in range(options["patients"]):
            seed = FIRST_SEED + index
            label = f"DEMO-{index + 1:03d} (SYNTHETIC)"
            if Patient.objects.filter(team=team, label=label).exists():
                self.stdout.write(f"{label}: already seeded")
                continue
            scenario = SCENARIOS[index % len(SCENARIOS)]
            phantom = phantoms.make_patient(seed, visits=options["visits"], scenario=scenario)
            self.stdout.write(f"{label}: rendering {options['visits']} phantom visits ({scenario})")
            folders = phantoms.write_patient(phantom, out / str(seed))
            baseline_on = phantoms.BASELINE_DATE
            with transaction.atomic():
                patient = Patient.objects.create(
                    team=team,
                    label=label,
                    diagnosis="glioblastoma, IDH-wildtype (synthetic phantom)",
                    who_grade=4,
                    idh_status="wildtype",
                    presentation="ce" if phantom.lesions[0].enhancing else "non-ce",
                )
                TreatmentEvent.objects.create(
                    patient=patient,
                    kind="surgery",
                    started_on=baseline_on - dt.timedelta(days=84),
                )
                TreatmentEvent.objects.create(
                    patient=patient,
                    kind="radiotherapy",
                    started_on=baseline_on - dt.timedelta(days=70),
                    ended_on=baseline_on - dt.timedelta(days=28),
                )
                TreatmentEvent.objects.create(
                    patient=patient,
                    kind="chemotherapy",
                    started_on=baseline_on - dt.timedelta(days=70),
                    notes="temozolomide",
                )
            for folder in folders:
                week = int(folder.name.rsplit("-", 1)[1])
                on = baseline_on + dt.timedelta(weeks=phantom.weeks[week])
                visit_create_from_folder(patient=patient, acquired_on=on, folder=folder, by=user)
                self.stdout.write(f"  visit {on} uploaded, analysis queued")
        if options["patients"]:
            self.stdout.write(f"login: {DEMO_USER} / {DEMO_PASSWORD}")
        if options["wait"]:
            self._wait(team, options["timeout"])

    def _wait(self, team: CareTeam, timeout: int) -> None:
        started = time.monotonic()
        shown = -1
        while time.monotonic() - started < timeout:
            runs = AnalysisRun.objects.filter(visit__patient__team=team)
            pending = runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).count()
            total = runs.count()
            if total - pending != shown:  # progress, once per change
                shown = total - pending
                stages = Counter(
                    runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).values_list(
                        "stage", flat=True
                    )
                )
                doing = ", ".join(f"{n} at {stage}" for stage, n in sorted(stages.items()))
                self.stdout.write(
                    f"  {shown} / {total} visits analysed after "
                    f"{time.monotonic() - started:.0f} s{f' ({doing})' if doing else ''}"
                )
            if pending == 0:
                failed = runs.filter(status=RunStatus.FAILED)
                for run in failed:
                    self.stdout.write(f"  FAILED {run.visit.acquired_on}: {run.error}")
                self.stdout.write(
                    f"all {runs.count()} runs finished ({failed.count()} failed) in "
                    f"{time.monotonic() - started:.0f} s"
                )
                return
            time.sleep(3)
        self.stdout.write(f"still running after {timeout} s")
