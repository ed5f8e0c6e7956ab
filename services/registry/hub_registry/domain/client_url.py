"""Parsing a Client URL into the tenant, environment and company it names.

The URL is parsed, never fetched (invariant 5): the hub only ever calls the configured
Entra and Business Central hosts, whatever an accountant types here.

Forms BC has used (see the reference, section 8):

* ``https://businesscentral.dynamics.com/{tenant}/{environment}?company=...`` and the same
  without the environment (Production is the default);
* ``https://{name}.financials.dynamics.com`` (2017, Dynamics 365 for Financials);
* partner-hosted ``https://{family}.bc.dynamics.com/{tenant}/{environment}``;
* the sandbox's web client, in dev, which has the businesscentral.dynamics.com shape.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from hub_common.events import PARTNER_WEB_CLIENT_HOST_PATTERN
from hub_common.i18n import N_

DEFAULT_ENVIRONMENT = "Production"
MAX_URL_LENGTH = 2000

_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")
# BC environment names: letters, digits and hyphens (underscore is tolerated), at most 30.
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,29}$")
_FINANCIALS_HOST = re.compile(r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)\.financials\.dynamics\.com$")
_PARTNER_HOST = re.compile(PARTNER_WEB_CLIENT_HOST_PATTERN)

WEB_CLIENT_HOST = "businesscentral.dynamics.com"


class ClientUrlError(ValueError):
    """What is wrong with a Client URL, in words an accountant can act on: ``message_id`` is
    a catalogue message (hub_common.i18n) with its ``values``; ``message`` is it in English."""

    def __init__(self, part: str, message: str, **values: str) -> None:
        super().__init__(message % values if values else message)
        self.part = part
        self.message = str(self)
        self.message_id = message
        self.values = values


@dataclass(frozen=True)
class ParsedClientUrl:
    tenant: str
    environment: str
    company_name: str | None
    form: str
    # A partner-hosted app's web client host; None for every other form.
    partner_host: str | None = None


def _is_tenant(segment: str) -> bool:
    try:
        uuid.UUID(segment)
    except ValueError:
        return bool(_DOMAIN.match(segment.lower()))
    return True


def _tenant_and_environment(segments: list[str], example_base: str) -> tuple[str, str]:
    example = f"{example_base}/contoso.onmicrosoft.com/Production"
    if not segments:
        raise ClientUrlError(
            "tenant",
            N_(
                "The Client URL names no tenant. Add the client's Microsoft Entra tenant id or "
                "domain after the host, for example %(example)s"
            ),
            example=example,
        )
    if len(segments) > 2:
        raise ClientUrlError(
            "path",
            N_(
                "The Client URL has more path parts than a tenant and an environment: "
                "%(path)s. Use the form %(example)s"
            ),
            path=repr("/".join(segments)),
            example=example,
        )
    tenant = segments[0]
    if not _is_tenant(tenant):
        if len(segments) == 1 and _ENVIRONMENT.match(tenant):
            raise ClientUrlError(
                "tenant",
                N_(
                    "The Client URL names the environment %(environment)s but no tenant. Put the "
                    "client's tenant id or domain before it, for example %(example)s"
                ),
                environment=repr(tenant),
                example=f"{example_base}/contoso.onmicrosoft.com/{tenant}",
            )
        raise ClientUrlError(
            "tenant",
            N_(
                "%(tenant)s is not a tenant: use the client's Microsoft Entra tenant id (a GUID) "
                "or its domain, such as contoso.onmicrosoft.com"
            ),
            tenant=repr(tenant),
        )
    environment = segments[1] if len(segments) == 2 else DEFAULT_ENVIRONMENT
    if not _ENVIRONMENT.match(environment):
        raise ClientUrlError(
            "environment",
            N_(
                "%(environment)s is not a Business Central environment name: use letters, digits "
                "and hyphens, at most 30 characters (for example Production)"
            ),
            environment=repr(environment),
        )
    return tenant.lower(), environment


def _company(query: str) -> str | None:
    values = {key.lower(): value for key, value in parse_qs(query, keep_blank_values=True).items()}
    companies = values.get("company")
    if not companies:
        return None
    company = companies[0].strip()
    if not company:
        return None
    if len(company) > 250 or any(ord(char) < 32 for char in company):
        raise ClientUrlError("company", N_("The company name in the Client URL is not valid"))
    return company


_BARE_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(?!\d)")


def parse_client_url(raw: str, *, extra_web_client_bases: tuple[str, ...] = ()) -> ParsedClientUrl:
    """Parse a Client URL or say exactly which part is wrong."""
    text = raw.strip()
    if not text:
        raise ClientUrlError("url", N_("Enter the client's Business Central URL"))
    if len(text) > MAX_URL_LENGTH:
        raise ClientUrlError("url", N_("The Client URL is longer than %(count)s characters"), count=str(MAX_URL_LENGTH))
    if any(char.isspace() or ord(char) < 32 for char in text):
        raise ClientUrlError("url", N_("The Client URL contains spaces or control characters"))
    if "://" not in text:
        # "mailto:x", "javascript:…": a scheme, not a host with a port ("host:8443/…").
        scheme = _BARE_SCHEME.match(text)
        if scheme and scheme.group(1).lower() != "https":
            raise ClientUrlError("scheme", N_("The Client URL must start with https://"))
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise ClientUrlError("url", N_("The Client URL could not be read: %(reason)s"), reason=str(error)) from error
    if parts.scheme.lower() != "https":
        raise ClientUrlError("scheme", N_("The Client URL must start with https://"))
    if parts.username or parts.password:
        raise ClientUrlError("host", N_("The Client URL must not contain a user name or password"))
    host = (parts.hostname or "").lower()
    segments = [segment for segment in parts.path.split("/") if segment]

    for base in extra_web_client_bases:
        base_parts = urlsplit(base)
        base_segments = [segment for segment in base_parts.path.split("/") if segment]
        if (
            host == (base_parts.hostname or "").lower()
            and port == base_parts.port
            and segments[: len(base_segments)] == base_segments
        ):
            tenant, environment = _tenant_and_environment(segments[len(base_segments) :], base.rstrip("/"))
            return ParsedClientUrl(tenant, environment, _company(parts.query), "sandbox")

    known_host = host == WEB_CLIENT_HOST or _FINANCIALS_HOST.match(host) or _PARTNER_HOST.match(host)
    if not known_host:
        raise ClientUrlError(
            "host",
            N_(
                "%(host)s is not a Business Central address. Copy the URL from the "
                "client's browser: it starts with https://businesscentral.dynamics.com/"
            ),
            host=host or "The URL",
        )
    if port not in (None, 443):
        raise ClientUrlError("host", N_("A Business Central Client URL has no port number"))
    if host == WEB_CLIENT_HOST:
        tenant, environment = _tenant_and_environment(segments, f"https://{WEB_CLIENT_HOST}")
        return ParsedClientUrl(tenant, environment, _company(parts.query), "web_client")
    if _FINANCIALS_HOST.match(host):
        if segments:
            raise ClientUrlError(
                "path",
                N_("A Dynamics 365 for Financials URL has no path: use https://name.financials.dynamics.com"),
            )
        return ParsedClientUrl(host, DEFAULT_ENVIRONMENT, _company(parts.query), "financials_2017")
    tenant, environment = _tenant_and_environment(segments, f"https://{host}")
    return ParsedClientUrl(tenant, environment, _company(parts.query), "partner_hosted", partner_host=host)


def partner_web_client_host(client_url: str) -> str | None:
    """The web client host of a card's saved Client URL when it is a partner-hosted app's
    (https://{family}.bc.dynamics.com/...), else None."""
    text = client_url.strip()
    host = (urlsplit(text if "://" in text else f"https://{text}").hostname or "").lower()
    return host if _PARTNER_HOST.match(host) else None
