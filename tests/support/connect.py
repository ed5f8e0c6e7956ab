"""Connect, the client's side of granting a firm access, driven the way a browser does it.

Tests that need a client's figures go through it: a card added by hand waits for the
client's permission until someone of the client's tenant signs in and allows the firm.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from tests.conftest import Sandbox


def client_admin(tenant_domain: str) -> str:
    """An account of the client's own tenant that uses its Business Central."""
    return f"admin@{tenant_domain}"


def tenant_domain_of(client_url: str) -> str:
    """The tenant segment of a sandbox web-client Client URL (…/bc/{tenant}/{environment})."""
    path = urlsplit(client_url).path.split("/")
    return path[path.index("bc") + 1] if "bc" in path else path[1]


def connect(sandbox: Sandbox, api: httpx.Client, client_id: str, signing_in: str) -> httpx.Response:
    """The client's side of Connect, as a browser does it: open the link the firm sent,
    sign in at the client's tenant in the sandbox's Entra, come back to the hub."""
    link = api.post(f"/api/v1/clients/{client_id}/connect-link")
    assert link.status_code == 200, link.text
    browser = httpx.Client(verify=sandbox.tls(), timeout=30)
    url = link.json()["url"]
    assert browser.get(url).status_code == 200
    to_entra = browser.post(url)
    assert to_entra.status_code == 303, to_entra.text
    page = browser.get(to_entra.headers["location"])
    assert page.status_code == 200, page.text[:500]
    form = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    form["login"] = signing_in
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action, page.text[:500]
    back = browser.post(f"{sandbox.base_url}{action.group(1)}", data=form)
    assert back.status_code in (302, 303), back.text[:500]
    return browser.get(back.headers["location"])


def _waiting_for_permission(api: httpx.Client, client_id: str) -> bool:
    clients = api.get("/api/v1/clients").raise_for_status().json()["clients"]
    mine = next((client for client in clients if client["client_id"] == client_id), None)
    return bool(mine and (mine.get("failure") or {}).get("kind") == "access_not_granted")


def add_connected_client(
    sandbox: Sandbox, api: httpx.Client, card: dict[str, Any], *, signing_in: str | None = None
) -> str:
    """A client added by hand whose tenant then grants the firm access through Connect,
    by its administrator unless someone else of the tenant is named."""
    added = api.post("/api/v1/clients", json=card)
    assert added.status_code == 202, added.text
    client_id = str(added.json()["client_id"])
    if added.json().get("access_granted"):
        return client_id
    # Connect once the card's own first read has been refused: a read still on its way
    # would otherwise race the one the grant starts, and tests count outcomes per refresh.
    deadline = time.monotonic() + 60
    while not _waiting_for_permission(api, client_id):
        assert time.monotonic() < deadline, "the card's first read never ended as waiting for permission"
        time.sleep(0.2)
    granted = connect(sandbox, api, client_id, signing_in or client_admin(tenant_domain_of(card["client_url"])))
    assert granted.status_code == 200 and "can now read" in granted.text, granted.text[:800]
    return client_id


def client_access_page(hub_url: str, sandbox: Sandbox, signing_in: str) -> tuple[httpx.Client, httpx.Response]:
    """The client's person signs in on the hub's client-access page, as a browser does."""
    browser = httpx.Client(base_url=hub_url, verify=sandbox.tls(), timeout=30)
    to_entra = browser.post("/client-access/sign-in")
    assert to_entra.status_code == 303, to_entra.text
    page = browser.get(to_entra.headers["location"])
    form = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
    form["login"] = signing_in
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    assert action, page.text[:500]
    back = browser.post(f"{sandbox.base_url}{action.group(1)}", data=form)
    assert back.status_code in (302, 303), back.text[:500]
    landed = browser.get(back.headers["location"])
    assert landed.status_code == 303, landed.text[:500]
    return browser, browser.get("/client-access")
