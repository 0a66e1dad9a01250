"""Import a tree of visits: BraTS-style folders (one visit per folder), LUMIERE-style
``Patient-001/week-044`` folders, or DICOM folders (one series per sequence).

    python manage.py import_visits PATH --team "Neuro-A" [--start-date 2024-01-01]

Patients are created by pseudonymous label (the folder's patient part); visit dates come from
LUMIERE week numbers (start date + weeks) or, for folders without dates, the start date plus one
day per visit in name order. Every folder is validated like an upload; a progress line per
folder, then a summary of what was imported and what was skipped and why.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.errors import InputError
from inference.segmentation.train import patient_of, visit_name
from tracker.models import CareTeam, Patient
from tracker.services.imports import visit_create_from_folder
from tracker.services.uploads import UploadError
from tracker.services.visits import ConflictError

_WEEK = re.compile(r"week[-_ ]?(\d+)", re.IGNORECASE)


def visit_folders(root: Path) -> list[Path]:
    """Folders holding image files (NIfTI, or DICOM series one level down)."""
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and (path.name.lower().endswith((".nii", ".nii.gz", ".dcm"))):
            folder = path.parent
            if path.name.lower().endswith(".dcm"):
                folder = folder.parent  # a DICOM visit holds one folder per series
            found.add(folder)
    return sorted(found)


class Command(BaseCommand):
    help = "Import BraTS/LUMIERE-style or DICOM visit folders as patients and visits."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--team", required=True, help="care team name")
        parser.add_argument("--start-date", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1))

    def handle(self, *args: Any, **options: Any) -> None:
        root: Path = options["path"]
        if not root.is_dir():
            raise CommandError(f"{root}: not a folder")
        team = CareTeam.objects.filter(name=options["team"]).first()
        if team is None:
            raise CommandError(f"no care team named {options['team']!r}")
        folders = visit_folders(root)
        imported, skipped = 0, []
        counters: dict[str, int] = {}
        for number, folder in enumerate(folders, start=1):
            name = visit_name(folder)
            label = patient_of(name)
            week = _WEEK.search(folder.name)
            if week:
                on = options["start_date"] + dt.timedelta(weeks=int(week.group(1)))
            else:
                counters[label] = counters.get(label, -1) + 1
                on = options["start_date"] + dt.timedelta(days=counters[label])
            patient, _ = Patient.objects.get_or_create(team=team, label=label)
            try:
                visit_create_from_folder(patient=patient, acquired_on=on, folder=folder)
                imported += 1
                outcome = "imported"
            except UploadError as error:
                skipped.append(
                    (name, "; ".join(f"{k}: {', '.join(v)}" for k, v in error.problems.items()))
                )
                outcome = "skipped"
            except (InputError, ConflictError) as error:
                skipped.append((name, str(error)))
                outcome = "skipped"
            self.stdout.write(f"[{number}/{len(folders)}] {name}: {outcome}")
        self.stdout.write(f"imported {imported} visit(s), skipped {len(skipped)}")
        for name, why in skipped:
            self.stdout.write(f"  skipped {name}: {why}")
