"""The timeline API under 20 concurrent clients (issue 15): wrk (Debian's C load generator,
so the clients take little of this 2-core machine) keeps 20 keep-alive connections each in a
loop of GET /api/patients/{code}/timeline/ for ``--seconds`` (a patient with ``--visits``
analysed visits, SYNTHETIC records), loopback only. Side by side in one run:

- ``compose``: the compose stack's shape, nginx (deploy/nginx.conf, TLS) in front of gunicorn
  with the compose command (sync workers, one per core);
- ``compose_with_stalled_clients``: the same while 6 more sockets send half a request and stop
  (they once held every sync worker);
- ``proxy_gthread_3x4``: nginx in front of 3 threaded workers x 4 threads (tried first);
- ``sync_direct``: the shape before issue 15, 3 sync workers facing clients, plain HTTP.

Target: compose p95 <= 200 ms, no 5xx (no non-2xx response at all, no socket error).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tracker_bench \\
    .venv/bin/python bench/bench_api_load.py [--clients 20] [--seconds 20] [--visits 20]

Writes bench/results/api_load.json. Needs wrk and nginx (Debian: wrk, nginx-light).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import REPO, environment, setup_django_bench, write_results

sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from tests.tracker.proxy import LocalProxy, free_port
from tests.tracker.served import gunicorn_command, seed, start_gunicorn, stop

TARGET_P95_MS = 200
SCRIPT = REPO / "bench" / "wrk_summary.lua"


def wrk(url: str, token: str, clients: int, seconds: int) -> dict[str, Any]:
    """wrk's figures for ``clients`` connections over ``seconds``."""
    done = subprocess.run(
        ["wrk", "-t", "2", "-c", str(clients), "-d", f"{seconds}s", "-s", str(SCRIPT), url],
        env={**os.environ, "WRK_AUTHORIZATION": f"Token {token}"},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    figures: dict[str, Any] = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
    for name in ("requests", "non_2xx_3xx", "socket_errors"):
        figures[name] = int(figures[name])
    rate = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    figures["requests_per_s"] = float(rate.group(1)) if rate else None
    figures["clients"] = clients
    figures["seconds"] = seconds
    return figures


def stall(port: int, ca: str) -> list[socket.socket]:
    """Sockets that send half a request's headers and then nothing: 3 over TLS, 3 plain."""
    held = []
    tls = ssl.create_default_context(cafile=ca)
    for index in range(6):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock = tls.wrap_socket(raw, server_hostname="localhost") if index < 3 else raw
        sock.sendall(b"GET /api/patients/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        held.append(sock)
    return held


def behind_proxy(
    work: Path, name: str, command_for: Any, env: dict[str, str], run: Any
) -> dict[str, Any]:
    """``run(proxy)`` with gunicorn (``command_for(port)``) behind nginx."""
    port = free_port()
    command = command_for(port)
    server = start_gunicorn(
        port, work / f"gunicorn-{name}.log", command=command, TRACKER_BEHIND_TLS="true", **env
    )
    proxy = LocalProxy(work / f"proxy-{name}", port)
    try:
        proxy.start()
        result: dict[str, Any] = run(proxy)
    finally:
        proxy.stop()
        stop(server)
    result["gunicorn"] = " ".join(command[2:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=20)
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

    def load(proxy: LocalProxy) -> dict[str, Any]:
        return wrk(f"{proxy.url}{path}", seeded.token, args.clients, args.seconds)

    def load_with_stalled(proxy: LocalProxy) -> dict[str, Any]:
        held = stall(proxy.https_port, proxy.certificate)
        try:
            return {**load(proxy), "stalled_sockets": len(held)}
        finally:
            for sock in held:
                sock.close()

    def gthread(port: int) -> list[str]:
        return [
            *gunicorn_command(port)[:3],
            "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "3",
            "--worker-class", "gthread", "--threads", "4", "--timeout", "120",
        ]  # fmt: skip

    runs: dict[str, Any] = {
        "compose": behind_proxy(work, "compose", gunicorn_command, env, load),
        "compose_with_stalled_clients": behind_proxy(
            work, "stalled", gunicorn_command, env, load_with_stalled
        ),
        "proxy_gthread_3x4": behind_proxy(work, "gthread", gthread, env, load),
    }

    # Before issue 15: three sync workers answering clients directly.
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
        "--workers", "3", "--timeout", "120",
    ]  # fmt: skip
    server = start_gunicorn(port, work / "gunicorn-sync.log", command=command, **env)
    try:
        runs["sync_direct"] = wrk(
            f"http://127.0.0.1:{port}{path}", seeded.token, args.clients, args.seconds
        )
    finally:
        stop(server)
    runs["sync_direct"]["gunicorn"] = " ".join(command[2:])

    compose = runs["compose"]
    failures = compose["non_2xx_3xx"] + compose["socket_errors"]
    result = {
        "what": (
            f"GET timeline, {args.clients} keep-alive clients (wrk) on loopback for "
            f"{args.seconds} s each, SYNTHETIC records ({args.visits} analysed visits)"
        ),
        "environment": environment(wrk=_wrk_version()),
        "target_p95_ms": TARGET_P95_MS,
        "compose_meets_target": compose["p95_ms"] <= TARGET_P95_MS and failures == 0,
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))
    write_results(REPO / "bench" / "results" / "api_load.json", result)


def _wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0] if done.stdout + done.stderr else "?"


if __name__ == "__main__":
    main()
