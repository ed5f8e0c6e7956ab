"""Parsing a Client URL into the tenant, environment and company it names.

The URL is parsed, never fetched (invariant 5): the hub only ever calls the configured
Entra and Business Central hosts, whatever an accountant types here.

Forms BC has used (see the reference, section 8):

* ``https://businesscentral.dynamics.com/{tenant}/{environment}?company=...`` and the same
  without the environment (Production is the default), or with the tenant as the web
  client's ``?tenant=`` parameter;
* BC's sign-in page, ``.../SignIn?ReturnUrl=/{tenant}/{environment}...``, read as the page
  it returns to;
* partner-hosted ``https://{family}.bc.dynamics.com/{tenant}/{environment}``;
* the sandbox's web client, in dev, which has the businesscentral.dynamics.com shape.

``https://{name}.financials.dynamics.com`` (2017, Dynamics 365 for Financials) is retired and
names no Entra tenant: it is refused with what to copy instead. A tenant is kept as Entra
reads it: a GUID in its usual spelling, a domain in lower case and in ASCII (punycode).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

import idna

from hub_common.events import PARTNER_WEB_CLIENT_HOST_PATTERN
from hub_common.i18n import N_

DEFAULT_ENVIRONMENT = "Production"
MAX_URL_LENGTH = 2000

_DOMAIN = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")
# BC environment names: letters, digits and hyphens (underscore is tolerated), at most 30.
_ENVIRONMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,29}")
_FINANCIALS_HOST = re.compile(r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)\.financials\.dynamics\.com")
_PARTNER_HOST = re.compile(PARTNER_WEB_CLIENT_HOST_PATTERN)

WEB_CLIENT_HOST = "businesscentral.dynamics.com"
# BC's API, whose URLs name the tenant and environment too: /v2.0/{tenant}/{environment}/api/...
API_HOST = "api.businesscentral.dynamics.com"
# What Microsoft Defender for Cloud Apps appends to the hosts it proxies (session control).
_CLOUD_APPS_PROXY_SUFFIX = ".mcas.ms"
# The path BC's admin center answers at under a tenant, in place of an environment.
_ADMIN_CENTER = "admin"


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


def _tenant(segment: str) -> str | None:
    """The tenant a path segment names, as Entra reads it, or None."""
    try:
        return str(uuid.UUID(segment))  # also {…}, urn:uuid:… and 32 hex digits
    except ValueError:
        pass
    try:
        # UTS 46 without the transitional mapping, as browsers and registries read names:
        # straße.de stays xn--strae-oqa.de, not strasse.de (another domain).
        domain = idna.encode(segment, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None
    return domain if _DOMAIN.fullmatch(domain) else None


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
    named = _tenant(tenant)
    if named is None and len(segments) == 1 and tenant.lower() in (_ADMIN_CENTER, "signin"):
        # BC's own pages without a tenant: not an environment named without one.
        _refuse_bc_page(tenant, example_base, "contoso.onmicrosoft.com")
    if named is None:
        if len(segments) == 1 and _ENVIRONMENT.fullmatch(tenant):
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
    if not _ENVIRONMENT.fullmatch(environment):
        raise ClientUrlError(
            "environment",
            N_(
                "%(environment)s is not a Business Central environment name: use letters, digits "
                "and hyphens, at most 30 characters (for example Production)"
            ),
            environment=repr(environment),
        )
    if environment.lower() in (_ADMIN_CENTER, "signin"):
        _refuse_bc_page(environment, example_base, named)
    return named, environment


def _refuse_bc_page(page: str, example_base: str, tenant: str) -> NoReturn:
    """BC's admin center or sign-in page where the client's environment belongs."""
    if page.lower() == _ADMIN_CENTER:
        raise ClientUrlError(
            "environment",
            N_(
                "This is the Business Central admin center, not an environment: open the client's "
                "environment and copy the URL the browser shows, for example %(example)s"
            ),
            example=f"{example_base}/{tenant}/Production",
        )
    raise ClientUrlError(
        "path",
        N_(
            "This is Business Central's sign-in page, not the client's: sign in, then copy the "
            "URL the browser shows, for example %(example)s"
        ),
        example=f"{example_base}/contoso.onmicrosoft.com/Production",
    )


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
# What a URL copied from a mail or a document may be wrapped in: <…> (plain-text mail),
# quotes, brackets.
_WRAPPERS = (
    ("<", ">"),
    ('"', '"'),
    ("'", "'"),
    ("\u201c", "\u201d"),
    ("\u2018", "\u2019"),
    ("\u00ab", "\u00bb"),
    ("(", ")"),
    ("[", "]"),
)
# What a copy from a chat, a document or a PDF puts into a URL unseen: zero-width spaces
# where a line may break, joiners, a byte-order mark, direction marks, soft hyphens. No
# Client URL holds one, so they are dropped rather than refused as "must start with https://".
_INVISIBLE = re.compile("[\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def cleaned_client_url(raw: str) -> str:
    """The Client URL as pasted, without what copying it added unseen in and around it."""
    return _INVISIBLE.sub("", raw).strip()


def _unwrapped(text: str) -> str:
    """The URL without what copying it from a mail or a sentence added around it, however
    nested: ``(<https://…>).``. A trailing period or comma is dropped from a URL without a
    query (a company name may end in one), and after a wrapper's end in any case."""
    previous = None
    while text != previous:
        previous = text
        for start, end in _WRAPPERS:
            inner = text.rstrip(".,;")
            if len(inner) > 2 and inner.startswith(start) and inner.endswith(end):
                text = inner[1:-1].strip()
        if "?" not in text:
            text = text.rstrip(".,;")
    return text


def _with_tenant_parameter(segments: list[str], query: str) -> list[str]:
    """The path with the web client's ``?tenant=`` as its first segment, when it has none;
    a ``tenant=`` other than the path's is refused."""
    values = {key.lower(): value for key, value in parse_qs(query, keep_blank_values=True).items()}
    given = (values.get("tenant") or [""])[0].strip()
    if not given:
        return segments
    if segments and _tenant(segments[0]) is not None:
        if _tenant(given) != _tenant(segments[0]):
            raise ClientUrlError(
                "tenant",
                N_("The Client URL names two tenants, %(path)s in its path and %(parameter)s after tenant=: keep one"),
                path=repr(segments[0]),
                parameter=repr(given),
            )
        return segments
    return [given, *segments]


def _sign_in_return(segments: list[str], query: str) -> tuple[list[str], str] | None:
    """Where BC's sign-in page (``/SignIn?ReturnUrl=/{tenant}/{environment}?company=…``,
    also under a tenant: ``/{tenant}/SignIn?ReturnUrl=…``) returns to: its path segments and
    query, the tenant of the page's path put first where the return names none; None for
    any other page."""
    if not segments or segments[-1].lower() != "signin" or len(segments) > 2:
        return None
    path_tenant = segments[0] if len(segments) == 2 else None
    if path_tenant is not None and _tenant(path_tenant) is None:
        return None
    values = {key.lower(): value for key, value in parse_qs(query).items()}
    target = (values.get("returnurl") or [""])[0]
    if not target.startswith("/") or target.startswith("//"):
        return None
    returned = urlsplit(target)
    returned_segments = [unquote(segment) for segment in returned.path.split("/") if segment]
    if path_tenant is not None:
        if not returned_segments:
            return None  # returns to no environment: the sign-in page is all it names
        if _tenant(returned_segments[0]) is None:
            returned_segments = [path_tenant, *returned_segments]
    return returned_segments, returned.query


def parse_client_url(raw: str, *, extra_web_client_bases: tuple[str, ...] = ()) -> ParsedClientUrl:
    """Parse a Client URL or say exactly which part is wrong."""
    text = _unwrapped(cleaned_client_url(raw))
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
    host = _host(parts.hostname)
    # A browser copies a tenant's letters beyond ASCII, or a GUID's braces, percent-encoded.
    segments = [unquote(segment) for segment in parts.path.split("/") if segment]
    query = parts.query
    returned = _sign_in_return(segments, query)
    if returned is not None:
        segments, query = returned

    for base in extra_web_client_bases:
        base_parts = urlsplit(base)
        base_segments = [segment for segment in base_parts.path.split("/") if segment]
        if (
            host == (base_parts.hostname or "").lower()
            and port == base_parts.port
            and segments[: len(base_segments)] == base_segments
        ):
            after_base = _with_tenant_parameter(segments[len(base_segments) :], query)
            tenant, environment = _tenant_and_environment(after_base, base.rstrip("/"))
            return ParsedClientUrl(tenant, environment, _company(query), "sandbox")

    segments = _with_tenant_parameter(segments, query)

    if _FINANCIALS_HOST.fullmatch(host):
        raise ClientUrlError(
            "host",
            N_(
                "%(host)s is a Dynamics 365 for Financials address, retired since 2018. Copy the URL "
                "from the client's browser: it starts with https://businesscentral.dynamics.com/ and "
                "names their tenant"
            ),
            host=host,
        )
    if host.endswith(_CLOUD_APPS_PROXY_SUFFIX):
        raise ClientUrlError(
            "host",
            N_(
                "%(host)s is Business Central seen through Microsoft Defender for Cloud Apps: remove "
                "%(suffix)s from the host, so the URL starts with https://%(real)s/"
            ),
            host=host,
            suffix=_CLOUD_APPS_PROXY_SUFFIX,
            real=host.removesuffix(_CLOUD_APPS_PROXY_SUFFIX),
        )
    if host == API_HOST:
        advice, values = _api_url_advice(segments)
        raise ClientUrlError("host", advice, **values)
    known_host = host == WEB_CLIENT_HOST or _PARTNER_HOST.match(host)
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
        return ParsedClientUrl(tenant, environment, _company(query), "web_client")
    tenant, environment = _tenant_and_environment(segments, f"https://{host}")
    return ParsedClientUrl(tenant, environment, _company(query), "partner_hosted", partner_host=host)


def _api_url_advice(segments: list[str]) -> tuple[str, dict[str, str]]:
    """What to copy instead of an API URL: the web client's URL of the same tenant and
    environment when the API URL names them (/v2.0/{tenant}/{environment}/...)."""
    if len(segments) >= 3 and re.fullmatch(r"v\d+(\.\d+)?", segments[0]) and _tenant(segments[1]) is not None:
        named = _tenant(segments[1])
        if _ENVIRONMENT.fullmatch(segments[2]):
            return (
                N_(
                    "This is a Business Central API address. The Client URL is the web client's: "
                    "for this tenant and environment, %(suggested)s"
                ),
                {"suggested": f"https://{WEB_CLIENT_HOST}/{named}/{segments[2]}"},
            )
    return (
        N_(
            "This is a Business Central API address. The Client URL is the one the client's browser "
            "shows: it starts with https://businesscentral.dynamics.com/"
        ),
        {},
    )


def partner_web_client_host(client_url: str) -> str | None:
    """The web client host of a card's saved Client URL when it is a partner-hosted app's
    (https://{family}.bc.dynamics.com/...), else None."""
    text = _unwrapped(client_url.strip())
    host = _host(urlsplit(text if "://" in text else f"https://{text}").hostname)
    return host if _PARTNER_HOST.match(host) else None


def _host(hostname: str | None) -> str:
    """A URL's host as the hub compares it: lower case, without a fully qualified name's
    final dot ("businesscentral.dynamics.com." names the same host)."""
    return (hostname or "").lower().removesuffix(".")
