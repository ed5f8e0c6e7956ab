"""Input no person types but anyone can send, through the real hub: every answer is the
documented 4xx, never a 500 or a misleading 503. JSON that Python reads but strict JSON cannot
write back (lone surrogates, NaN, Infinity, 1e400); control characters, which PostgreSQL
refuses to store; two first saves of the preferences at once; bodies larger than any request,
declared or streamed, and bodies that are not JSON, sent by someone not signed in."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Hub

pytestmark = pytest.mark.e2e

EMAIL = "hostile.input@tailspin-accounting.example"
LOW_CASH = {"name": "Low cash", "figure": "cash", "comparison": "below", "threshold": 1}
CLIENT_URL = "https://businesscentral.dynamics.com/contoso.onmicrosoft.com/Production"


@pytest.fixture(scope="module")
def api(hub: Hub) -> httpx.Client:
    return hub.client(EMAIL)


def _raw(api: httpx.Client, method: str, path: str, body: str, **headers: str) -> httpx.Response:
    """``body`` sent exactly as written: json.dumps would never write these inputs."""
    return api.request(method, path, content=body.encode(), headers={"Content-Type": "application/json", **headers})


# Each route with a free-text field, given a lone surrogate; and the numbers strict JSON lacks.
UNENCODABLE_INPUTS = [
    ("POST", "/api/v1/tokens", r'{"name": "a\ud800b"}'),
    ("POST", "/api/v1/views", r'{"name": "a\ud800b", "query": {}}'),
    ("POST", "/api/v1/clients", r'{"name": "a\ud800b", "client_url": "' + CLIENT_URL + '"}'),
    ("POST", "/api/v1/alert-rules", r'{"name": "a\ud800b", "figure": "cash", "comparison": "below", "threshold": 1}'),
    ("POST", "/api/v1/accountants/invitations", r'{"email": "a\ud800b@tailspin-accounting.example", "role": 7}'),
    ("PUT", "/api/v1/refresh-schedule", r'{"every_minutes": 60, "time_zone": "a\ud800b", "days": 9}'),
    ("PUT", "/api/v1/preferences", r'{"locale": "a\ud800b"}'),
    ("POST", "/api/v1/connection-tests", r'{"client_url": "a\ud800b", "client_id": "x"}'),
    ("POST", "/api/v1/client-invitations", r'{"client_name": "a\ud800b"}'),
    ("POST", "/api/v1/alert-rules", '{"name": "x", "figure": "cash", "comparison": "below", "threshold": 1e400}'),
    ("PUT", "/api/v1/preferences", '{"page_size": NaN}'),
    ("PUT", "/api/v1/refresh-schedule", '{"every_minutes": Infinity}'),
    ("POST", "/api/v1/views", r'{"name": "v", "query": {"thresholds": [{"value": -Infinity}]}, "\ud800": 1}'),
]


@pytest.mark.parametrize(("method", "path", "body"), UNENCODABLE_INPUTS)
def test_a_422_can_always_echo_the_input_it_refuses(api: httpx.Client, method: str, path: str, body: str) -> None:
    answer = _raw(api, method, path, body)
    assert answer.status_code == 422, answer.text[:300]
    problems = answer.json()["detail"]
    assert problems and all("msg" in problem for problem in problems)


# Each body a person or script could misspell: the field the hub does not know is refused
# by name (it was ignored, so {"Role": "admin"} invited a colleague as staff).
MISSPELT_FIELDS = [
    ("POST", "/api/v1/accountants/invitations", {"email": "new@tailspin-accounting.example", "Role": "admin"}, "Role"),
    ("POST", "/api/v1/connection-tests", {"client_url": CLIENT_URL, "clientId": str(uuid.uuid4())}, "clientId"),
    ("PUT", "/api/v1/preferences", {"columns": ["cash"], "pageSize": 50}, "pageSize"),
    ("POST", "/api/v1/views", {"name": "Mine", "query": {}, "colums": ["cash"]}, "colums"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), MISSPELT_FIELDS)
def test_a_field_the_hub_does_not_know_is_refused_by_name(
    api: httpx.Client, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    answer = api.request(method, path, json=body)
    assert answer.status_code == 422, answer.text[:300]
    assert any(problem["loc"][-1] == field for problem in answer.json()["detail"]), answer.text[:300]


def test_a_422_shows_escaped_what_strict_json_cannot_carry(api: httpx.Client) -> None:
    surrogate = _raw(api, "POST", "/api/v1/tokens", r'{"name": "a\ud800b"}')
    assert [problem["input"] for problem in surrogate.json()["detail"]] == ["a\\ud800b"]
    infinite = _raw(api, "PUT", "/api/v1/refresh-schedule", '{"every_minutes": Infinity}')
    assert [problem["input"] for problem in infinite.json()["detail"]] == ["inf"]


def test_a_control_character_is_refused_in_the_callers_language(api: httpx.Client) -> None:
    german = api.post("/api/v1/tokens", json={"name": "a\0b"}, headers={"Accept-Language": "de"})
    assert german.status_code == 422, german.text[:300]
    assert german.headers["Content-Language"] == "de"
    (problem,) = german.json()["detail"]
    assert problem["msg"].endswith("darf keine Steuerzeichen enthalten"), problem


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/tokens", {"name": "a\0b"}),
        ("POST", "/api/v1/views", {"name": "a\0b", "query": {}}),
        ("POST", "/api/v1/views", {"name": "Text with NUL", "query": {"text": "a\0b"}}),
        ("POST", "/api/v1/alert-rules", {**LOW_CASH, "name": "a\0b"}),
        ("POST", "/api/v1/alert-rules", {**LOW_CASH, "name": "two\nlines"}),
        # The e2e registry accepts loopback webhooks: only the NUL is wrong here.
        ("POST", "/api/v1/alert-rules", {**LOW_CASH, "webhook_url": "http://127.0.0.1:9/a\0b"}),
    ],
)
def test_control_characters_are_refused_at_the_door(
    api: httpx.Client, method: str, path: str, body: dict[str, Any]
) -> None:
    answer = api.request(method, path, json=body)
    assert answer.status_code == 422, answer.text[:300]


def test_a_client_invitation_with_control_characters_is_refused_before_its_token_is_read(hub: Hub) -> None:
    invitation = {
        "accountant_email": "someone@tailspin-accounting.example",
        "accountant_name": "Someone",
        "environment": "Production",
        "companies": ["CRONUS"],
        "client_name": "Contoso",
        "welcome_text": "Welcome",
    }
    for field, value in (("client_name", "Con\0toso"), ("companies", ["CRO\0NUS"]), ("welcome_text", "Hi\0")):
        answer = httpx.post(f"{hub.url}/api/v1/client-invitations", json={**invitation, field: value})
        assert answer.status_code == 422, (field, answer.text[:300])
        assert answer.json()["detail"][0]["loc"][:2] == ["body", field]


def test_control_characters_in_the_dashboards_search_or_a_run_id_are_a_clear_422(api: httpx.Client) -> None:
    searched = api.get("/api/v1/dashboard", params={"text": "a\0b"})
    assert searched.status_code == 422, searched.text[:300]
    assert searched.json()["detail"]["field"] == "text"
    assert api.get("/api/v1/refresh-runs/a%00b").status_code == 422


@pytest.mark.parametrize("number", ["0e999999999999999999", "0E-99999999999"])
def test_a_zero_with_an_exponent_no_database_holds_is_a_clear_422(api: httpx.Client, number: str) -> None:
    # Its one digit passes "at most 28 digits"; PostgreSQL's numeric refuses it, so the
    # dashboard answered 500 on PostgreSQL, and a view saved with it failed at every use.
    filtered = api.get("/api/v1/dashboard", params={"threshold": f"cash:lt:{number}"})
    assert filtered.status_code == 422, filtered.text[:300]
    view = {"name": "Huge", "query": {"thresholds": [{"column": "cash", "comparison": "lt", "value": number}]}}
    assert api.post("/api/v1/views", json=view).status_code == 422
    # (As a JSON number it is read as the float 0.0, a threshold of 0.)
    assert api.post("/api/v1/alert-rules", json={**LOW_CASH, "threshold": number}).status_code == 422


def _saved_at_once(api: httpx.Client, page_sizes: list[int]) -> list[int]:
    """The status of each save, all sent at the same moment as from several tabs."""
    start = threading.Barrier(len(page_sizes))

    def save(page_size: int) -> int:
        start.wait()
        return api.put("/api/v1/preferences", json={"page_size": page_size}).status_code

    with ThreadPoolExecutor(len(page_sizes)) as tabs:
        return list(tabs.map(save, page_sizes))


def test_two_first_saves_of_the_preferences_at_once_both_succeed(hub: Hub) -> None:
    page_sizes = [25, 50, 100, 200]
    # A new accountant each round: only the very first save inserts their row.
    for _ in range(5):
        api = hub.client(f"two.tabs.{uuid.uuid4().hex[:8]}@tailspin-accounting.example")
        assert api.get("/api/v1/preferences").status_code == 200  # the accountant exists now
        assert _saved_at_once(api, page_sizes) == [200] * len(page_sizes)
        assert api.get("/api/v1/preferences").json()["page_size"] in page_sizes


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes streamed with no Content-Length (chunked), as a client that never says
    how much it will send."""
    yield b'{"name": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


@pytest.mark.parametrize("path", ["/api/v1/tokens", "/api/v1/client-invitations"])
def test_a_body_larger_than_any_request_is_refused_unread_even_by_strangers(hub: Hub, path: str) -> None:
    stranger = httpx.Client(base_url=hub.url, timeout=20)
    declared = stranger.post(path, content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    assert declared.status_code == 413, declared.text[:300]
    assert "KiB" in declared.json()["detail"]
    streamed = stranger.post(
        path, content=_chunks(2 * 1024 * 1024), headers={"Content-Type": "application/json", "Accept-Language": "de"}
    )
    assert streamed.status_code == 413, streamed.text[:300]
    assert streamed.headers["Content-Language"] == "de"
    # The refusal is an answer like any other: traceable, and with the security headers.
    for refusal in (declared, streamed):
        assert refusal.headers.get("X-Correlation-Id"), refusal.headers
        assert refusal.headers.get("X-Content-Type-Options") == "nosniff"
        assert refusal.headers.get("X-Frame-Options") == "DENY"
        assert "Content-Security-Policy" in refusal.headers


def test_the_largest_legitimate_bodies_are_read(api: httpx.Client, hub: Hub) -> None:
    # A client card with every field at its longest, in letters of three UTF-8 bytes.
    card = {"name": "名" * 250, "client_url": CLIENT_URL, "contact_name": "名" * 500, "notes": "名" * 4000}
    assert (
        api.post("/api/v1/clients", content=json.dumps(card), headers={"Content-Type": "application/json"}).status_code
        != 413
    )
    # A client's invitation naming 300 companies: read, and refused only for its missing token.
    invitation = {
        "accountant_email": "someone@tailspin-accounting.example",
        "accountant_name": "Someone",
        "environment": "Production",
        "companies": ["é" * 250] * 300,
        "client_name": "Contoso",
    }
    answer = httpx.post(f"{hub.url}/api/v1/client-invitations", json=invitation, timeout=20)
    assert answer.status_code == 401, answer.text[:300]


def test_a_stranger_sending_a_body_that_is_not_json_is_told_to_sign_in(hub: Hub, api: httpx.Client) -> None:
    stranger = _raw(httpx.Client(base_url=hub.url, timeout=20), "POST", "/api/v1/tokens", "{not json")
    assert stranger.status_code == 401, stranger.text[:300]
    assert _raw(api, "POST", "/api/v1/tokens", "{not json").status_code == 422
    # A route anyone may call still says what is wrong with the body.
    assert _raw(httpx.Client(base_url=hub.url), "POST", "/api/v1/client-invitations", "{not json").status_code == 422


def test_a_misspelt_refresh_field_refreshes_nothing(api: httpx.Client) -> None:
    """Without a client, a refresh is of every client: a field it does not know (a typo, an
    older client's name for it) must not widen it to the whole firm."""
    answer = api.post("/api/v1/refresh", json={"client_ids": [str(uuid.uuid4())]})
    assert answer.status_code == 422, answer.text[:300]
    assert answer.json()["detail"][0]["loc"] == ["body", "client_ids"]


def test_a_client_invitation_naming_bcs_own_pages_as_its_environment_is_refused(hub: Hub) -> None:
    """BC answers its admin center and sign-in page where an environment would be: a card of
    such a place is refused, so the invitation is refused before it can be accepted for nothing."""
    invitation = {
        "accountant_email": "someone@tailspin-accounting.example",
        "accountant_name": "Someone",
        "companies": ["CRONUS"],
        "client_name": "Contoso",
    }
    for environment in ("Admin", "SIGNIN"):
        answer = httpx.post(f"{hub.url}/api/v1/client-invitations", json={**invitation, "environment": environment})
        assert answer.status_code == 422, (environment, answer.text[:300])
        (problem,) = answer.json()["detail"]
        assert problem["loc"][:2] == ["body", "environment"] and "admin center" in problem["msg"], problem


def test_no_browser_or_proxy_keeps_a_firms_answers_and_the_scripts_stay_cacheable(hub: Hub, api: httpx.Client) -> None:
    """A firm's figures, clients and people are kept by no cache (a shared computer's back
    button, a caching proxy); the scripts, the same for everyone, keep their caching."""
    for path in ("/api/v1/dashboard", "/api/v1/clients", "/api/v1/me", "/api/v1/no-such-route"):
        assert api.get(path).headers.get("Cache-Control") == "no-store", path
    page = httpx.get(f"{hub.url}/sign-in")
    assert page.headers.get("Cache-Control") == "no-store"
    script = httpx.get(f"{hub.url}/static/common.js")
    assert script.status_code == 200 and script.headers.get("Cache-Control") != "no-store"
