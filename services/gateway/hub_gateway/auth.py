"""Who is calling: the authenticated principal, from which the firm is taken.

Until real sign-in lands, dev mode accepts a signed dev bearer token (``hub dev-token
EMAIL``). Outside dev mode the same token is refused.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from hub_common.settings import HubSettings, Mode

DEV_TOKEN_AUDIENCE = "accountant-hub-dev"  # noqa: S105 - an audience name, not a secret
DEV_TOKEN_LIFETIME_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Principal:
    accountant_id: uuid.UUID
    firm_id: uuid.UUID
    email: str
    display_name: str
    role: str


class NotAuthenticated(Exception):
    pass


def issue_dev_token(settings: HubSettings, email: str, display_name: str | None = None) -> str:
    now = int(time.time())
    claims = {
        "sub": email.strip().lower(),
        "name": display_name or email.split("@")[0],
        "aud": DEV_TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + DEV_TOKEN_LIFETIME_SECONDS,
    }
    return jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm="HS256")


def read_dev_token(settings: HubSettings, token: str) -> tuple[str, str]:
    """The email and display name a dev token names; refused outside dev mode."""
    if settings.mode is not Mode.DEV:
        raise NotAuthenticated("dev tokens are refused outside dev mode (HUB_MODE=dev)")
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=["HS256"],
            audience=DEV_TOKEN_AUDIENCE,
            options={"require": ["sub", "exp", "aud"]},
        )
    except jwt.PyJWTError as error:
        raise NotAuthenticated(f"invalid token: {error}") from error
    email = claims.get("sub")
    name = claims.get("name")
    if not isinstance(email, str) or not email:
        raise NotAuthenticated("invalid token: no subject")
    return email, name if isinstance(name, str) and name else email
