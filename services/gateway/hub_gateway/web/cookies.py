"""The hub's cookies: HTTP-only and SameSite=Lax; behind HTTPS also Secure and named with
the ``__Host-`` prefix.

A browser keeps a ``__Host-`` cookie only when this very host set it over HTTPS, for every
path and without a Domain. So a page of a sibling or parent domain (another service under
the same registrable domain, a taken-over subdomain) cannot plant or overwrite the hub's
session: for example to sign a victim into the attacker's own session, where what the
victim then saves is the attacker's to read. Plain HTTP (``make run`` on loopback) keeps
the names as they are, since browsers refuse the prefix there.
"""

from __future__ import annotations

from fastapi import Request, Response

from hub_gateway.settings import GatewaySettings

HOST_PREFIX = "__Host-"


def secure(settings: GatewaySettings) -> bool:
    return settings.public_url.startswith("https://")


def cookie_name(settings: GatewaySettings, name: str) -> str:
    return f"{HOST_PREFIX}{name}" if secure(settings) else name


def set_cookie(response: Response, settings: GatewaySettings, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        cookie_name(settings, name),
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure(settings),
    )


def delete_cookie(response: Response, settings: GatewaySettings, name: str) -> None:
    # With the attributes it was set with: a browser ignores a __Host- cookie's deletion
    # that is not Secure.
    response.delete_cookie(
        cookie_name(settings, name), path="/", httponly=True, samesite="lax", secure=secure(settings)
    )


def read_cookie(request: Request, settings: GatewaySettings, name: str) -> str | None:
    """The cookie's value under the name this hub gives it; one under the bare name behind
    HTTPS is not the hub's (a domain-wide cookie planted beside it) and is not read."""
    return request.cookies.get(cookie_name(settings, name))
