"""Write a team's corrected visits as a training set (``tracker.services.learning``).

    python manage.py export_training_set --team "Neuro-A" --out DIR

DIR/train holds one BraTS 2023 folder per corrected visit (the sequences as uploaded, header
text cleared, and the corrected labels); one visit in five is held out for evaluation and not
written; DIR/manifest.json lists both. Fine-tune on it with
``python -m inference train DIR/train --init-weights inference/weights --out WEIGHTS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.errors import InputError
from tracker.models import CareTeam
from tracker.services.learning import training_set_export


class Command(BaseCommand):
    help = "Export a team's corrected segmentations as BraTS folders to fine-tune the model on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="care team name")
        parser.add_argument("--out", required=True, type=Path, help="a new folder")

    def handle(self, *args: Any, **options: Any) -> None:
        team = CareTeam.objects.filter(name=options["team"]).first()
        if team is None:
            raise CommandError(f"no care team named {options['team']!r}")
        try:
            manifest = training_set_export(team=team, out=options["out"])
        except InputError as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            f"{len(manifest['train'])} corrected visit(s) in {options['out']}/train, "
            f"{len(manifest['held_out'])} held out for evaluation; see manifest.json"
        )
