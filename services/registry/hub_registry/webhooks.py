"""Alert webhooks: which URLs the hub will POST to, the signature, and one POST.

A webhook URL is user input, so the hub refuses server-side request forgery: only ``https``,
no credentials in the URL, and a host whose every address is public (no loopback, private,
link-local, cloud metadata, cloud platform (Azure's WireServer), shared, multicast or
reserved address, nor one wrapped in an IPv6 address that leads to such an IPv4 one). The
check runs when the rule is saved and again before every POST, and the POST goes to the
address just checked (the host name still sent for TLS and in ``Host``), so a DNS answer
that changes in between cannot point it inside. A host that is not found, private or this machine gets one answer.
``HUB_ALERT_WEBHOOK_ALLOW_LOOPBACK`` lets loopback through (plain http too), for tests and
``hub up``.

The signature: ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``
with ``X-Hub-Timestamp: <unix seconds>``; a receiver recomputes it over the raw body and
refuses stale timestamps (replays). ``Idempotency-Key`` is the AlertRaised event's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from hub_common.i18n import N_
from hub_common.retry_after import parse_retry_after

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
    # The host as DNS and TLS know it: an internationalized name in its ASCII (IDNA) form.
    host: str
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        return _authority(self.host, self.url.port or None)


def _authority(host: str, port: int | None) -> str:
    """``host[:port]``, an IPv6 literal in its brackets."""
    literal = f"[{host}]" if ":" in host else host
    return f"{literal}:{port}" if port is not None else literal


def origin(url: str) -> str:
    """Where a webhook URL points, ``scheme://host[:port]``: what may be written where the
    whole URL may not (an audit stream that is never purged), since its path and query
    often carry the receiver's bearer token (Slack, Teams, Zapier) and its user part a
    password. Lenient: a URL saved before a rule it breaks still gets its origin."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{_authority(parts.hostname or '', port)}"


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


def _ascii_host(hostname: str) -> str:
    """An internationalized host name as DNS, TLS and the Host header carry it (IDNA)."""
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise UnsafeWebhook(N_("the webhook URL cannot be read")) from error


# IPv6 prefixes that carry an IPv4 address a gateway forwards to: NAT64 (RFC 6052, RFC
# 8215). Python counts them as global, but behind a NAT64 gateway 64:ff9b::a9fe:a9fe is the
# cloud metadata service.
_TRANSLATED_IPV4 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
# IPv6 forms Python counts as global that lead to an IPv4 address or a site's own network
# where tunnels or SIIT translators route them: IPv4-compatible (::a.b.c.d, deprecated),
# IPv4-translated (::ffff:0:a.b.c.d, RFC 2765) and the deprecated site-local fec0::/10.
_ALSO_NOT_PUBLIC_IPV6 = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
    ipaddress.IPv6Network("fec0::/10"),
)
# IETF protocol assignments (RFC 6890), which Pythons before 3.11.10 and 3.12.4 count as
# global but for two anycast addresses; nothing a webhook receiver lives at.
_IETF_PROTOCOL_ASSIGNMENTS = ipaddress.IPv4Network("192.0.0.0/24")
# Public addresses a cloud answers from inside its own network only: Azure's WireServer
# (168.63.129.16) serves every VM its platform's configuration and health probes, and a VM
# reaches it whatever the network rules say, so a hub hosted on Azure would post to it.
_CLOUD_PLATFORM_ADDRESSES = frozenset({ipaddress.IPv4Address("168.63.129.16")})

# One answer for a host that is not found, private or this machine: a finer answer would
# let an accountant map the hosting network's internal names to their addresses.
NOT_PUBLIC = N_("the webhook's host %(host)s cannot be reached on the public internet")


class HostNotLookedUp(UnsafeWebhook):
    """The host's name lookup failed or took too long: said as NOT_PUBLIC when a rule is saved
    (one answer for every host the hub will not post to), tried again later on delivery (a
    name server's outage passes)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(NOT_PUBLIC, host=host)
        self.reason = reason


LOOKUPS_BUSY = N_("Your firm's webhook hosts are still being looked up; try again in a minute")


class LookupsBusy(HostNotLookedUp):
    """The hub did not look the host up: the firm's places for lookups are held by earlier
    ones still running, or no thread took it in time (many firms' name servers not
    answering). Nothing was learnt about the host, so it is said as such: not a refusal of
    the host, and not one of a delivery's attempts."""

    def __init__(self, host: str, reason: str) -> None:
        UnsafeWebhook.__init__(self, LOOKUPS_BUSY)
        self.host = host
        self.reason = reason


AddressLookup = Callable[[str, int], list[tuple[Any, ...]]]


def _getaddrinfo(host: str, port: int) -> list[tuple[Any, ...]]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class HostLookups:
    """Name lookups in threads of their own, at most ``per_firm`` of a firm's at a time.

    A lookup runs in a thread (the resolver blocks), and a thread cannot be stopped: a
    lookup given up after its timeout holds its thread until the name server answers or
    the resolver gives up. asyncio's shared pool has a handful of threads, so a firm naming
    hosts whose name server never answers would soon hold all of them, and every other
    firm's deliveries and saves would wait behind it. Here a firm's lookups still running,
    answered or abandoned, count against its own few places only.
    """

    def __init__(self, *, per_firm: int = 4, threads: int = 64, lookup: AddressLookup = _getaddrinfo) -> None:
        self._per_firm = per_firm
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="webhook-lookup")
        self._lookup = lookup
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _release(self, firm: str) -> None:
        with self._lock:
            self._running[firm] -= 1
            if not self._running[firm]:
                del self._running[firm]

    def running(self, firm: str) -> int:
        with self._lock:
            return self._running[firm]

    async def addresses(self, host: str, port: int, *, firm: str, timeout_seconds: float) -> list[tuple[Any, ...]]:
        """The host's addresses; the name server gets ``timeout_seconds`` from the moment a
        thread takes the lookup, and the lookup waits as long for a thread (LookupsBusy)."""
        with self._lock:
            if self._running[firm] >= self._per_firm:
                raise LookupsBusy(host, f"{self._running[firm]} earlier lookups of the firm's hosts still running")
            self._running[firm] += 1

        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def look_up() -> list[tuple[Any, ...]]:
            # A closed loop (RuntimeError) has nobody waiting for this answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(started.set)
            return self._lookup(host, port)

        # The place is given back when the lookup ends, also one cancelled while it still
        # waited for a thread (it never runs then, and nothing else would give it back).
        work = self._executor.submit(look_up)
        work.add_done_callback(lambda _: self._release(firm))
        answer = asyncio.wrap_future(work)
        try:
            async with asyncio.timeout(timeout_seconds):
                await started.wait()
        except TimeoutError as error:
            if work.cancel():  # still waiting for a thread: it never runs
                answer.cancel()
                raise LookupsBusy(host, f"no thread free for the lookup within {timeout_seconds:g} s") from error
            # A thread took it just now: it gets its time like any other.
        try:
            async with asyncio.timeout(timeout_seconds):
                return await answer
        except TimeoutError as error:
            raise HostNotLookedUp(host, f"no answer within {timeout_seconds:g} s") from error
        except OSError as error:
            raise HostNotLookedUp(host, f"{type(error).__name__}: {error}") from error


# One per process: the saves and the deliveries of every firm share its threads.
LOOKUPS = HostLookups()


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> bool:
    """Whether a POST may not go to the address: anything but the public internet (private,
    link-local with cloud metadata at 169.254.169.254, shared, reserved, multicast), also
    when wrapped in an IPv6 address that leads to an IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif not address.is_loopback and any(
            address in prefix for prefix in (*_TRANSLATED_IPV4, *_ALSO_NOT_PUBLIC_IPV6)
        ):
            return True  # (::1 lies in ::/96 too: loopback is decided below)
        else:
            embedded = [address.sixtofour, *(address.teredo or ())]
            if any(inner is not None and not _is_public(inner) for inner in embedded):
                return True
    if address.is_loopback:
        return not allow_loopback
    if isinstance(address, ipaddress.IPv4Address) and (
        address in _IETF_PROTOCOL_ASSIGNMENTS or address in _CLOUD_PLATFORM_ADDRESSES
    ):
        return True
    return not _is_public(address)


async def resolve_target(
    url: str,
    *,
    allow_loopback: bool,
    firm: str,
    timeout_seconds: float,
    lookups: HostLookups = LOOKUPS,
) -> Target:
    """The URL checked, and the one address its POST goes to; UnsafeWebhook otherwise
    (HostNotLookedUp when the name lookup failed or took longer than ``timeout_seconds``)."""
    parts = _parse(url, allow_loopback=allow_loopback)
    shown = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(shown)
        host, addresses = shown, [literal]
    except ValueError:
        host = _ascii_host(shown)
        answers = await lookups.addresses(host, port, firm=firm, timeout_seconds=timeout_seconds)
        addresses = [ipaddress.ip_address(str(answer[4][0]).split("%")[0]) for answer in answers]
    if not addresses or any(_refused(address, allow_loopback=allow_loopback) for address in addresses):
        raise UnsafeWebhook(NOT_PUBLIC, host=shown)
    if parts.scheme == "http" and not all(address.is_loopback for address in addresses):
        raise UnsafeWebhook(N_("a webhook URL starts with https://"))
    return Target(url=parts, host=host, addresses=tuple(dict.fromkeys(str(address) for address in addresses)))


class Outcome(StrEnum):
    DELIVERED = "delivered"
    # Worth another try later: 5xx, 408, 425, 429, no answer.
    TRANSIENT = "transient"
    # Trying again will not help: another 4xx, a redirect, a URL no longer allowed.
    PERMANENT = "permanent"
    # Not tried: the hub could not look the host up yet (LookupsBusy). Not one of the
    # delivery's attempts, or a firm's hosts that never answer would use up the attempts of
    # its healthy receivers.
    DEFERRED = "deferred"


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    # What happened, for the delivery's record and the logs (never the secret or the body).
    detail: str
    # How long the receiver asked to be left alone (its Retry-After, with a 429 or a 503).
    retry_after_seconds: float | None = None


# Answers worth trying again later. 401 and 403 too: a receiver refusing the signature may
# not hold the rule's newest secret yet (the rule or its new secret was just shown to its
# owner); a receiver that keeps refusing is given up after the attempts.
TRANSIENT_STATUSES = frozenset({401, 403, 408, 425, 429})


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
    firm: str,
    lookups: HostLookups = LOOKUPS,
) -> Attempt:
    """One signed POST; redirects are not followed (a redirect could lead anywhere).

    The whole attempt (the name lookup and every address of the host) ends within twice
    ``timeout_seconds``: httpx's timeout bounds each read, and a receiver that answers a
    byte at a time would otherwise hold the attempt for hours. Whatever else goes wrong is
    an attempt that failed, never an error that stops the deliveries after it.
    """
    try:
        async with asyncio.timeout(timeout_seconds * 2):
            try:
                target = await resolve_target(
                    url, allow_loopback=allow_loopback, firm=firm, timeout_seconds=timeout_seconds, lookups=lookups
                )
            except LookupsBusy as error:
                # The hub's own hold-up, not the receiver's: tried again soon, not counted.
                return Attempt(Outcome.DEFERRED, f"the host's name was not looked up yet: {error.reason}")
            except HostNotLookedUp as error:
                # A name server's outage passes: tried again, as a receiver that did not answer.
                return Attempt(Outcome.TRANSIENT, f"the host's name lookup failed: {error.reason}")
            except UnsafeWebhook as error:
                return Attempt(Outcome.PERMANENT, f"refused: {error}")
            headers = {
                "Host": target.host_header,
                "Content-Type": "application/json",
                "User-Agent": "AccountantHub-Webhook/1",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: signature(secret, timestamp, body),
                EVENT_HEADER: event_type,
                IDEMPOTENCY_HEADER: event_id,
            }
            return await _send(http, target, body=body, headers=headers, timeout_seconds=timeout_seconds)
    except TimeoutError:
        return Attempt(Outcome.TRANSIENT, f"no answer within {timeout_seconds * 2:g} s")
    except Exception as error:
        return Attempt(Outcome.TRANSIENT, f"{type(error).__name__}: {error}"[:500])


async def _send(
    http: httpx.AsyncClient, target: Target, *, body: bytes, headers: dict[str, str], timeout_seconds: float
) -> Attempt:
    """The POST to the host's checked addresses, the next one only when one refuses."""
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
                retry_after = parse_retry_after(answer.headers.get("retry-after"))
        except httpx.ConnectError as error:
            failure = f"{type(error).__name__}: {error}"[:500]
            continue  # the host's next address, as any client does
        except httpx.HTTPError as error:
            return Attempt(Outcome.TRANSIENT, f"{type(error).__name__}: {error}"[:500])
        if 200 <= status < 300:
            return Attempt(Outcome.DELIVERED, f"HTTP {status}")
        if status >= 500 or status in TRANSIENT_STATUSES:
            return Attempt(Outcome.TRANSIENT, f"HTTP {status}", retry_after_seconds=retry_after)
        return Attempt(Outcome.PERMANENT, f"HTTP {status}")
    return Attempt(Outcome.TRANSIENT, failure)
