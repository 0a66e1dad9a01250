"""The service as a client meets it, for the API fuzz test and the API benchmarks: seeded
records (SYNTHETIC), and gunicorn with the compose file's worker settings (the compose proxy in
front is tests/tracker/proxy.py)."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


@dataclass
class Seeded:
    token: str
    patient_code: str
    visit_code: str
    other_patient_code: str  # another team's: must stay a 404


def seed(visits: int = 10) -> Seeded:
    """A care team with one analysed patient (``visits`` made-up analysed visits), a user of
    that team with an API token, and another team's patient. Django must be set up."""
    from django.contrib.auth.models import User
    from knox.models import AuthToken

    from tests.tracker.factories import analysed_patient
    from tracker.models import CareTeam, Membership, Patient

    user = User.objects.create_user("bench", password=secrets.token_urlsafe(16))
    team = CareTeam.objects.create(name="Bench team")
    Membership.objects.create(team=team, user=user)
    patient = analysed_patient(team, "BENCH-001", visits)
    other = CareTeam.objects.create(name="Other team")
    hidden = Patient.objects.create(team=other, label="OTHER-001")
    token = AuthToken.objects.create(user=user)[1]
    return Seeded(
        token=token,
        patient_code=str(patient.code),
        visit_code=str(patient.visits.order_by("acquired_on").first().code),  # type: ignore[union-attr]
        other_patient_code=str(hidden.code),
    )


def gunicorn_command(port: int) -> list[str]:
    """The compose web service's gunicorn command, bound to a local port (its worker count as
    the container's shell works it out: TRACKER_WEB_WORKERS, else one per core)."""
    web = " ".join(COMPOSE["services"]["web"]["command"])
    found = re.search(r"exec (gunicorn .*?)\"?$", web)
    assert found, web
    workers = os.environ.get("TRACKER_WEB_WORKERS") or str(os.cpu_count() or 1)
    text = found.group(1).replace("0.0.0.0:8000", f"127.0.0.1:{port}")
    assert "$${TRACKER_WEB_WORKERS:-$$(nproc)}" in text, text
    text = text.replace("$${TRACKER_WEB_WORKERS:-$$(nproc)}", workers)
    return [sys.executable, "-m", *shlex.split(text)]


def start_gunicorn(
    port: int, log: Path, *, command: list[str] | None = None, **environment: str
) -> subprocess.Popen[bytes]:
    """gunicorn (the compose command unless ``command`` says otherwise) on ``port``, once its
    health check answers."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "WARNING", **environment}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command or gunicorn_command(port),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    import urllib.request

    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() - started > 60:
            raise RuntimeError("gunicorn did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.3)


def stop(process: Any) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
