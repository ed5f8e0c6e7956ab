"""A first sign-in as a browser does it (the dev form), and choosing a firm when colleague
invitations are waiting: nobody joins a firm without choosing it."""

from __future__ import annotations

import httpx


def first_sign_in(hub_url: str, email: str) -> httpx.Client:
    """A browser's first sign-in (dev form); it lands wherever the hub sends it next."""
    browser = httpx.Client(base_url=hub_url, timeout=20, follow_redirects=True)
    browser.post("/sign-in", data={"email": email, "next": "/"})
    return browser


def choose_firm(browser: httpx.Client, choice: str) -> httpx.Response:
    return browser.post("/sign-in/choose-firm", data={"choice": choice})


def join_firm(hub_url: str, email: str, firm_id: str) -> None:
    """An invited address signs in for the first time and chooses the inviting firm."""
    browser = first_sign_in(hub_url, email)
    page = browser.get("/sign-in/choose-firm")
    assert page.status_code == 200 and firm_id in page.text, page.text
    assert choose_firm(browser, firm_id).status_code == 200
