"""The docker-compose stack, run as processes on this machine (there is no Docker daemon in CI):
each app service's own command and environment from docker-compose.yml and .env.example, with
only the host names, ports and /data paths made local. nginx (deploy/nginx.conf, a self-signed
certificate) terminates TLS in front of gunicorn, a CPU worker (prefork), a GPU worker (solo)
and beat run beside it, and a private Redis is the broker.

1. The compose health checks pass, plain HTTP is redirected to HTTPS, and a visit uploaded over
   HTTPS with a token is assessed.
2. Redis is stopped while the second visit is being segmented and started again empty (the
   worst case: a broker that keeps nothing, so every queued message is lost). Nothing is
   half-written, no worker dies, and the beat sweeper finds the run whose next stage could not
   be queued; it is assessed without anyone stepping in.

SYNTHETIC PHANTOM DATA. Needs PostgreSQL (``DATABASE_URL``), ``redis-server`` and ``nginx``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from django.conf import settings
from knox.models import AuthToken

from tests.tracker.conftest import BRATS_SUFFIX
from tests.tracker.proxy import LocalProxy, free_port, nginx_version
from tests.tracker.test_e2e_worker import _worker_env
from tracker.models import AnalysisRun, Assessment, RunStatus, Scan

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
APP_SERVICES = ("web", "worker-cpu", "worker-gpu", "beat")
# Short enough for a test, longer than any stage here takes.
STALE_AFTER_S = 60
SWEEP_EVERY_S = 5
TIMEOUT_S = 600

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _example_env() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            values[name] = value
    return values


class Stack:
    """The compose services as local processes; logs under ``folder``."""

    def __init__(self, folder: Path, base_env: dict[str, str]) -> None:
        self.folder = folder
        self.web_port = free_port()
        self.redis_port = free_port()
        self.var = folder / "var"
        self.var.mkdir()
        self.base_env = base_env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.proxy = LocalProxy(folder / "proxy", self.web_port)

    @property
    def url(self) -> str:
        """Clients reach the stack through the proxy, over HTTPS (compose publishes no other
        port)."""
        return self.proxy.url

    def local(self, text: str) -> str:
        """Container paths and addresses to this machine's."""
        return (
            text.replace("/data/var", str(self.var))
            .replace("0.0.0.0:8000", f"127.0.0.1:{self.web_port}")
            .replace("localhost:8000", f"127.0.0.1:{self.web_port}")
            .replace("$$HOSTNAME", socket.gethostname())
            .replace("$$", "$")  # compose's escape for the container's shell
        )

    def env(self, service: str) -> dict[str, str]:
        example = _example_env()
        declared = {
            name: re.sub(r"\$\{(\w+)(:-([^}]*))?\}", lambda m: example.get(m[1], m[3] or ""), v)
            for name, v in COMPOSE["services"][service]["environment"].items()
        }
        env = {**self.base_env, **example, **declared}
        assert env["DATABASE_URL"].startswith("postgres://")
        assert "@postgres:" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        # What differs outside the containers: the hosts, the ports and the /data volume.
        env.update(
            DATABASE_URL=self.base_env["DATABASE_URL"],
            CELERY_BROKER_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            MEDIA_ROOT=self.base_env["MEDIA_ROOT"],
            TRACKER_VAR_DIR=str(self.var),
            SECRET_KEY="stack-test-" + "x" * 40,
            TRACKER_STALE_AFTER_S=str(STALE_AFTER_S),
            TRACKER_SWEEP_EVERY_S=str(SWEEP_EVERY_S),
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start_redis(self) -> None:
        # The machine's Redis keeps nothing on disk; neither does this one (compose's keeps an
        # append-only file): a restart loses every message.
        self.processes["redis"] = self._spawn(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""],
            {**os.environ},
        )
        self._wait(self._redis_ping, "redis to answer")

    def stop_redis(self) -> None:
        process = self.processes.pop("redis")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def _redis_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, service: str) -> None:
        command = [self.local(part) for part in COMPOSE["services"][service]["command"]]
        self.processes[service] = self._spawn(service, command, self.env(service))

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[Any]:
        with (self.folder / f"{name}.log").open("ab") as log:
            # A session of its own: stopping it stops its children too (sh -> gunicorn).
            return subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def healthy(self, service: str) -> bool:
        test = COMPOSE["services"][service]["healthcheck"]["test"]
        if test[0] == "CMD":
            command = [self.local(part) for part in test[1:]]
        else:
            command = ["sh", "-c", self.local(test[1])]
        done = subprocess.run(
            command, check=False, cwd=REPO, env=self.env(service), capture_output=True
        )
        return done.returncode == 0

    def alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} stopped:\n{self.log(name)}"

    def log(self, name: str, tail: int = 4000) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-tail:]

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float = 180) -> None:
        started = time.monotonic()
        while not ready():
            if time.monotonic() - started > timeout:
                pytest.fail(f"timed out waiting for {what}")
            self.alive()
            time.sleep(1)

    def wait(self, ready: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
        self._wait(ready, what, timeout)

    def stop(self) -> None:
        self.proxy.stop()
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    if shutil.which("redis-server") is None or nginx_version() is None:
        if os.environ.get("CI"):
            pytest.fail("the stack test needs redis-server and nginx under CI")
        pytest.skip("needs redis-server and nginx")
    running = Stack(tmp_path, _worker_env())
    try:
        yield running
    finally:
        running.stop()


def _upload(stack: Stack, token: str, patient: Any, folder: Path) -> str:
    truth = json.loads((folder / "truth.json").read_text())
    files = {}
    for field, suffix in BRATS_SUFFIX.items():
        path = next(folder.glob(f"*-{suffix}.nii.gz"))
        files[field] = (f"{field}.nii.gz", path.read_bytes(), "application/gzip")
    response = requests.post(
        f"{stack.url}/api/patients/{patient.code}/visits/",
        data={"acquired_on": truth["acquired_on"]},
        files=files,
        headers={"Authorization": f"Token {token}"},
        timeout=120,
        verify=stack.proxy.certificate,
    )
    assert response.status_code == 201, response.text
    code: str = response.json()["code"]
    return code


def _assessed(code: str) -> bool:
    failed = AnalysisRun.objects.filter(visit__code=code, status=RunStatus.FAILED).first()
    assert failed is None, failed.error
    return Assessment.objects.filter(visit__code=code, is_current=True).exists()


def test_the_compose_stack_serves_analyses_and_survives_a_broker_restart(
    stack: Stack, teams: dict[str, Any], phantom_visits: list[Path]
) -> None:
    token = AuthToken.objects.create(user=teams["alice"])[1]
    patient = teams["patient"]
    stack.start_redis()
    for service in APP_SERVICES:
        stack.start(service)
    for service in ("web", "worker-cpu", "worker-gpu"):
        stack.wait(lambda s=service: stack.healthy(s), f"{service}'s health check", 240)
    stack.proxy.start()
    requests_ca = stack.proxy.certificate
    anonymous = requests.get(f"{stack.url}/api/patients/", timeout=30, verify=requests_ca)
    assert anonymous.status_code == 401
    assert anonymous.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = requests.get(
        f"http://localhost:{stack.proxy.http_port}/patients/", timeout=30, allow_redirects=False
    )
    assert plain.status_code == 301
    assert plain.headers["Location"].startswith("https://")
    # Stalled clients (half a request's headers, then nothing) once held every web worker: now
    # the proxy holds them and the API answers at once.
    stalled = []
    tls = ssl.create_default_context(cafile=requests_ca)
    for _ in range(4):
        raw = socket.create_connection(("127.0.0.1", stack.proxy.https_port), timeout=5)
        sock = tls.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(b"GET /api/patients/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        stalled.append(sock)
    for _ in range(4):
        sock = socket.create_connection(("127.0.0.1", stack.proxy.http_port), timeout=5)
        sock.sendall(b"GET /patients/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        stalled.append(sock)
    started = time.monotonic()
    for _ in range(6):
        answer = requests.get(f"{stack.url}/healthz/", timeout=10, verify=requests_ca)
        assert answer.status_code == 200
    assert time.monotonic() - started < 5
    for sock in stalled:
        sock.close()

    # 1. An upload over HTTP is analysed by the CPU and GPU workers.
    first = _upload(stack, token, patient, phantom_visits[0])
    stack.wait(lambda: _assessed(first), "the first visit's assessment")

    # 2. The broker goes away in the middle of the second visit's segmentation.
    second = _upload(stack, token, patient, phantom_visits[1])

    def segmenting() -> bool:
        run = AnalysisRun.objects.get(visit__code=second)
        return (run.stage, run.status) == ("segment", RunStatus.RUNNING)

    stack.wait(segmenting, "the second visit's segmentation to start")
    stack.stop_redis()
    stack.wait(
        lambda: "could not queue register" in stack.log("worker-gpu", tail=10**7),
        "the segmentation to finish and fail to queue its next stage",
    )
    run = AnalysisRun.objects.get(visit__code=second)
    # Its next stage is due in the database; the message could not be sent.
    assert (run.stage, run.status) == ("register", RunStatus.QUEUED)
    stack.alive()
    stack.start_redis()  # empty: whatever was queued is gone
    stack.wait(lambda: _assessed(second), "the second visit's assessment after the restart")

    run.refresh_from_db()
    assert run.status == RunStatus.DONE
    assert run.is_current
    assert [run.stages[s]["status"] for s in ("prepare", "segment", "register", "measure")] == [
        "done"
    ] * 4
    for scan in Scan.objects.filter(visit__patient=patient):
        stored = Path(settings.MEDIA_ROOT) / scan.file.name
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == scan.sha256
    sweeps = [line for line in stack.log("worker-cpu", tail=10**7).splitlines() if "sweep" in line]
    # The sweep that found the run reports how many it re-queued.
    assert any(re.search(r"succeeded in .*: [1-9]\d*$", line) for line in sweeps), sweeps[-5:]
    timeline = requests.get(
        f"{stack.url}/api/patients/{patient.code}/timeline/",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
        verify=stack.proxy.certificate,
    ).json()
    categories = [v["assessment"]["category"] for v in timeline["visits"]]
    assert categories[0] == "baseline"
    assert len(categories) == 2
    assert all(v["analysis"]["status"] == "done" for v in timeline["visits"])
    stack.alive()
