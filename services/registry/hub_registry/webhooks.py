"""Alert webhooks: which URLs the hub will POST to, the signature, and one POST.

A webhook URL is user input, so the hub refuses server-side request forgery: only ``https``,
no credentials in the URL, and a host whose every address is public (no loopback, private,
link-local, cloud metadata, shared, multicast or reserved address). The check runs when the
rule is saved and again before every POST, and the POST goes to the address just checked
(the host name still sent for TLS and in ``Host``), so a DNS answer that changes in between
cannot point it inside. ``HUB_ALERT_WEBHOOK_ALLOW_LOOPBACK`` lets loopback through (plain
http too), for tests and ``hub up``.

The signature: ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``
with ``X-Hub-Timestamp: <unix seconds>``; a receiver recomputes it over the raw body and
refuses stale timestamps (replays). ``Idempotency-Key`` is the AlertRaised event's id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from hub_common.i18n import N_

SIGNATURE_HEADER = "X-Hub-Signature"
TIMESTAMP_HEADER = "X-Hub-Timestamp"
EVENT_HEADER = "X-Hub-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def new_secret() -> str:
    """A rule's signing secret: 32 random bytes, shown once to its owner."""
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class UnsafeWebhook(ValueError):
    """A URL the hub will not POST to; ``message`` is a catalogue message with ``values``."""

    def __init__(self, message: str, **values: str) -> None:
        super().__init__(message % values if values else message)
        self.message = message
        self.values = values


@dataclass(frozen=True)
class Target:
    """Where a checked URL is POSTed: its parts and the addresses its host resolved to
    (every one checked), tried in the resolver's order."""

    url: SplitResult
    host: str
    addresses: tuple[str, ...]


def _parse(url: str, *, allow_loopback: bool) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as error:
        raise UnsafeWebhook(N_("the webhook URL cannot be read")) from error
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeWebhook(N_("a webhook URL starts with https:// and names a host"))
    if parts.scheme == "http" and not allow_loopback:
        raise UnsafeWebhook(N_("a webhook URL starts with https://"))
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhook(N_("a webhook URL carries no user name or password"))
    return parts


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if allow_loopback else N_("a webhook may not point at this machine (%(address)s)")
    if not address.is_global or address.is_multicast:
        # Private, link-local (cloud metadata at 169.254.169.254), shared, reserved ...
        return N_("a webhook may not point at a private or reserved address (%(address)s)")
    return None


async def resolve_target(url: str, *, allow_loopback: bool) -> Target:
    """The URL checked, and the one address its POST goes to; UnsafeWebhook otherwise."""
    parts = _parse(url, allow_loopback=allow_loopback)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host)
        addresses = [literal]
    except ValueError:
        try:
            answers = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise UnsafeWebhook(N_("the webhook's host %(host)s is not found"), host=host) from error
        addresses = [ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers]
    if not addresses:
        raise UnsafeWebhook(N_("the webhook's host %(host)s is not found"), host=host)
    for address in addresses:
        refusal = _refusal(address, allow_loopback=allow_loopback)
        if refusal is not None:
            raise UnsafeWebhook(refusal, address=str(address))
    if parts.scheme == "http" and not all(address.is_loopback for address in addresses):
        raise UnsafeWebhook(N_("a webhook URL starts with https://"))
    return Target(url=parts, host=host, addresses=tuple(dict.fromkeys(str(address) for address in addresses)))


class Outcome(StrEnum):
    DELIVERED = "delivered"
    # Worth another try later: 5xx, 408, 425, 429, no answer.
    TRANSIENT = "transient"
    # Trying again will not help: another 4xx, a redirect, a URL no longer allowed.
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    # What happened, for the delivery's record and the logs (never the secret or the body).
    detail: str


TRANSIENT_STATUSES = frozenset({408, 425, 429})


async def post(
    http: httpx.AsyncClient,
    url: str,
    *,
    body: bytes,
    secret: str,
    event_id: str,
    event_type: str,
    timestamp: int,
    allow_loopback: bool,
    timeout_seconds: float,
) -> Attempt:
    """One signed POST; redirects are not followed (a redirect could lead anywhere)."""
    try:
        target = await resolve_target(url, allow_loopback=allow_loopback)
    except UnsafeWebhook as error:
        return Attempt(Outcome.PERMANENT, f"refused: {error}")
    headers = {
        "Host": target.url.netloc,
        "Content-Type": "application/json",
        "User-Agent": "AccountantHub-Webhook/1",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        EVENT_HEADER: event_type,
        IDEMPOTENCY_HEADER: event_id,
    }
    failure = "no address"
    for address in target.addresses:
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{target.url.port}" if target.url.port else literal
        pinned = urlunsplit((target.url.scheme, netloc, target.url.path or "/", target.url.query, ""))
        try:
            async with http.stream(
                "POST",
                pinned,
                content=body,
                headers=headers,
                timeout=timeout_seconds,
                follow_redirects=False,
                extensions={"sni_hostname": target.host},
            ) as answer:
                status = answer.status_code
        except httpx.ConnectError as error:
            failure = f"{type(error).__name__}: {error}"[:500]
            continue  # the host's next address, as any client does
        except httpx.HTTPError as error:
            return Attempt(Outcome.TRANSIENT, f"{type(error).__name__}: {error}"[:500])
        if 200 <= status < 300:
            return Attempt(Outcome.DELIVERED, f"HTTP {status}")
        if status >= 500 or status in TRANSIENT_STATUSES:
            return Attempt(Outcome.TRANSIENT, f"HTTP {status}")
        return Attempt(Outcome.PERMANENT, f"HTTP {status}")
    return Attempt(Outcome.TRANSIENT, failure)
