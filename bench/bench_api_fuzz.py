"""The API fuzzed against its own OpenAPI schema (issue 15): schemathesis over every operation
with ``--checks all``, as a client with a token of a care team, against gunicorn with the compose
settings and the benchmark's own PostgreSQL database (seeded with SYNTHETIC records). Three
passes (tests/tracker/fuzz.py): records the caller does not have, the caller's own patient and
visit, token revocation. Target: 0 server errors and 0 failed checks.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tracker_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/14 \\
    .venv/bin/python bench/bench_api_fuzz.py [--max-examples 100] [--seed 15]

Writes bench/results/api_fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from common import REPO, environment, setup_django_bench, write_results

sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from tests.tracker.fuzz import fuzz_all
from tests.tracker.proxy import free_port
from tests.tracker.served import seed, start_gunicorn, stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()

    work = setup_django_bench("api-fuzz-")
    seeded = seed(visits=4)
    from knox.models import AuthToken

    revoking_token = AuthToken.objects.create(user=AuthToken.objects.get().user)[1]
    port = free_port()
    server = start_gunicorn(
        port,
        work / "gunicorn.log",
        MEDIA_ROOT=str(work / "media"),
        TRACKER_VAR_DIR=str(work / "var"),
        SECRET_KEY="bench-" + "x" * 40,
        # Every operation, however often it is called: no throttle (the lockout stays on).
        TRACKER_TOKEN_RATE="100000/minute",
    )
    try:
        passes = fuzz_all(
            f"http://127.0.0.1:{port}",
            seeded,
            revoking_token,
            work,
            max_examples=args.max_examples,
            seed_value=args.seed,
        )
    finally:
        stop(server)
    for name, result in passes.items():
        print(f"--- {name}")
        print("\n".join(result.pop("output_tail").strip().splitlines()[-14:]))
    result = {
        "what": "schemathesis --checks all over the whole OpenAPI schema (SYNTHETIC records)",
        "environment": environment(schemathesis_max_examples=args.max_examples, seed=args.seed),
        "server_errors": sum(p["server_errors"] for p in passes.values()),
        "failed_checks": sum(sum(p["failed_checks"].values()) for p in passes.values()),
        "server_log_tracebacks": (work / "gunicorn.log").read_text().count("Traceback"),
        "passes": passes,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))
    write_results(REPO / "bench" / "results" / "api_fuzz.json", result)


if __name__ == "__main__":
    main()
