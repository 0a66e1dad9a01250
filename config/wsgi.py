"""WSGI entry point (gunicorn config.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Staging folders a killed worker left behind go when the server starts (the sweeper too).
from tracker.services.uploads import clean_stale_staging  # noqa: E402

clean_stale_staging()
