"""Make an evaluated model the one new analyses use (an administrator's decision).

    python manage.py activate_model NAME VERSION --by ADMIN

Visits analysed before keep their results; re-analysing one with the new model keeps them
until the new ones exist.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.errors import InputError
from tracker.services.learning import model_activate, model_get
from tracker.services.visits import ConflictError


class Command(BaseCommand):
    help = "Activate an evaluated model version for new analyses."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version")
        parser.add_argument("--by", required=True, help="the administrator deciding it")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = model_get(name=options["name"], version=options["version"])
            model_activate(model=model, by=options["by"])
        except (ConflictError, InputError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{model.name} {model.version} is active: new analyses use it")
