"""The firm choice of a sign-in waits in a sealed cookie. Outside dev mode it carries the
Entra identity of the sign-in; one naming an address alone was sealed by someone holding the
hub's key (another service's pod), not by a sign-in, and signed anyone in as that address."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydantic import SecretStr
from starlette.requests import Request

from hub_common.settings import Mode
from hub_gateway.dependencies import GatewayState
from hub_gateway.settings import GatewaySettings
from hub_gateway.web import pages
from hub_gateway.web.sealed import seal

KEY = SecretStr("a-test-key-that-is-long-and-random-enough-0123456789")


def _state(mode: Mode) -> GatewayState:
    return cast(GatewayState, SimpleNamespace(settings=GatewaySettings(_env_file=None, mode=mode, secret_key=KEY)))


def _request(state: GatewayState, payload: dict[str, Any]) -> Request:
    cookie = f"{pages.CHOICE_COOKIE}={seal(state, pages.CHOICE_COOKIE, payload, 600)}"
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", cookie.encode())]})


ADDRESS_ONLY = {"email": "owner@victim-firm.example", "name": "Owner", "next": "/"}
SIGNED_IN = {**ADDRESS_ONLY, "tid": str(uuid.uuid4()), "oid": str(uuid.uuid4())}


@pytest.mark.parametrize("mode", [Mode.PRODUCTION, Mode.TEST])
def test_a_choice_without_an_entra_identity_signs_nobody_in_outside_dev_mode(mode: Mode) -> None:
    state = _state(mode)
    assert pages._pending_choice(_request(state, ADDRESS_ONLY), state) is None
    pending = pages._pending_choice(_request(state, SIGNED_IN), state)
    assert pending is not None and {key: pending[key] for key in SIGNED_IN} == SIGNED_IN


def test_dev_mode_signs_in_by_address() -> None:
    state = _state(Mode.DEV)
    pending = pages._pending_choice(_request(state, ADDRESS_ONLY), state)
    assert pending is not None and pending["email"] == ADDRESS_ONLY["email"]
