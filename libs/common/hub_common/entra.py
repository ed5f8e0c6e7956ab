"""msal applications for the hub's one multi-tenant Entra app, built the same way everywhere.

msal gets an httpx-based client that trusts the configured CA bundle, because this
machine's REQUESTS_CA_BUNDLE would silently override msal's own ``verify=``. Instance
discovery (a call to Microsoft's cloud) is only done for Microsoft's own hosts, so the
sandbox standing in for Entra needs no outside access.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import jwt
import msal

MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn", "login.microsoft.com"}
)


def confidential_client(
    *, authority_base: str, tenant: str, client_id: str, client_secret: str | dict[str, str], http: httpx.Client
) -> msal.ConfidentialClientApplication:
    """``client_secret`` is the secret, or msal's certificate form (private key + thumbprint)."""
    base = authority_base.rstrip("/")
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=client_secret,
        authority=f"{base}/{tenant}",
        http_client=http,
        instance_discovery=(urlsplit(base).hostname or "") in MICROSOFT_AUTHORITY_HOSTS,
    )


async def redeem_auth_code(
    app: msal.ClientApplication, flow: dict[str, Any], answer: dict[str, str]
) -> dict[str, Any] | None:
    """msal's answer to the code Microsoft sent back to a callback, or None when the callback
    is not the pending flow's: a sign-in started again in another tab (its state differs), an
    old callback URL, no state or no code. msal raises ValueError for those, which is the
    caller's "took too long or was started elsewhere; try again", not a server error.

    Entra unreachable, or an id token that is not this sign-in's (msal's IdTokenError:
    another sign-in's nonce, issuer or audience), is answered as an error of
    the sign-in in Entra's own shape, which every callback shows as a failed sign-in."""
    try:
        result: dict[str, Any] = await asyncio.to_thread(app.acquire_token_by_auth_code_flow, flow, answer)
    except ValueError:
        return None
    except (httpx.HTTPError, OSError) as error:
        return {
            "error": "temporarily_unavailable",
            "error_description": f"Microsoft Entra ID did not answer ({error!r})",
        }
    except msal.IdTokenError as error:
        # Its text holds the id token's claims (someone's identity): the page says only which check.
        return {
            "error": "invalid_id_token",
            "error_description": f"the identity Microsoft returned is not this sign-in's ({type(error).__name__})",
        }
    return result


class TokenRejected(ValueError):
    """An Entra token the hub will not accept, with the reason."""


# Directory roles allowed to invite an external accountant, as BC's wizard requires
# (page 9033: Global Administrator or User Administrator).
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
USER_ADMINISTRATOR = "fe930be7-5e62-47db-91af-98c3a49a38b1"


# A tenant id as Entra writes it in a token's tid: a GUID in lower case. Another spelling of
# the same tenant would be fetched and kept again under a key of its own.
_TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Tenants whose signing keys one process keeps (a full cache forgets its oldest first).
MAX_KEY_SETS = 1_000
# A tenant whose keys could not be read is not asked again for this long.
KEY_FAILURE_SECONDS = 300.0
# The longest keys go on being used while Entra cannot be asked for them again.
KEYS_KEPT_SECONDS = 24 * 3600.0
# Tenants not yet known whose keys one process may fetch in a minute. The tenant is read from
# a token before its signature can be checked, and the endpoint takes no sign-in: without a
# bound, anyone naming tenant after tenant would have the hub ask Entra for each, and Entra,
# throttling the hub's address, would refuse every firm's sign-ins and refreshes.
NEW_TENANTS_PER_MINUTE = 60


_Entry = TypeVar("_Entry")


class EntraTokenVerifier:
    """Checks tokens Entra issued for the hub's app: signature (JWKS), issuer, audience, expiry."""

    def __init__(
        self,
        *,
        authority_base: str,
        audience: str,
        http: httpx.AsyncClient,
        cache_seconds: float = 3600,
        max_key_sets: int = MAX_KEY_SETS,
        new_tenants_per_minute: int = NEW_TENANTS_PER_MINUTE,
    ):
        self._authority_base = authority_base.rstrip("/")
        self._audience = audience
        self._http = http
        self._cache_seconds = cache_seconds
        self._max_key_sets = max_key_sets
        self._new_tenants_per_minute = new_tenants_per_minute
        # tenant -> (until when, its key set); and the tenants Entra refused, with why. Kept
        # apart, so made-up tenants fill only the second and never push out real ones' keys.
        self._keys: dict[str, tuple[float, jwt.PyJWKSet]] = {}
        self._refused: dict[str, tuple[float, str]] = {}
        # When each tenant's keys were last read from Entra (time.monotonic()).
        self._fetched_keys_at: dict[str, float] = {}
        self._fetched_at: deque[float] = deque()  # fetches of the last minute, oldest first

    async def _key_set(self, tenant: str) -> jwt.PyJWKSet:
        now = time.monotonic()
        cached = self._keys.get(tenant)
        if cached is not None and cached[0] > now:
            return cached[1]
        refused = self._refused.get(tenant)
        if refused is not None and refused[0] > now:
            raise TokenRejected(refused[1])
        self._count_fetch(now, renewal=cached is not None)
        fetched = await self._fetch(tenant)
        if isinstance(fetched, jwt.PyJWKSet):
            self._remember(self._keys, tenant, (now + self._cache_seconds, fetched))
            self._fetched_keys_at[tenant] = now
            if len(self._fetched_keys_at) > 2 * self._max_key_sets:
                self._fetched_keys_at = {t: at for t, at in self._fetched_keys_at.items() if t in self._keys}
            return fetched
        reason, tenant_refused = fetched
        if (
            cached is not None
            and not tenant_refused
            and now - self._fetched_keys_at.get(tenant, now) < KEYS_KEPT_SECONDS
        ):
            # A renewal Entra failed to answer: the keys known before still check tokens for a
            # while (not once Entra refuses the tenant, nor for longer than a day).
            self._remember(self._keys, tenant, (now + KEY_FAILURE_SECONDS, cached[1]))
            return cached[1]
        if tenant_refused:
            # Entra refused the tenant (a 4xx): asking again at once would not help. An outage
            # (no answer, a 5xx) is not remembered: the next token asks again.
            self._remember(self._refused, tenant, (now + KEY_FAILURE_SECONDS, reason))
        raise TokenRejected(reason)

    def _count_fetch(self, now: float, *, renewal: bool) -> None:
        while self._fetched_at and now - self._fetched_at[0] >= 60:
            self._fetched_at.popleft()
        if not renewal and len(self._fetched_at) >= self._new_tenants_per_minute:
            raise TokenRejected("too many tenants' signing keys were asked for this minute; try again in a minute")
        self._fetched_at.append(now)

    async def _fetch(self, tenant: str) -> jwt.PyJWKSet | tuple[str, bool]:
        """The tenant's key set, or why it could not be read and whether Entra refused the
        tenant itself (a 4xx) rather than failed to answer."""
        try:
            response = await self._http.get(f"{self._authority_base}/{tenant}/discovery/v2.0/keys")
        except httpx.HTTPError as error:
            return f"the signing keys of tenant {tenant} could not be read ({type(error).__name__})", False
        if response.status_code != 200:
            reason = f"the signing keys of tenant {tenant} could not be read ({response.status_code})"
            # Throttled (429) or timed out (408) is Entra's trouble, not a refusal of the tenant.
            return reason, 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise ValueError("not a key set")
            return jwt.PyJWKSet.from_dict(body)
        except (ValueError, jwt.PyJWTError) as error:
            return f"the signing keys of tenant {tenant} could not be read ({type(error).__name__})", False

    def _remember(self, entries: dict[str, _Entry], tenant: str, entry: _Entry) -> None:
        entries.pop(tenant, None)
        entries[tenant] = entry
        if len(entries) > self._max_key_sets:
            # Dicts keep insertion order and an entry is inserted again when renewed.
            del entries[next(iter(entries))]

    async def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise TokenRejected(f"not a token: {error}") from error
        tenant = unverified.get("tid")
        if not isinstance(tenant, str) or not _TENANT_ID.fullmatch(tenant):
            raise TokenRejected("the token names no tenant")
        key_set = await self._key_set(tenant)
        key = next((k for k in key_set.keys if k.key_id == header.get("kid")), None)
        if key is None:
            raise TokenRejected("the token is not signed by a key of its tenant")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self._audience,
                issuer=f"{self._authority_base}/{tenant}/v2.0",
                options={"require": ["exp", "iat", "tid", "aud", "iss"]},
                leeway=60,
            )
        except jwt.PyJWTError as error:
            raise TokenRejected(f"invalid token: {error}") from error
        return claims


def is_tenant_admin(claims: dict[str, Any]) -> bool:
    roles = claims.get("wids")
    return isinstance(roles, list) and bool({GLOBAL_ADMINISTRATOR, USER_ADMINISTRATOR} & set(roles))


# AADSTS codes by which Entra says it knows no such tenant: 90002 (not found), 90072 (the
# account's tenant is not this one), 900023 (neither a DNS name nor a GUID).
TENANT_NOT_FOUND_CODES = frozenset({90002, 90072, 900023})


class TenantNotFound(ValueError):
    """Entra knows no tenant by that name or id."""


class DirectoryUnavailable(RuntimeError):
    """Entra did not give a usable answer; asking again later may work."""


class LookupsSpent(RuntimeError):
    """A firm had the directory ask Entra about as many new tenants as it may in an hour."""

    def __init__(self, allowance: int, retry_after_seconds: float) -> None:
        super().__init__(f"{allowance} tenant lookups in the last hour")
        self.allowance = allowance
        self.retry_after_seconds = retry_after_seconds


# Each firm's lookups are counted over this window.
LOOKUP_WINDOW_SECONDS = 3600.0
# Answers kept at most: a firm naming one new real tenant after another must not grow the
# process for ever (a full cache forgets its oldest answers first).
MAX_KNOWN_TENANTS = 20_000


class TenantDirectory:
    """Resolves a tenant's domain (or id) to its directory id through OIDC discovery.

    A client is keyed on its tenant's id, not on how the Client URL spelled it, so
    ``contoso.onmicrosoft.com`` and its GUID are one client. Only the configured authority
    is asked, so no Client URL can point the hub at another host.

    Entra answers every firm's lookups from the hub's one address and app, and throttles
    them together: a firm that names tenant after tenant (Test Client URL, card saves) would
    get the hub throttled for every firm. So each firm may have Entra asked about at most
    ``lookups_per_firm_per_hour`` tenants an hour in this process; answers it already had
    do not count.

    Answers are kept per firm: one firm's answer given to another, before or without a
    lookup of its own, would tell that firm (by the answer, and by its speed) which tenants
    other firms of the hub named in the last hour.
    """

    def __init__(
        self,
        *,
        authority_base: str,
        http: httpx.AsyncClient,
        timeout_seconds: float,
        cache_seconds: float = 3600,
        lookups_per_firm_per_hour: int = 100,
    ) -> None:
        self._authority_base = authority_base.rstrip("/")
        self._http = http
        self._timeout_seconds = timeout_seconds
        self._cache_seconds = cache_seconds
        # (the firm that asked, None for the hub itself; the tenant as named) -> (until, id)
        self._known: dict[tuple[uuid.UUID | None, str], tuple[float, uuid.UUID]] = {}
        self._allowance = lookups_per_firm_per_hour
        # firm -> when it had Entra asked, oldest first (time.monotonic()), within the window.
        self._lookups: dict[uuid.UUID, deque[float]] = {}
        self._firms_at_last_sweep = 0

    async def resolve(self, tenant: str, *, firm_id: uuid.UUID | None = None) -> uuid.UUID:
        """The tenant's id; ``firm_id`` is the firm asking (None for the hub itself), whose
        allowance a question to Entra takes one of, or :class:`LookupsSpent`."""
        reference = tenant.strip().casefold()
        cached = self._known.get((firm_id, reference))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        if firm_id is not None:
            self._count_lookup(firm_id)
        url = f"{self._authority_base}/{reference}/v2.0/.well-known/openid-configuration"
        try:
            async with asyncio.timeout(self._timeout_seconds):
                response = await self._http.get(url)
        except (httpx.HTTPError, TimeoutError) as error:
            raise DirectoryUnavailable(f"Microsoft Entra ID did not answer: {type(error).__name__}") from error
        try:
            body = response.json()
        except ValueError as error:
            raise DirectoryUnavailable(f"Microsoft Entra ID answered {response.status_code} without JSON") from error
        if response.status_code == 400 and isinstance(body, dict):
            # A request about this tenant name that Entra refuses: asking again cannot help.
            codes = body.get("error_codes")
            if isinstance(codes, list) and TENANT_NOT_FOUND_CODES & set(codes):
                raise TenantNotFound(f"No Microsoft Entra tenant named {tenant!r} exists")
            description = str(body.get("error_description") or body.get("error") or "no reason given")
            raise TenantNotFound(
                f"Microsoft Entra ID refused the tenant {tenant!r}: {description.splitlines()[0][:200]}"
            )
        if response.status_code != 200 or not isinstance(body, dict):
            raise DirectoryUnavailable(f"Microsoft Entra ID answered {response.status_code}")
        tenant_id = _tenant_of_issuer(body.get("issuer"))
        if tenant_id is None:
            # Only common/organizations/consumers answer with a template issuer: not one tenant.
            raise TenantNotFound(f"{tenant!r} is not one client tenant")
        self._remember((firm_id, reference), tenant_id)
        return tenant_id

    def _count_lookup(self, firm_id: uuid.UUID) -> None:
        now = time.monotonic()
        asked = self._lookups.setdefault(firm_id, deque())
        while asked and now - asked[0] >= LOOKUP_WINDOW_SECONDS:
            asked.popleft()
        if len(asked) >= self._allowance:
            raise LookupsSpent(self._allowance, LOOKUP_WINDOW_SECONDS - (now - asked[0]))
        asked.append(now)
        # Firms whose window emptied are forgotten now and then, so the map holds the firms
        # of the last hour, not every firm the process ever served.
        if len(self._lookups) > max(1_000, 2 * self._firms_at_last_sweep):
            self._lookups = {
                firm: times for firm, times in self._lookups.items() if now - times[-1] < LOOKUP_WINDOW_SECONDS
            }
            self._firms_at_last_sweep = len(self._lookups)

    def _remember(self, key: tuple[uuid.UUID | None, str], tenant_id: uuid.UUID) -> None:
        self._known.pop(key, None)
        self._known[key] = (time.monotonic() + self._cache_seconds, tenant_id)
        if len(self._known) > MAX_KNOWN_TENANTS:
            # Dicts keep insertion order and an answer is inserted again when renewed: the
            # first one is the oldest.
            del self._known[next(iter(self._known))]


def _tenant_of_issuer(issuer: object) -> uuid.UUID | None:
    """``https://login.microsoftonline.com/{tenant id}/v2.0`` -> the tenant id."""
    if not isinstance(issuer, str):
        return None
    segments = [segment for segment in urlsplit(issuer).path.split("/") if segment]
    try:
        return uuid.UUID(segments[0]) if segments else None
    except ValueError:
        return None
