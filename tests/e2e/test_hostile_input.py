"""Input no person types but anyone can send, through the real hub: every answer is the
documented 4xx, never a 500 or a misleading 503. JSON that Python reads but strict JSON cannot
write back (lone surrogates, NaN, Infinity, 1e400); control characters, which PostgreSQL
refuses to store; two first saves of the preferences at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Hub

pytestmark = pytest.mark.e2e

EMAIL = "hostile.input@tailspin-accounting.example"


@pytest.fixture(scope="module")
def api(hub: Hub) -> httpx.Client:
    return hub.client(EMAIL)


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
        ("POST", "/api/v1/alert-rules", {"name": "a\0b", "figure": "cash", "comparison": "below", "threshold": 1}),
        (
            "POST",
            "/api/v1/alert-rules",
            {"name": "two\nlines", "figure": "cash", "comparison": "below", "threshold": 1},
        ),
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
