"""API tokens move to django-rest-knox (digests, expiry). The old table of DRF's authtoken kept
every key in clear: it is dropped, so those keys stop working and leave nothing readable behind.
Integrations ask /api/token/ for a new token."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tracker", "0007_run_heartbeat"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [
        migrations.RunSQL("DROP TABLE IF EXISTS authtoken_token", reverse_sql=migrations.RunSQL.noop)
    ]
