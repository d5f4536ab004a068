"""schemathesis against the hub's OpenAPI document, over real HTTP on loopback: whatever it sends, no 5xx.

Every operation of the document is tried with a few generated requests (kept short, so the suite stays
fast), with the operator token of the configuration, against a seeded world of two tenants.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.console.world import bearer, served_world

pytestmark = pytest.mark.slow

EXAMPLES = 6


def test_no_operation_answers_a_server_error(tmp_path: Path) -> None:
    failures: list[str] = []
    tried: list[str] = []
    with served_world(tmp_path) as (_world, url):
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()
            tried.append(operation.label)

            @given(operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                response = case.call(headers=bearer(), timeout=30)
                if response.status_code == 503 and case.path.startswith("/health"):
                    return  # readiness says "not ready" by design: no worker runs beside this app
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path}: {response.status_code} "
                                    f"{response.text[:300]}")

            call()
    assert len(tried) >= 20 and "GET /api/v1/ops/messages" in tried
    assert not failures, "\n".join(failures)
