"""Schema fuzzing: schemathesis sends every operation of the gateway's OpenAPI document
generated requests, valid and not, as a signed-in accountant of its own firm, against the
real processes.

What must hold for every answer: no 5xx, a status the document declares for the operation,
and a body that matches the document's schema for it (errors included). The run is
deterministic and bounded (HUB_FUZZ_EXAMPLES per operation; `make fuzz` runs more).

The document comes from the app itself, so each operation is a test case of its own; the
requests go to the running gateway.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub_common.settings import Mode
from hub_gateway.app import create_app
from hub_gateway.settings import GatewaySettings
from tests.e2e.conftest import Hub

pytestmark = pytest.mark.e2e

FUZZER = "fuzz@fuzz-accounting.example"
EXAMPLES = int(os.environ.get("HUB_FUZZ_EXAMPLES", "25"))
# The live stream never ends by itself: it is tested in test_dashboard_api, not fuzzed.
NOT_FUZZED = frozenset({"GET /api/v1/live"})
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

SCHEMA = schemathesis.openapi.from_dict(create_app(GatewaySettings(_env_file=None, mode=Mode.DEV)).openapi())


def _labels() -> list[str]:
    labels = []
    for result in SCHEMA.get_all_operations():
        # An operation schemathesis cannot read is a broken document: fail loudly here.
        assert isinstance(result, Ok), result
        labels.append(result.ok().label)
    return sorted(label for label in labels if label not in NOT_FUZZED)


OPERATIONS = _labels()


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_answer_is_a_5xx_or_outside_the_document(hub: Hub, label: str) -> None:
    operation = SCHEMA.find_operation_by_label(label)
    assert operation is not None
    headers = {"Authorization": f"Bearer {hub.token(FUZZER)}"}

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def answer_conforms(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=hub.url, headers=headers, timeout=30, checks=CHECKS)

    answer_conforms()
