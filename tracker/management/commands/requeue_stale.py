"""Put runs stuck in a stage (a worker died, a message was lost) and patient assessments asked
for and not done back in the queue."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from tracker.services.runs import runs_requeue_stale


class Command(BaseCommand):
    help = "Requeue analysis runs and patient assessments left waiting for too long."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", type=int, default=None, help="seconds (default TRACKER_STALE_AFTER_S)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            requeued = runs_requeue_stale(older_than_s=options["older_than"])
        self.stdout.write(f"requeued {len(requeued.runs)} run(s)")
        for code in requeued.runs:
            self.stdout.write(f"  {code}")
        self.stdout.write(f"requeued {len(requeued.patients)} patient assessment(s)")
        for code in requeued.patients:
            self.stdout.write(f"  {code}")
