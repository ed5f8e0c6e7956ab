"""Schema fuzzing: schemathesis sends every operation of /openapi.json generated requests,
valid and not, as a signed-in accountant of its own firm, against the real processes.

What must hold for every answer: no 5xx, a status the document declares for the operation,
and a body that matches the document's schema for it (errors included). The run is
deterministic and bounded (HUB_FUZZ_EXAMPLES per operation; `make fuzz` runs more).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Hub

pytestmark = pytest.mark.e2e

FUZZER = "fuzz@fuzz-accounting.example"
EXAMPLES = int(os.environ.get("HUB_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def gateway_schema(hub: Hub) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{hub.url}/openapi.json")
    # The live stream never ends by itself: it is fuzzed nowhere, tested in test_dashboard_api.
    return schema.exclude(path="/api/v1/live")


schema = schemathesis.pytest.from_fixture("gateway_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_answer_is_a_5xx_or_outside_the_document(case: schemathesis.Case[Any], hub: Hub) -> None:
    case.call_and_validate(
        base_url=hub.url,
        headers={"Authorization": f"Bearer {hub.token(FUZZER)}"},
        timeout=30,
        checks=[
            schemathesis.checks.not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
