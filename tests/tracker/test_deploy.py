"""docker-compose.yml, .env.example and the settings agree: services, commands, queues,
variables, health checks, volumes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from tracker.queues import Queue

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
EXAMPLE = {
    line.split("=", 1)[0]
    for line in (REPO / ".env.example").read_text().splitlines()
    if line and not line.startswith("#")
}
# Variables read by something other than Django: PostgreSQL's image, Keras, compose and gunicorn.
NOT_DJANGO = {
    "POSTGRES_PASSWORD",
    "KERAS_BACKEND",
    "TRACKER_HTTP_PORT",
    "TRACKER_HTTPS_PORT",
    "TRACKER_WEB_WORKERS",
}


def _settings_variables() -> set[str]:
    text = (REPO / "config" / "settings.py").read_text()
    return set(re.findall(r"env(?:_bool|_int)?\(\s*\"([A-Z_]+)\"", text))


def _queues(command: list[str]) -> set[str]:
    return set(command[command.index("-Q") + 1].split(","))


def test_the_compose_file_has_every_service_with_a_health_check_where_it_matters() -> None:
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "web",
        "proxy",
        "worker-cpu",
        "worker-gpu",
        "beat",
    }
    for name in ("postgres", "redis", "web", "proxy", "worker-cpu", "worker-gpu"):
        assert "healthcheck" in SERVICES[name], name
    assert set(COMPOSE["volumes"]) >= {"pgdata", "media"}
    for name in ("web", "worker-cpu", "worker-gpu", "beat"):
        assert "media:/data/media" in SERVICES[name]["volumes"], name
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_workers_consume_every_queue_the_settings_route_to() -> None:
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    consumed = _queues(SERVICES["worker-cpu"]["command"]) | _queues(
        SERVICES["worker-gpu"]["command"]
    )
    assert routed <= consumed == {q.value for q in Queue}
    gpu = SERVICES["worker-gpu"]
    assert _queues(gpu["command"]) == {Queue.GPU.value}
    assert "solo" in gpu["command"]
    assert "1" in gpu["command"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert settings.CELERY_TASK_ROUTES["tracker.segment"]["queue"] == Queue.GPU.value


def test_the_gpu_worker_has_an_image_of_its_own_that_runs_the_model_on_jax_with_cuda() -> None:
    gpu = SERVICES["worker-gpu"]
    assert gpu["build"]["dockerfile"] == "Dockerfile.gpu"
    assert gpu["image"] != SERVICES["worker-cpu"]["image"]
    assert gpu["environment"]["KERAS_BACKEND"] == "jax"
    dockerfile = (REPO / "Dockerfile.gpu").read_text()
    assert '"jax[cuda12]' in dockerfile
    assert "KERAS_BACKEND=jax" in dockerfile
    # The CPU image carries the shipped model's ONNX export, built and checked at build time.
    assert (
        "python -m inference export-onnx --cache /app/model-cache"
        in (REPO / "Dockerfile").read_text()
    )


def test_every_variable_is_documented_and_read() -> None:
    read = _settings_variables()
    assert read <= EXAMPLE, read - EXAMPLE
    assert read >= EXAMPLE - NOT_DJANGO, (EXAMPLE - NOT_DJANGO) - read
    text = (REPO / "docker-compose.yml").read_text()
    for name in re.findall(r"\$\{([A-Z_]+)", text):
        assert name in EXAMPLE, name
    for service in ("web", "worker-cpu", "worker-gpu", "beat"):
        environment: dict[str, Any] = SERVICES[service]["environment"]
        assert set(environment) - NOT_DJANGO <= read, service
        assert environment["DATABASE_URL"].startswith("postgres://")
        assert environment["CELERY_BROKER_URL"].startswith("redis://")


def test_the_web_service_migrates_then_serves_the_wsgi_app() -> None:
    command = " ".join(SERVICES["web"]["command"])
    assert "migrate" in command
    assert "exec gunicorn config.wsgi" in command
    assert settings.WSGI_APPLICATION == "config.wsgi.application"


def test_only_the_proxy_faces_clients_and_it_shields_the_workers_from_slow_ones() -> None:
    """Three idle sockets sending partial headers once held every sync gunicorn worker: now
    nginx buffers whole requests, drops stalled clients and refuses oversized bodies, and
    gunicorn's threaded workers sit behind it, unpublished."""
    web, proxy = SERVICES["web"], SERVICES["proxy"]
    assert "ports" not in web
    assert web["expose"] == ["8000"]
    assert proxy["ports"] == ["${TRACKER_HTTP_PORT:-80}:80", "${TRACKER_HTTPS_PORT:-443}:443"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert "./deploy/tls:/etc/nginx/tls:ro" in proxy["volumes"]
    command = " ".join(web["command"])
    # Sync workers, one per core unless TRACKER_WEB_WORKERS says otherwise: behind nginx's
    # buffering no client is slow to them (the stack test holds stalled sockets at the proxy).
    assert "--workers $${TRACKER_WEB_WORKERS:-$$(nproc)}" in command
    assert "--worker-class" not in command
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    directives = dict(re.findall(r"^\s*([a-z_]+)\s+([^;#{}\n]+);", conf, flags=re.MULTILINE))
    assert directives["proxy_pass"] == "http://tracker_web"
    assert directives["proxy_request_buffering"] == "on"
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert int(directives[name].rstrip("s")) <= 60, name
    body_mb = int(directives["client_max_body_size"].rstrip("m"))
    assert body_mb == settings.TRACKER_MAX_UPLOAD_MB + 1


def test_the_proxy_terminates_tls_and_sends_plain_http_to_https() -> None:
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    servers = re.split(r"^server \{", conf, flags=re.MULTILINE)[1:]
    plain = next(s for s in servers if re.search(r"listen 80;", s))
    secure = next(s for s in servers if "listen 443 ssl;" in s)
    assert "return 301 https://$host$request_uri;" in plain
    assert "proxy_pass" not in plain
    assert "ssl_certificate     /etc/nginx/tls/fullchain.pem;" in secure
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in secure
    assert "proxy_set_header X-Forwarded-Proto https;" in secure
    assert settings.SECURE_REDIRECT_EXEMPT == [r"^healthz/$"]
    for name in ("web", "proxy"):
        assert "/healthz/" in " ".join(SERVICES[name]["healthcheck"]["test"]), name


def _compose_environment(tmp_path: Path) -> dict[str, str]:
    """What the web container runs with: .env.example (a real key in place of the placeholder)
    and the compose file's own variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACKER_", "SECRET_KEY"))}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            env[name] = value
    env |= {k: str(v) for k, v in COMPOSE["x-app"]["environment"].items()}
    env |= {
        "SECRET_KEY": "k" * 20 + "-not-a-published-key-0123456789",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "sqlite:///" + str(tmp_path / "db")),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "TRACKER_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    return env


def _check_deploy(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_deploy_passes_with_the_compose_settings(tmp_path: Path) -> None:
    result = _check_deploy(_compose_environment(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_without_tls(tmp_path: Path) -> None:
    """The same settings served over plain HTTP: check --deploy names what is missing."""
    env = _compose_environment(tmp_path) | {
        "TRACKER_BEHIND_TLS": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
    }
    result = _check_deploy(env)
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in result.stderr + result.stdout, warning


def _secret_key(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "SECRET_KEY_FILE", "TRACKER_REQUIRE_SECRET_KEY", "DEBUG"}
    }
    env |= {"TRACKER_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env |= environment
    return subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(settings.SECRET_KEY)"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "environment",
    [
        {"SECRET_KEY": "change-me-to-a-long-random-string"},  # the .env.example placeholder
        {"SECRET_KEY": "embedded-default-not-for-deployment"},  # the old built-in key
        {"SECRET_KEY": "short"},
        {"TRACKER_REQUIRE_SECRET_KEY": "true"},  # a deployment without a key
        {"TRACKER_REQUIRE_SECRET_KEY": "true", "DEBUG": "true"},
    ],
)
def test_a_known_short_or_missing_key_stops_the_service(
    tmp_path: Path, environment: dict[str, str]
) -> None:
    result = _secret_key(tmp_path, **environment)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_the_embedded_default_makes_a_key_of_its_own_and_keeps_it(tmp_path: Path) -> None:
    first, second = _secret_key(tmp_path), _secret_key(tmp_path)
    assert first.returncode == 0
    assert first.stdout == second.stdout
    key = first.stdout.strip()
    assert len(key) >= 50
    assert key == (tmp_path / "secret_key").read_text().strip()
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert _secret_key(tmp_path / "other").stdout.strip() != key
