"""Put runs stuck in a stage (a worker died, a message was lost) back in the queue."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from tracker.services.pipeline import requeue_stale


class Command(BaseCommand):
    help = "Requeue analysis runs that have been queued or running for too long."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", type=int, default=None, help="seconds (default TRACKER_STALE_AFTER_S)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            codes = requeue_stale(older_than_s=options["older_than"])
        self.stdout.write(f"requeued {len(codes)} run(s)")
        for code in codes:
            self.stdout.write(f"  {code}")
