"""What the browser tests share: signing in through the sandbox's Entra, finding a row,
a consented sandbox tenant, and screenshots."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import Sandbox
from tests.e2e.conftest import SCREENSHOTS, Hub


def tenants(sandbox: Sandbox) -> list[dict[str, Any]]:
    tenants: list[dict[str, Any]] = (
        httpx.get(f"{sandbox.base_url}/_sandbox/tenants", verify=sandbox.tls()).raise_for_status().json()["tenants"]
    )
    return tenants


def consented_tenant(sandbox: Sandbox) -> dict[str, Any]:
    return next(t for t in tenants(sandbox) if t["consented"] and t["domain"] != "cronus-sample.onmicrosoft.com")


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


def row_of(page: Page, text: str) -> Any:
    return page.locator("#grid-body tr", has_text=text)
