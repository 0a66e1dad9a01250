"""The nadir as the engine found it, stored with the assessments. Patients assessed before have
no nadir marked: their assessment is requested again, and the sweeper queues it."""

from django.db import migrations, models
from django.utils import timezone


def request_reassessment(apps, schema_editor):
    Patient = apps.get_model("tracker", "Patient")
    Patient.objects.filter(visits__assessments__is_current=True).distinct().update(
        assessment_requested_at=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tracker", "0008_drop_plaintext_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="assessment",
            name="is_nadir_visit",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(request_reassessment, migrations.RunPython.noop),
    ]
