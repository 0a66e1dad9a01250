"""Which earlier preliminary progression a scan did not confirm (pseudoprogression), stored with
the assessments so the chart and the headline mark it. Patients assessed before are assessed
again (the sweeper queues them) to fill it in."""

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone


def request_reassessment(apps, schema_editor):
    Patient = apps.get_model("tracker", "Patient")
    Patient.objects.filter(visits__assessments__is_current=True).distinct().update(
        assessment_requested_at=timezone.now()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("tracker", "0010_review_agree"),
    ]

    operations = [
        migrations.AddField(
            model_name="assessment",
            name="pseudoprogression_of",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="tracker.visit",
            ),
        ),
        migrations.RunPython(request_reassessment, migrations.RunPython.noop),
    ]
