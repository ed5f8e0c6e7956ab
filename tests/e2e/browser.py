"""What the browser tests share: signing in through the sandbox's Entra, finding a row,
a consented sandbox tenant connected as a client, and screenshots."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import Sandbox
from tests.e2e.conftest import SCREENSHOTS, Hub
from tests.support.connect import add_connected_client


def tenants(sandbox: Sandbox) -> list[dict[str, Any]]:
    tenants: list[dict[str, Any]] = (
        httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).raise_for_status().json()["tenants"]
    )
    return tenants


def consented_tenant(sandbox: Sandbox) -> dict[str, Any]:
    return next(t for t in tenants(sandbox) if t["consented"] and t["domain"] != "cronus-sample.onmicrosoft.com")


@dataclass(frozen=True)
class ConnectedTenant:
    """The consented sandbox tenant's Production, on a firm's dashboard as a connected client."""

    tenant: dict[str, Any]
    production: dict[str, Any]
    client_id: str
    # Its companies as the dashboard names them, sorted.
    company_names: list[str]


def connect_consented_tenant(sandbox: Sandbox, api: httpx.Client, name: str | None = None) -> ConnectedTenant:
    """Add the consented tenant's Production as a client (named after the tenant unless
    ``name`` is given), and let the tenant's admin allow the firm."""
    tenant = consented_tenant(sandbox)
    production = next(e for e in tenant["environments"] if e["name"] == "Production")
    client = {"name": name or tenant["display_name"], "client_url": production["client_url"]}
    client_id = add_connected_client(sandbox, api, client)
    names = sorted(c["display_name"] or c["name"] for c in production["companies"])
    return ConnectedTenant(tenant=tenant, production=production, client_id=client_id, company_names=names)


def expect_rows_ok(page: Page, names: list[str], timeout_ms: float = 60_000) -> None:
    """Wait until the open dashboard shows each company's row read."""
    for name in names:
        expect(row_of(page, name).locator(".state")).to_have_text("OK", timeout=timeout_ms)


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png")


def sign_in(page: Page, hub: Hub, email: str) -> None:
    page.goto(f"{hub.url}/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_role("link", name="Sign in with Microsoft").click()
    page.get_by_label("Email address").fill(email)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("table", name="Client companies")).to_be_visible()
    expect(page.locator("header .who")).to_have_text(email)
    # The page shows before its script has run (a loaded machine may fetch it late): a click
    # on a menu then does nothing, where a person would click again.
    page.wait_for_function("() => typeof Hub !== 'undefined'")


def row_of(page: Page, text: str) -> Any:
    return page.locator("#grid-body tr", has_text=text)


@contextmanager
def page_in_time_zone(page: Page, time_zone: str) -> Iterator[Page]:
    """A page of its own browser context whose clock is in ``time_zone`` (as an accountant
    there sees the hub), closed afterwards."""
    assert page.context.browser is not None
    context = page.context.browser.new_context(ignore_https_errors=True, timezone_id=time_zone)
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()
