"""schemathesis over the whole OpenAPI schema with ``--checks all`` (issue 15): no server error,
no response outside the schema, no schema-valid request refused (beyond the rules listed with
their reasons in bench/schemathesis.toml), no invalid one accepted. A few examples per operation
here against the live test server; bench/bench_api_fuzz.py runs many against gunicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from knox.models import AuthToken

from tests.tracker.fuzz import fuzz_all
from tests.tracker.served import seed

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_the_api_keeps_to_its_schema_under_fuzzing(live_server: Any, tmp_path: Path) -> None:
    seeded = seed(visits=2)
    revoking = AuthToken.objects.create(user=AuthToken.objects.get().user)[1]
    passes = fuzz_all(live_server.url, seeded, revoking, tmp_path, max_examples=5, seed_value=15)
    for name, result in passes.items():
        assert result["exit_code"] == 0, f"{name}:\n{result['output_tail']}"
        assert result["server_errors"] == 0, name
        assert result["failed_checks"] == {}, name
    assert passes["unknown_records"]["operations"] >= 12  # every operation but revocation
    assert passes["own_records"]["responses_by_status"].get("200", 0) > 0  # reached the records
