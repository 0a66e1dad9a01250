"""schemathesis over the API's own OpenAPI schema, in three passes (see ``PASSES``), with the
settings in bench/schemathesis.toml. Used by tests/tracker/test_api_fuzz.py (few examples) and
bench/bench_api_fuzz.py (many)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.tracker.served import Seeded

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "bench" / "schemathesis.toml"
REVOKE = r"^/api/token/revoke"
# Three passes: the operations on records the caller does not have (random codes), the same on
# the caller's own patient and visit, then token revocation with a token of its own (run with
# the others it revokes the token they run with).
PASSES: dict[str, list[str]] = {
    "unknown_records": ["--exclude-path-regex", REVOKE],
    "own_records": ["--include-path-regex", r"\{code\}"],
    "revocation": ["--include-path-regex", REVOKE],
}


def pass_config(folder: Path, seeded: Seeded, name: str) -> Path:
    """The committed settings, plus the seeded records' codes for the "own_records" pass."""
    text = CONFIG.read_text(encoding="utf-8")
    if name == "own_records":
        text += f"""
[[operations]]
include-path-regex = '^/api/patients/\\{{code\\}}'
parameters = {{ code = "{seeded.patient_code}" }}

[[operations]]
include-path-regex = '^/api/visits/\\{{code\\}}'
parameters = {{ code = "{seeded.visit_code}" }}
"""
    path = folder / f"schemathesis-{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def fuzz(
    base: str,
    token: str,
    out: Path,
    config: Path,
    selection: list[str],
    *,
    max_examples: int,
    seed_value: int,
) -> dict[str, Any]:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    out.mkdir(parents=True, exist_ok=True)
    command = [
        str(schemathesis),
        "--config-file",
        str(config),
        "run",
        *selection,
        f"{base}/api/schema/?format=json",
        "--url",
        base,
        "--checks",
        "all",
        "--header",
        f"Authorization: Token {token}",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed_value),
        "--workers",
        "1",
        # Our token on every request, not made-up credentials in its place.
        "--generation-with-security-parameters",
        "false",
        "--generation-database",
        "none",
        "--report",
        "ndjson",
        "--report-dir",
        str(out),
        "--report-json-path",
        str(out / "report.json"),
        "--no-color",
        "--output-sanitize",
        "true",
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        capture_output=True,
        encoding="utf-8",  # its report has box-drawing characters, whatever the locale
        errors="replace",
        env={**os.environ, "PYTHONUTF8": "1"},
        check=False,
    )
    seconds = time.perf_counter() - started
    (out / "schemathesis.txt").write_text(done.stdout + done.stderr, encoding="utf-8")
    return {"exit_code": done.returncode, "seconds": round(seconds, 1), "output": done.stdout}


def summarise(out: Path, text: str) -> dict[str, Any]:
    """Operations, cases, responses by status and failed checks (schemathesis' codes) of one
    pass, from its event stream and its summary."""
    statuses: dict[str, int] = {}
    operations: set[str] = set()
    for path in out.glob("*.ndjson"):
        for line in path.read_text(encoding="utf-8").splitlines():
            finished = json.loads(line).get("ScenarioFinished")
            if not finished:
                continue
            recorder = finished.get("recorder", {})
            if recorder.get("label", "").startswith(("GET ", "POST ", "PATCH ", "DELETE ")):
                operations.add(recorder["label"])
            for interaction in recorder.get("interactions", {}).values():
                status = str((interaction.get("response") or {}).get("status_code", "none"))
                statuses[status] = statuses.get(status, 0) + 1
    failures = dict(
        re.findall(r"❌ (ST\d+ [^:\n]+): (\d+)", text.rsplit("Failures:", maxsplit=1)[-1])
    )
    generated = re.search(r"(\d+) generated", text)
    return {
        "operations": len(operations),
        "cases_generated": int(generated.group(1)) if generated else None,
        "responses_by_status": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if s.startswith("5")),
        "failed_checks": {k: int(v) for k, v in failures.items()} if "Failures:" in text else {},
    }


def fuzz_all(
    base: str, seeded: Seeded, revoking_token: str, folder: Path, **options: Any
) -> dict[str, dict[str, Any]]:
    """Every pass against ``base``; the revocation pass with a token of its own, last."""
    passes = {}
    for name, selection in PASSES.items():
        token = revoking_token if name == "revocation" else seeded.token
        out = folder / name
        run = fuzz(base, token, out, pass_config(folder, seeded, name), selection, **options)
        output = run.pop("output")
        passes[name] = {**run, **summarise(out, output), "output_tail": output[-3000:]}
    return passes
