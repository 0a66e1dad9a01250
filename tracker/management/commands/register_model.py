"""Register a weights folder (``python -m inference train ... --out DIR``) as a model version.

    python manage.py register_model DIR [--as-version NAME]

The weights are copied under MEDIA_ROOT/models; the model is inactive until it has been
evaluated (``evaluate_model``) and an administrator activates it (``activate_model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.errors import InputError
from tracker.services.learning import model_register
from tracker.services.visits import ConflictError


class Command(BaseCommand):
    help = "Register a trained weights folder as a model version (inactive)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument(
            "--as-version", default="", help="a version name, if the card's is taken"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = model_register(folder=options["folder"], version=options["as_version"])
        except (InputError, ConflictError) as error:
            raise CommandError(str(getattr(error, "message", error))) from None
        self.stdout.write(
            f"registered {model.name} {model.version} (weights sha256 {model.weights_sha256[:16]}…)"
            f"; evaluate it: python manage.py evaluate_model {model.name} {model.version}"
        )
