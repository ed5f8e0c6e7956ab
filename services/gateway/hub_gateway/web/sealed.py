"""Short-lived state the browser carries for the hub, signed with the hub's key.

A sign-in flow waiting for its callback, a verified identity choosing its firm, a client's
signed-in tenant, a Connect link: each is sealed for one purpose and one lifetime, so a value
sealed for one use is refused for any other, and a tampered or expired one for all.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from fastapi import Request, Response

from hub_gateway.dependencies import GatewayState
from hub_gateway.web.cookies import read_cookie, set_cookie

_ALGORITHM = "HS256"


class SealRefused(ValueError):
    """Not sealed by this hub for this purpose, or too old."""

    def __init__(self, *, expired: bool) -> None:
        super().__init__("expired" if expired else "not valid")
        self.expired = expired


def seal(state: GatewayState, purpose: str, payload: dict[str, Any], lifetime_seconds: int) -> str:
    claims = {**payload, "purpose": purpose, "exp": int(time.time()) + lifetime_seconds}
    return jwt.encode(claims, state.settings.secret_key.get_secret_value(), algorithm=_ALGORITHM)


def open_seal(state: GatewayState, purpose: str, token: str | None) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token or "",
            state.settings.secret_key.get_secret_value(),
            algorithms=[_ALGORITHM],
            options={"require": ["exp", "purpose"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise SealRefused(expired=True) from error
    except jwt.PyJWTError as error:
        raise SealRefused(expired=False) from error
    if claims.get("purpose") != purpose:
        raise SealRefused(expired=False)
    return claims


def set_sealed_cookie(
    response: Response, state: GatewayState, name: str, payload: dict[str, Any], lifetime_seconds: int
) -> None:
    """HTTP-only and SameSite=Lax: scripts cannot read it and other sites cannot post with it."""
    set_cookie(response, state.settings, name, seal(state, name, payload, lifetime_seconds), lifetime_seconds)


def read_sealed_cookie(request: Request, state: GatewayState, name: str) -> dict[str, Any] | None:
    """The cookie's payload, or None when it is missing, tampered with or too old."""
    try:
        return open_seal(state, name, read_cookie(request, state.settings, name))
    except SealRefused:
        return None
