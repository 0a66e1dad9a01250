"""Evaluate a registered model on the corrected visits it did not train on.

    python manage.py evaluate_model NAME VERSION

Each such visit is segmented by the model and scored against the clinicians' correction (Dice
per region, mean with a 95 % interval), beside the model that made the corrected segmentations.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.errors import InputError
from tracker.services.learning import model_evaluate, model_get
from tracker.services.visits import ConflictError


class Command(BaseCommand):
    help = "Score a registered model against the corrections it did not train on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = model_get(name=options["name"], version=options["version"])
            evaluation = model_evaluate(model=model)
        except (ConflictError, InputError) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{evaluation['cases']} held-out corrected visit(s)")
        for region, scores in evaluation["regions"].items():
            dice, earlier = scores["dice"], scores["earlier_model_dice"]
            self.stdout.write(
                f"  {region}: Dice {dice['mean']} [{dice['low']}, {dice['high']}] "
                f"(the model that made the corrected segmentations: {earlier['mean']})"
            )
