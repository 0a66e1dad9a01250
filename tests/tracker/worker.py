"""A real Celery worker process for the end-to-end test and the service benchmark."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start_worker(
    env: Mapping[str, str], log_path: Path, *, code: Path = REPO
) -> subprocess.Popen[bytes]:
    """One worker consuming every queue (``--pool=solo``: the embedded default's shape),
    logging to ``log_path``, running the project checked out at ``code`` (a benchmark's
    baseline worktree; this checkout by default). The caller terminates it."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                "gpu,cpu,default",
                "--pool=solo",
                "--without-mingle",
                "--without-gossip",
                "--loglevel=INFO",
            ],
            cwd=code,
            env={
                **env,
                "PYTHONUNBUFFERED": "1",
                **({} if code == REPO else {"PYTHONPATH": str(code)}),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
