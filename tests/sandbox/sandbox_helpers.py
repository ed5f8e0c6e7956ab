"""Shared constants and builders of the sandbox tests (imported by conftest and tests)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import msal

from hub_sandbox.server import RunningSandbox
from hub_sandbox.settings import SandboxSettings

CLIENT_ID = "3f1b6c2e-8d4a-4e8b-9c71-5a2d9e0f4b13"
CLIENT_SECRET = "sandbox-test-secret~value"
BC_SCOPE = "https://api.businesscentral.dynamics.com/.default"
# The test server's "today": fixed, so expected figures do not move with the calendar.
BUSINESS_DATE = dt.date(2026, 5, 20)


def sandbox_settings(state_dir: Path, **overrides: object) -> SandboxSettings:
    values: dict[str, object] = {
        "mode": "test",
        "sandbox_port": 0,
        "sandbox_state_dir": state_dir,
        "entra_client_id": CLIENT_ID,
        "entra_client_secret": CLIENT_SECRET,
        "sandbox_tenants": 3,
        "sandbox_companies_per_tenant": 2,
        "sandbox_seed": 2026,
        "sandbox_business_date": BUSINESS_DATE,
    }
    values.update(overrides)
    # _env_file=None: a developer's .env must not change what the tests see.
    return SandboxSettings(_env_file=None, **values)  # type: ignore[arg-type]


def msal_app(
    sandbox_server: RunningSandbox,
    tenant: str,
    http_client: httpx.Client,
    *,
    client_id: str = CLIENT_ID,
    secret: str = CLIENT_SECRET,
) -> msal.ConfidentialClientApplication:
    """Exactly how the fetcher builds its app: an httpx client that trusts the sandbox CA
    (REQUESTS_CA_BUNDLE would override msal's own verify=) and no instance discovery."""
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=sandbox_server.authority(tenant),
        http_client=http_client,
        instance_discovery=False,
    )
