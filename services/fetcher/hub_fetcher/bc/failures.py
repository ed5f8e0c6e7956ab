"""Classifying what Entra and Business Central answer into failure kinds with a fix.

Pure rules: no I/O. Transient kinds, and Business Central failing inside (a 5xx bad
response), are retried with a delay; permanent ones become a RefreshFailed (or a failed
ConnectionTested) at once. The summaries and fixes travel in
English in the events; they are catalogue messages (N_), so a page shows them in its language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from hub_common.entra import TENANT_NOT_FOUND_CODES
from hub_common.events import Failure, FailureKind
from hub_common.i18n import N_

TRANSIENT_KINDS = frozenset({FailureKind.THROTTLED, FailureKind.TIMEOUT, FailureKind.ENVIRONMENT_OFFLINE})

_SUMMARIES: dict[FailureKind, tuple[str, str]] = {
    FailureKind.INVALID_URL: (
        N_("The Client URL is not valid."),
        N_(
            "Open the client card and copy the URL from the client's browser while signed in to "
            "Business Central: https://businesscentral.dynamics.com/{tenant}/{environment}."
        ),
    ),
    FailureKind.ACCESS_NOT_GRANTED: (
        N_("Waiting for the client's permission: the client's tenant has not given your firm access."),
        N_(
            "Send the client the Connect link from the client card (or ask them to run Invite External "
            "Accountant for you). Nothing is read from the client's Business Central until they do."
        ),
    ),
    FailureKind.TENANT_NOT_FOUND: (
        N_("Microsoft Entra ID does not know the client's tenant."),
        N_("Check the tenant id or domain in the Client URL with the client's administrator."),
    ),
    FailureKind.ENVIRONMENT_NOT_FOUND: (
        N_("The client's Business Central environment does not exist."),
        N_("Check the environment name in the Client URL (for example Production) with the client."),
    ),
    FailureKind.CONSENT_MISSING: (
        N_("The client has not given the hub access yet: the invitation was not received or not accepted."),
        N_(
            "Ask the client's administrator to run Invite External Accountant again, or to grant "
            "consent to the Accountant Hub app in Microsoft Entra Applications."
        ),
    ),
    FailureKind.CREDENTIALS_REJECTED: (
        N_("Business Central rejected the hub's credentials."),
        N_(
            "Ask the client's administrator to check that the Accountant Hub app is enabled in "
            "Microsoft Entra Applications and has the D365 APIV2 permission set."
        ),
    ),
    FailureKind.NO_COMPANY_ACCESS: (
        N_("The hub has no access to this company."),
        N_(
            "Ask the client's administrator to give the Accountant Hub app permissions in every "
            "company you need (User Permission Sets on its Microsoft Entra Application card)."
        ),
    ),
    FailureKind.ENVIRONMENT_OFFLINE: (
        N_("The client's Business Central is offline, for example while it is being upgraded."),
        N_(
            "Nothing to do: the hub tries again later. If it lasts, check the Business Central "
            "admin center for a running update."
        ),
    ),
    FailureKind.THROTTLED: (
        N_("Business Central asked the hub to slow down (too many requests)."),
        N_(
            "Nothing to do: the hub backs off and tries again. Other tools using the same "
            "identity count toward the same limit."
        ),
    ),
    FailureKind.TIMEOUT: (
        N_("Business Central did not answer in time."),
        N_(
            "Nothing to do: the hub tries again later. If it keeps happening, the client's environment may be "
            "overloaded; the technical details say which deadline passed."
        ),
    ),
    FailureKind.BAD_RESPONSE: (
        N_("Business Central answered with something the hub could not read."),
        N_("Try again later. If it persists, send the technical details to your administrator."),
    ),
}


# BC failing inside is a bad response the hub tries again (FetchFailure.server_error).
_SERVER_ERROR = (
    N_("Business Central failed with an internal error while answering the hub."),
    N_(
        "Nothing to do: the hub tries again later. If it persists, give the client's administrator "
        "the technical details: with BC's correlation id, Microsoft support can find the error."
    ),
)

HTTP_NOT_IMPLEMENTED = 501


class Service(StrEnum):
    """Who gave the answer a failure is about."""

    BUSINESS_CENTRAL = "business_central"
    ENTRA = "entra"


# Where Microsoft Entra ID, not Business Central, failed the same way, the accountant reads so.
_ENTRA_SUMMARIES: dict[FailureKind, tuple[str, str]] = {
    FailureKind.TIMEOUT: (
        N_("Microsoft Entra ID did not answer in time when the hub asked for access to the client's Business Central."),
        N_("Nothing to do: the hub tries again later. If it keeps happening, check Microsoft's service status."),
    ),
    FailureKind.BAD_RESPONSE: (
        N_("Microsoft Entra ID answered the hub's sign-in with something that is not a valid answer."),
        N_(
            "Nothing to do: the hub tries again later. If it persists, send the technical details to your "
            "administrator (a proxy in front of Entra ID may be answering instead)."
        ),
    ),
    FailureKind.ENVIRONMENT_OFFLINE: (
        N_("Microsoft Entra ID is unavailable at the moment."),
        N_("Nothing to do: the hub tries again later. If it lasts, check Microsoft's service status."),
    ),
    FailureKind.THROTTLED: (
        N_("Microsoft Entra ID asked the hub to slow down its requests for access (too many requests)."),
        N_("Nothing to do: the hub waits as long as Entra ID asks, then tries again."),
    ),
    # Entra refusing the token request's own credentials is about the hub's app (its secret
    # wrong or expired), not about the client: every client fails alike until it is renewed.
    FailureKind.CREDENTIALS_REJECTED: (
        N_(
            "Microsoft Entra ID refused the hub's own app credentials: its client secret or certificate"
            " is wrong or has expired. Nothing is wrong at the client."
        ),
        N_(
            "Tell whoever runs the hub: renew the hub app's client secret (or certificate) in Microsoft"
            " Entra ID and set HUB_ENTRA_CLIENT_SECRET. Every client fails this way until then."
        ),
    ),
}

# What a failure keeps of BC's code, message and correlation id: what its event holds.
MAX_CODE_CHARACTERS = 200
MAX_MESSAGE_CHARACTERS = 2000
MAX_CORRELATION_CHARACTERS = 100

_CORRELATION = re.compile(r"CorrelationId:\s*([0-9a-fA-F-]{8,})")


@dataclass
class FetchFailure(Exception):
    """A classified failure raised anywhere in a fetch; carries its technical details."""

    kind: FailureKind
    http_status: int | None = None
    bc_error_code: str | None = None
    message: str | None = None
    correlation_id: str | None = None
    retry_after_seconds: float | None = None
    service: Service = Service.BUSINESS_CENTRAL
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        # A tenant's error text is as long as the tenant makes it: cut where it enters, so
        # no log line of a retry, and no event, carries 40 MB of it.
        if self.message is not None:
            self.message = self.message[:MAX_MESSAGE_CHARACTERS]
        if self.bc_error_code is not None:
            self.bc_error_code = self.bc_error_code[:MAX_CODE_CHARACTERS]
        if self.correlation_id is not None:
            self.correlation_id = self.correlation_id[:MAX_CORRELATION_CHARACTERS]
        super().__init__(f"{self.kind.value}: {self.message or ''}")

    @property
    def server_error(self) -> bool:
        """Business Central failed inside (HTTP 500 and the like, not a permission): a
        deadlock, a metadata sync after an extension's install, an incident. Worth another
        try; 501 (not implemented) is not, and neither is an Entra answer (identity.py
        decides those)."""
        return (
            self.kind is FailureKind.BAD_RESPONSE
            and self.service is Service.BUSINESS_CENTRAL
            and self.http_status is not None
            and 500 <= self.http_status <= 599
            and self.http_status != HTTP_NOT_IMPLEMENTED
        )

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS or self.server_error

    def to_failure(self) -> Failure:
        summaries = _ENTRA_SUMMARIES if self.service is Service.ENTRA else {}
        summary, fix = _SERVER_ERROR if self.server_error else summaries.get(self.kind) or _SUMMARIES[self.kind]
        return Failure(
            kind=self.kind,
            summary=summary,
            fix=fix,
            http_status=self.http_status,
            bc_error_code=self.bc_error_code or None,
            message=self.message or None,
            correlation_id=self.correlation_id or None,
            occurred_at=self.occurred_at,
        )


def correlation_from_message(message: str | None) -> str | None:
    """BC puts its correlation id at the end of the message text."""
    if not message:
        return None
    match = _CORRELATION.search(message)
    return match.group(1) if match else None


def classify_bc_error(
    status: int,
    code: str | None,
    message: str | None,
    *,
    company_scoped: bool,
) -> FailureKind:
    """The failure kind of an error answer from the BC API."""
    code_lower = (code or "").lower()
    if status == 429:
        return FailureKind.THROTTLED
    if status in (502, 503) or code_lower == "internal_tenantunavailable":
        return FailureKind.ENVIRONMENT_OFFLINE
    # 408: BC's 8-minute operation timeout; 504: its 10-minute gateway timeout (reference
    # §6.1). Neither says the environment is down or being upgraded.
    if status in (408, 504):
        return FailureKind.TIMEOUT
    if status == 401 or code_lower.startswith("authentication_"):
        return FailureKind.CREDENTIALS_REJECTED
    if code_lower == "noenvironment":
        return FailureKind.ENVIRONMENT_NOT_FOUND
    if code_lower == "internal_companynotfound":
        return FailureKind.NO_COMPANY_ACCESS
    if status == 403 or code_lower.startswith("authorization_"):
        return FailureKind.NO_COMPANY_ACCESS if company_scoped else FailureKind.CREDENTIALS_REJECTED
    if status == 404:
        return FailureKind.NO_COMPANY_ACCESS if company_scoped else FailureKind.ENVIRONMENT_NOT_FOUND
    if status == 500 and "permission" in (message or "").lower():
        return FailureKind.NO_COMPANY_ACCESS
    return FailureKind.BAD_RESPONSE


# AADSTS codes Entra answers for client-credential requests.
_CONSENT_CODES = {700016, 65001, 7000229, 650051, 500011, 50020}
_SECRET_CODES = {7000215, 7000222, 700027}


def classify_token_error(error: str | None, description: str | None, codes: list[int]) -> FailureKind:
    """The failure kind of an Entra token error (msal's result dictionary)."""
    code_set = set(codes)
    text = description or ""
    for code in re.findall(r"AADSTS(\d+)", text):
        code_set.add(int(code))
    if code_set & TENANT_NOT_FOUND_CODES:
        return FailureKind.TENANT_NOT_FOUND
    if code_set & _CONSENT_CODES or error in ("unauthorized_client", "consent_required"):
        return FailureKind.CONSENT_MISSING
    if code_set & _SECRET_CODES or error == "invalid_client":
        return FailureKind.CREDENTIALS_REJECTED
    if error == "temporarily_unavailable":
        return FailureKind.ENVIRONMENT_OFFLINE
    return FailureKind.BAD_RESPONSE
