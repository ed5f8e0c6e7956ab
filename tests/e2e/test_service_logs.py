"""Every service writes its log as JSON lines outside dev mode, FastStream's lines included,
and none writes a line per message it handles at INFO."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox
from tests.e2e.conftest import Hub
from tests.support.connect import add_connected_client

pytestmark = pytest.mark.e2e


def test_every_service_logs_json_and_no_line_per_message(hub: Hub, sandbox: Sandbox) -> None:
    tenants = httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).json()["tenants"]
    tenant = next(t for t in tenants if t["consented"] and t["domain"] != "cronus-sample.onmicrosoft.com")
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    api = hub.client("logs@json-lines.example")
    # A client added, granted and read: the registry, the fetcher, the invitations service
    # and the gateway each handle messages through FastStream on the way.
    client_id = add_connected_client(sandbox, api, {"name": "Logged client", "client_url": production["client_url"]})
    company_ids = {company["id"] for company in production["companies"]}
    deadline = time.monotonic() + 90
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = api.get("/api/v1/dashboard", params={"client_id": client_id}).raise_for_status().json()["rows"]
        if {row["company_id"] for row in rows if row["state"] == "ok"} >= company_ids:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"the client's companies were never read: {rows}\n{hub.logs()}")

    for process in hub.processes:
        lines = [line for line in process.log().splitlines() if line.strip()]
        assert lines, f"{process.name} wrote nothing"
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise AssertionError(f"{process.name} wrote a line that is not JSON: {line[:300]!r}") from None
            assert isinstance(record, dict) and "event" in record and "level" in record, line[:300]
            assert not (record["event"] in {"Received", "Processed"} and record["level"] == "info"), line[:300]
