"""Make an evaluated model the one new analyses use (an administrator's decision).

    python manage.py activate_model NAME VERSION --by ADMIN

Visits analysed before keep their results; re-analysing one with the new model keeps them
until the new ones exist.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tracker.models import ModelVersion
from tracker.services.learning import model_activate
from tracker.services.visits import ConflictError


class Command(BaseCommand):
    help = "Activate an evaluated model version for new analyses."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version")
        parser.add_argument("--by", required=True, help="the administrator deciding it")

    def handle(self, *args: Any, **options: Any) -> None:
        model = ModelVersion.objects.filter(
            name=options["name"], version=options["version"]
        ).first()
        if model is None:
            raise CommandError(f"no registered model {options['name']} {options['version']}")
        try:
            model_activate(model=model, by=options["by"])
        except ConflictError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{model.name} {model.version} is active: new analyses use it")
