"""The timeline API under 20 concurrent clients (issue 15): each client a keep-alive connection
in a bounded loop of GET /api/patients/{code}/timeline/ (a patient with ``--visits`` analysed
visits, SYNTHETIC records), loopback only. Side by side in one run:

- ``compose``: the compose stack's shape, nginx (deploy/nginx.conf, TLS) in front of gunicorn
  with the compose command (3 gthread workers x 4 threads);
- ``compose_with_stalled_clients``: the same while 3 more sockets send partial headers and stop
  (they once held every sync worker);
- ``sync_direct``: the shape before issue 15, 3 sync gunicorn workers, no proxy, plain HTTP.

Target: compose p95 <= 200 ms with no 5xx. Client time per request (p50, p95, max) and the
status codes are recorded.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tracker_bench \\
    .venv/bin/python bench/bench_api_load.py [--clients 20] [--requests 40] [--visits 20]

Writes bench/results/api_load.json. Needs nginx (Debian: nginx-light) for the proxied runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import ssl
import sys
import time
from typing import Any

from common import REPO, environment, percentiles, setup_django_bench, write_results

sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from tests.tracker.proxy import LocalProxy, free_port
from tests.tracker.served import gunicorn_command, seed, start_gunicorn, stop

TARGET_P95_MS = 200


def _client(args: tuple[str, int, bool, str, str, int, str | None]) -> list[tuple[float, int]]:
    """One client: a keep-alive connection, ``count`` GETs after 2 warm-up ones; (seconds,
    status) of each. A dropped connection is reopened (and its request counted as status 0)."""
    host, port, tls, path, token, count, ca = args
    context = ssl.create_default_context(cafile=ca) if tls else None

    def connect() -> http.client.HTTPConnection:
        if tls:
            return http.client.HTTPSConnection(host, port, context=context, timeout=60)
        return http.client.HTTPConnection(host, port, timeout=60)

    connection = connect()
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    results = []
    for index in range(count + 2):
        started = time.perf_counter()
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status = 0
            connection.close()
            connection = connect()
        if index >= 2:
            results.append((time.perf_counter() - started, status))
    connection.close()
    return results


def _stall(port: int, sockets: int) -> list[socket.socket]:
    """Sockets that send half a request's headers and then nothing."""
    held = []
    for _ in range(sockets):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /api/patients/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        held.append(sock)
    return held


def load(
    host: str,
    port: int,
    *,
    tls: bool,
    path: str,
    token: str,
    clients: int,
    requests: int,
    ca: str | None = None,
) -> dict[str, Any]:
    jobs = [(host, port, tls, path, token, requests, ca)] * clients
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        per_client = pool.map(_client, jobs)
    wall = time.perf_counter() - started
    samples = [sample for client in per_client for sample in client]
    statuses: dict[str, int] = {}
    for _, status in samples:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        **percentiles([seconds for seconds, _ in samples]),
        "statuses": statuses,
        "server_errors": sum(n for s, n in statuses.items() if s.startswith("5") or s == "0"),
        "requests_per_s": round(len(samples) / wall, 1),
        "clients": clients,
        "requests_per_client": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=40, help="per client")
    parser.add_argument("--visits", type=int, default=20)
    args = parser.parse_args()

    work = setup_django_bench("api-load-")
    seeded = seed(visits=args.visits)
    path = f"/api/patients/{seeded.patient_code}/timeline/"
    env = {
        "MEDIA_ROOT": str(work / "media"),
        "TRACKER_VAR_DIR": str(work / "var"),
        "SECRET_KEY": "bench-" + "x" * 40,
    }
    runs: dict[str, Any] = {}
    common = {"path": path, "token": seeded.token, "clients": args.clients}

    # The compose shape: nginx (TLS) in front of the compose command's gunicorn.
    port = free_port()
    server = start_gunicorn(port, work / "gunicorn-compose.log", TRACKER_BEHIND_TLS="true", **env)
    proxy = LocalProxy(work / "proxy", port)
    try:
        proxy.start()
        target = ("localhost", proxy.https_port)
        runs["compose"] = load(
            *target, tls=True, ca=proxy.certificate, requests=args.requests, **common
        )
        held = _stall(proxy.https_port, 3)
        try:
            runs["compose_with_stalled_clients"] = load(
                *target, tls=True, ca=proxy.certificate, requests=args.requests, **common
            )
        finally:
            for sock in held:
                sock.close()
    finally:
        proxy.stop()
        stop(server)
    runs["compose"]["gunicorn"] = " ".join(gunicorn_command(port)[2:])

    # Before issue 15: three sync workers answering clients directly.
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "3",
        "--timeout",
        "120",
    ]
    server = start_gunicorn(port, work / "gunicorn-sync.log", command=command, **env)
    try:
        runs["sync_direct"] = load("127.0.0.1", port, tls=False, requests=args.requests, **common)
    finally:
        stop(server)
    runs["sync_direct"]["gunicorn"] = " ".join(command[2:])

    compose = runs["compose"]
    result = {
        "what": (
            "GET timeline under concurrent keep-alive clients on loopback (SYNTHETIC records, "
            f"{args.visits} analysed visits); client-side time per request"
        ),
        "environment": environment(),
        "target_p95_ms": TARGET_P95_MS,
        "compose_meets_target": compose["p95_ms"] <= TARGET_P95_MS
        and compose["server_errors"] == 0,
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))
    write_results(REPO / "bench" / "results" / "api_load.json", result)


if __name__ == "__main__":
    main()
