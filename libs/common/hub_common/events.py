"""The one event envelope and every event the hub emits.

Each event is an ``EventData`` subclass naming its type and the subject suffix it
travels on; ``Envelope`` wraps it with who, when, which firm and why. Decoding checks the
envelope and the data against these models, so a malformed message never reaches a
handler as if it were valid.
"""

from __future__ import annotations

import functools
import re
import string
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import core_schema

from hub_common.i18n import N_, InvalidValue
from hub_common.money import Money

# A short, bounded, printable text: what any free-text field of an event may hold.
Text = Annotated[str, Field(max_length=500)]
Name = Annotated[str, Field(min_length=1, max_length=250)]


class ActorKind(StrEnum):
    ACCOUNTANT = "accountant"
    SERVICE = "service"
    CLIENT_ADMIN = "client_admin"


class Actor(BaseModel):
    """Who caused an event: the audit log's answer to "who did this"."""

    model_config = ConfigDict(frozen=True)

    kind: ActorKind
    id: Annotated[str, Field(min_length=1, max_length=320)]
    display_name: Text | None = None

    @classmethod
    def service(cls, name: str) -> Actor:
        return cls(kind=ActorKind.SERVICE, id=name)


@functools.cache
def _template_field_names(template: str) -> tuple[str, ...]:
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


class EventData(BaseModel):
    """The typed payload of one event type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    # The part of the subject after ``hub.<firm_id>.``; see ``subject_suffix``.
    subject_template: ClassVar[str]

    def subject_suffix(self) -> str:
        # Only the fields the template names (a snapshot's whole dump would cost more than its
        # decoding, and every consumed event is checked against its subject).
        return self.subject_template.format_map(
            {name: getattr(self, name) for name in _template_field_names(self.subject_template)}
        )


DataT = TypeVar("DataT", bound=EventData)


class Envelope(BaseModel, Generic[DataT]):
    """Every event on the bus: the same fields whatever the type."""

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: str
    version: int
    firm_id: uuid.UUID
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    actor: Actor
    correlation_id: str = Field(min_length=1, max_length=100)
    causation_id: str | None = Field(default=None, max_length=100)
    data: DataT

    @property
    def subject(self) -> str:
        return f"hub.{self.firm_id}.{self.data.subject_suffix()}"

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def derived_id(cause: Envelope[Any], purpose: str) -> uuid.UUID:
    """The id of what an event caused, the same whoever works it out and however often."""
    return uuid.uuid5(cause.id, purpose)


def first_refresh_id(client_added: Envelope[Any]) -> uuid.UUID:
    """The refresh a ClientAdded starts by itself (it has no RefreshRequested)."""
    return derived_id(client_added, "refresh")


def new_envelope(
    data: DataT,
    *,
    firm_id: uuid.UUID,
    actor: Actor,
    correlation_id: str | None = None,
    causation: Envelope[Any] | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope[DataT]:
    """Wrap event data; a caused event inherits its cause's correlation id.

    Pass ``event_id`` when the event must keep one id across retries, so JetStream's
    duplicate window drops a second publish of it.
    """
    if correlation_id is None:
        correlation_id = causation.correlation_id if causation else str(uuid.uuid4())
    # Parametrized with the concrete data type so the data serializes with all its fields.
    envelope_type: Any = Envelope[type(data)]  # type: ignore[misc]
    envelope: Envelope[DataT] = envelope_type(
        id=event_id or uuid.uuid4(),
        type=data.event_type,
        version=data.version,
        firm_id=firm_id,
        actor=actor,
        correlation_id=correlation_id,
        causation_id=str(causation.id) if causation else None,
        data=data,
    )
    return envelope


# ---------------------------------------------------------------- firms and people


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    STAFF = "staff"


class FirmCreated(EventData):
    event_type = "FirmCreated"
    subject_template = "firm.created"

    name: Name
    owner_accountant_id: uuid.UUID


class AccountantJoined(EventData):
    event_type = "AccountantJoined"
    subject_template = "accountant.joined"

    accountant_id: uuid.UUID
    email: Annotated[str, Field(max_length=320)]
    display_name: Name
    role: Role


class AccountantRemoved(EventData):
    """An owner or admin removed a colleague from the firm: their sessions and API tokens
    stop working, their alert rules go and their clients are no longer assigned to them.
    Their address may join a firm again only through a new invitation."""

    event_type = "AccountantRemoved"
    subject_template = "accountant.removed"

    accountant_id: uuid.UUID
    email: Annotated[str, Field(max_length=320)]
    removed_by: uuid.UUID


class ColleagueInvited(EventData):
    """An owner or admin invited an address to join the firm; it joins on first sign-in."""

    event_type = "ColleagueInvited"
    subject_template = "accountant.invited"

    email: Annotated[str, Field(max_length=320)]
    role: Role
    invited_by: uuid.UUID
    firm_name: Name
    inviter_name: Name
    # The inviting accountant's language, in which the email is written (hub_common.i18n);
    # events from before languages say nothing, and their email was English.
    language: Annotated[str, Field(max_length=35)] = "en"


class ColleagueInvitationChanged(EventData):
    """An owner or admin invited an address again, within a day of its mail, with another
    role: the pending invitation now gives this role and the address joins with it. Nothing
    is mailed (the invitations service mails on ColleagueInvited only), so correcting a role
    is in the audit log without mailing the invitee twice in a day."""

    event_type = "ColleagueInvitationChanged"
    subject_template = "accountant.invitation_changed"

    email: Annotated[str, Field(max_length=320)]
    role: Role
    changed_by: uuid.UUID


class ColleagueInvitationWithdrawn(EventData):
    """An owner or admin withdrew a colleague invitation nobody had accepted: the address can
    no longer join the firm through it (a mail already sent still arrives, and leads to a
    sign-in that no invitation waits for)."""

    event_type = "ColleagueInvitationWithdrawn"
    subject_template = "accountant.invitation_withdrawn"

    email: Annotated[str, Field(max_length=320)]
    role: Role
    withdrawn_by: uuid.UUID


# ---------------------------------------------------------------- clients


class ClientSource(StrEnum):
    MANUAL = "manual"
    INVITATION = "invitation"
    SAMPLE = "sample"


ACCOUNT_NUMBER_MAX_LENGTH = 20
ACCOUNT_NUMBERS_MAX_COUNT = 100
_ACCOUNT_NUMBER_PATTERN = r"^[A-Za-z0-9._-]+$"
# How much of a refused entry a message quotes: enough to find it in what was typed.
_QUOTED_ENTRY_LENGTH = 40


def _quoted_entry(value: str) -> str:
    """The entry as a message can quote it: shortened, and a lone surrogate (valid in JSON's
    escapes, not in UTF-8) shown escaped, since pydantic cannot even raise a message holding one."""
    shown = value if len(value) <= _QUOTED_ENTRY_LENGTH else value[: _QUOTED_ENTRY_LENGTH - 1] + "…"
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")


def _account_number_said_plainly(value: object) -> object:
    """Refuses a badly formed account number in a sentence an accountant can act on, before
    the field's own constraints would answer with their pattern. Those constraints stay: they
    are what the JSON schema documents, and they judge whatever is not a string."""
    if isinstance(value, str) and not (
        len(value) <= ACCOUNT_NUMBER_MAX_LENGTH and re.fullmatch(_ACCOUNT_NUMBER_PATTERN, value)
    ):
        raise InvalidValue(
            N_(
                "Account numbers are letters, digits, '.', '_' and '-', up to %(length)s characters: "
                '"%(number)s" is not one.'
            ),
            length=ACCOUNT_NUMBER_MAX_LENGTH,
            number=_quoted_entry(value),
        )
    return value


def _account_numbers_said_plainly(value: object) -> object:
    if isinstance(value, list) and len(value) > ACCOUNT_NUMBERS_MAX_COUNT:
        raise InvalidValue(
            N_("Up to %(limit)s account numbers can be named here, not %(count)s."),
            limit=ACCOUNT_NUMBERS_MAX_COUNT,
            count=len(value),
        )
    return value


# A G/L account number as BC shows it ("2510", "56.10").
AccountNumber = Annotated[
    str,
    Field(min_length=1, max_length=ACCOUNT_NUMBER_MAX_LENGTH, pattern=_ACCOUNT_NUMBER_PATTERN),
    BeforeValidator(_account_number_said_plainly),
]
# G/L account numbers a client card names for a figure, in place of the hub's rule.
AccountNumbers = Annotated[
    list[AccountNumber],
    Field(min_length=1, max_length=ACCOUNT_NUMBERS_MAX_COUNT),
    BeforeValidator(_account_numbers_said_plainly),
]


def _printable(value: str) -> str:
    """Trimmed, and without control characters (a line break is allowed in notes only):
    PostgreSQL cannot store a NUL, and nothing the hub shows needs any of them."""
    value = value.strip()
    if any(ord(char) < 32 and char not in "\n\r\t" for char in value):
        raise ValueError(N_("must not contain control characters"))
    return value


def _one_line(value: str) -> str:
    value = _printable(value)
    if any(char in "\n\r\t" for char in value):
        raise ValueError(N_("must fit on one line"))
    return value


def _required_line(value: str) -> str:
    value = _one_line(value)
    if not value:
        raise ValueError(N_("must not be blank"))
    return value


# The one check of text a person types, wherever it arrives (a request, a command, an event):
# printable text may span lines, a line may be empty, a required line may not. Each trims.
# Written after the field's length, ``Annotated[str, Field(max_length=250), REQUIRED_LINE]``,
# so the length is checked first and pydantic's usual "String should have at most" says so.
PRINTABLE_TEXT = AfterValidator(_printable)
ONE_LINE = AfterValidator(_one_line)
REQUIRED_LINE = AfterValidator(_required_line)
CardEmail = Annotated[
    str,
    Field(max_length=320, pattern=r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"),
]
CardPhone = Annotated[str, Field(min_length=3, max_length=50, pattern=r"^[+0-9][0-9 ()./-]*$")]
TIME_ZONE_NAME_MAX_LENGTH = 64
_TIME_ZONE_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"


def _time_zone_said_plainly(value: object) -> object:
    """Refuses what cannot be an IANA time zone name in a sentence, before the pattern would."""
    if isinstance(value, str) and not (
        len(value) <= TIME_ZONE_NAME_MAX_LENGTH and re.fullmatch(_TIME_ZONE_NAME_PATTERN, value)
    ):
        raise InvalidValue(
            N_("%(name)s is not an IANA time zone such as Europe/Amsterdam"), name=repr(_quoted_entry(value))
        )
    return value


# An IANA time zone name ("Europe/Amsterdam"). Its shape is all a reader checks: which names
# exist is tzdata's, and the registry admits only a place's zone or UTC when a card is saved.
TimeZoneName = Annotated[
    str,
    Field(min_length=1, max_length=TIME_ZONE_NAME_MAX_LENGTH, pattern=_TIME_ZONE_NAME_PATTERN),
    BeforeValidator(_time_zone_said_plainly),
]


class ClientCard(BaseModel):
    """The fields of a client card an accountant can edit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=250), REQUIRED_LINE]
    client_url: Annotated[str, Field(min_length=1, max_length=2000)]
    contact_name: Annotated[str, Field(max_length=500), ONE_LINE] | None = None
    email: CardEmail | None = None
    phone: CardPhone | None = None
    notes: Annotated[str, Field(max_length=4000), PRINTABLE_TEXT] | None = None
    assigned_accountant_id: uuid.UUID | None = None
    # Overrides the taxes-due rule: exactly these G/L accounts are the client's tax payable.
    tax_account_numbers: AccountNumbers | None = None
    # Overrides the cash rule (and the cues' total): exactly these G/L accounts hold cash.
    cash_account_numbers: AccountNumbers | None = None
    # Where the client's day is: "today" for its overdue invoices, invoices due next week,
    # sales this month, the forecast's weeks and the exchange rates in effect. None: UTC.
    # Left out while None, so a service not yet upgraded reads the card (deploy/README).
    time_zone: TimeZoneName | None = Field(default=None, exclude_if=lambda zone: zone is None)


# Tenants and environments become path segments of BC URLs: only these characters pass.
TenantName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")]
EnvironmentName = Annotated[str, Field(min_length=1, max_length=30, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
# What BC answers under a tenant in place of an environment (its admin center, its sign-in
# page): no environment bears these names, and a Client URL naming one is refused.
NOT_ENVIRONMENT_NAMES = frozenset({"admin", "signin"})


def _an_environment(name: str) -> str:
    if name.casefold() in NOT_ENVIRONMENT_NAMES:
        raise ValueError(
            N_(
                "names a page of Business Central's own (its admin center or sign-in), not an "
                "environment: name the client's environment, such as Production"
            )
        )
    return name


# An environment named where it is first asked for (events already written keep EnvironmentName).
NewEnvironmentName = Annotated[EnvironmentName, AfterValidator(_an_environment)]


# A partner-hosted BC app's web client: https://{application family}.bc.dynamics.com.
PARTNER_WEB_CLIENT_HOST_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.bc\.dynamics\.com$"
PartnerWebClientHost = Annotated[str, Field(max_length=253, pattern=PARTNER_WEB_CLIENT_HOST_PATTERN)]


class ClientConnection(BaseModel):
    """Where a client's BC lives, as parsed from its Client URL (never fetched)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: TenantName
    environment: EnvironmentName
    company_name: Text | None = None
    # The tenant's directory id, resolved from its domain through Entra's OIDC discovery;
    # None only in events written before tenants were resolved.
    tenant_id: uuid.UUID | None = None
    # A partner-hosted (Embed) app's own web client, where its users open their BC (its
    # environments are not found at businesscentral.dynamics.com); None: the hub's web
    # client. Left out while None, so a service not yet upgraded reads the connection.
    web_client_host: PartnerWebClientHost | None = Field(default=None, exclude_if=lambda host: host is None)

    @property
    def read_tenant(self) -> str:
        """The tenant as Entra and BC are asked for it: its directory id, by which its grant
        is checked, so a domain that moved to another tenant is never read; the Client
        URL's name only for connections from before tenants were resolved."""
        return str(self.tenant_id) if self.tenant_id is not None else self.tenant


class ClientAdded(EventData):
    event_type = "ClientAdded"
    subject_template = "client.added"

    client_id: uuid.UUID
    card: ClientCard
    connection: ClientConnection
    source: ClientSource
    # How many times the card was saved (see ClientUpdated.card_revision); left out while 0.
    card_revision: int = Field(default=0, ge=0, le=2**31 - 1, exclude_if=lambda revision: revision == 0)


class ClientUpdated(EventData):
    event_type = "ClientUpdated"
    subject_template = "client.updated"

    client_id: uuid.UUID
    card: ClientCard
    connection: ClientConnection
    # The card's revision (RefreshRequested.accounts_revision) at its last move to another
    # tenant or environment: an outcome of a refresh of an older revision read the place it
    # named before. Left out while 0, so a service not yet upgraded reads the event.
    moved_revision: int = Field(default=0, ge=0, le=2**31 - 1, exclude_if=lambda revision: revision == 0)
    # How many times the card was saved: a save of the card as read at another revision is
    # refused (UpdateClient.expected_card_revision), so two people's saves never undo each
    # other. Left out while 0 (cards saved before it was counted).
    card_revision: int = Field(default=0, ge=0, le=2**31 - 1, exclude_if=lambda revision: revision == 0)


class ClientRemoved(EventData):
    event_type = "ClientRemoved"
    subject_template = "client.removed"

    client_id: uuid.UUID


# ---------------------------------------------------------------- refreshes


class RefreshScheduleSet(EventData):
    """When clients are refreshed on schedule changed: the firm's schedule (no client), or
    one client's own, or a client given back to the firm's (``follows_firm``)."""

    event_type = "RefreshScheduleSet"
    subject_template = "refresh.schedule_set"

    client_id: uuid.UUID | None = None
    follows_firm: bool = False
    # None: no scheduled refresh.
    every_minutes: Annotated[int, Field(ge=15, le=7 * 24 * 60)] | None = None
    # Wall-clock times in ``time_zone``; both or neither.
    quiet_from: time | None = None
    quiet_until: time | None = None
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"


class RefreshRequested(EventData):
    event_type = "RefreshRequested"
    subject_template = "refresh.requested"

    refresh_id: uuid.UUID
    client_id: uuid.UUID
    connection: ClientConnection
    # None refreshes every company of the client.
    company_id: uuid.UUID | None = None
    tax_account_numbers: AccountNumbers | None = None
    cash_account_numbers: AccountNumbers | None = None
    # The registry counts each change of the card that makes earlier reads stale: its account
    # numbers, or a move to another tenant or environment. The refresh's outcomes carry it
    # back, so figures made with numbers the card no longer names never replace newer ones,
    # and what a refresh of the place the card named before a move says is told apart.
    # Left out while 0, so a service not yet upgraded reads the event (deploy/README).
    accounts_revision: int = Field(default=0, ge=0, le=2**31 - 1, exclude_if=lambda revision: revision == 0)
    # The card's time zone, whose date is "today" for the figures (None: UTC); left out
    # while None, like the card's.
    time_zone: TimeZoneName | None = Field(default=None, exclude_if=lambda zone: zone is None)


# The most companies of one environment an event lists (BC environments hold far fewer), and
# the most their names and ids may take in one message (the broker carries 1 MB by default,
# with the rest of the event and its headers).
MAX_COMPANIES_PER_ENVIRONMENT = 1000
MAX_COMPANY_LIST_BYTES = 600_000


class DiscoveredCompany(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    company_id: uuid.UUID
    name: Name
    display_name: Text | None = None


# The one company a refresh is about (RefreshRequested.company_id), None for the whole
# client, on the events a refresh's discovery ends with (its companies, or a failure or wait
# of the whole client): a gateway replica that applies one before the request (another
# replica has it) still touches only that company's row, and the run counts one company.
# Left out while None, so a reader of the previous release still reads whole-client ones.
RefreshCompanyId = Annotated[uuid.UUID | None, Field(exclude_if=lambda company_id: company_id is None)]


class CompaniesDiscovered(EventData):
    event_type = "CompaniesDiscovered"
    subject_template = "companies.discovered"

    client_id: uuid.UUID
    refresh_id: uuid.UUID
    companies: Annotated[list[DiscoveredCompany], Field(max_length=MAX_COMPANIES_PER_ENVIRONMENT)]
    refresh_company_id: RefreshCompanyId = None
    # The refresh's RefreshRequested.accounts_revision; left out while 0.
    accounts_revision: int = Field(default=0, ge=0, le=2**31 - 1, exclude_if=lambda revision: revision == 0)


class FailureKind(StrEnum):
    """Every way reaching a client's BC can fail, each with its own fix."""

    INVALID_URL = "invalid_url"
    # The client's tenant has not granted this firm access (or took it back): nothing is read.
    ACCESS_NOT_GRANTED = "access_not_granted"
    TENANT_NOT_FOUND = "tenant_not_found"
    ENVIRONMENT_NOT_FOUND = "environment_not_found"
    CONSENT_MISSING = "consent_missing"
    CREDENTIALS_REJECTED = "credentials_rejected"
    NO_COMPANY_ACCESS = "no_company_access"
    ENVIRONMENT_OFFLINE = "environment_offline"
    THROTTLED = "throttled"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad_response"


class Failure(BaseModel):
    """A classified failure: plain words for the accountant, details for an administrator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FailureKind
    summary: Text
    fix: Text
    http_status: int | None = None
    bc_error_code: Annotated[str, Field(max_length=200)] | None = None
    message: Annotated[str, Field(max_length=2000)] | None = None
    correlation_id: Annotated[str, Field(max_length=100)] | None = None
    occurred_at: datetime


class RefreshFailed(EventData):
    event_type = "RefreshFailed"
    subject_template = "refresh.failed"

    refresh_id: uuid.UUID
    client_id: uuid.UUID
    company_id: uuid.UUID | None = None
    company_name: Text | None = None
    failure: Failure
    refresh_company_id: RefreshCompanyId = None
    # The refresh's RefreshRequested.accounts_revision; left out while 0.
    accounts_revision: int = Field(default=0, ge=0, le=2**31 - 1, exclude_if=lambda revision: revision == 0)


class RefreshDeferred(EventData):
    """A refresh met a transient failure (throttled, offline, timeout) and will be tried again.

    Published at once, so the row and Check Errors say "waiting … next try at HH:MM"
    instead of staying silent through a long Retry-After or back-off.
    """

    event_type = "RefreshDeferred"
    subject_template = "refresh.deferred"

    refresh_id: uuid.UUID
    client_id: uuid.UUID
    company_id: uuid.UUID | None = None
    company_name: Text | None = None
    failure: Failure
    attempt: Annotated[int, Field(ge=1)]
    next_attempt_at: datetime
    refresh_company_id: RefreshCompanyId = None
    # The refresh's RefreshRequested.accounts_revision; left out while 0.
    accounts_revision: int = Field(default=0, ge=0, le=2**31 - 1, exclude_if=lambda revision: revision == 0)


class ConnectionTestRequested(EventData):
    event_type = "ConnectionTestRequested"
    subject_template = "connection.test_requested"

    test_id: uuid.UUID
    client_id: uuid.UUID | None = None
    connection: ClientConnection


# A connection test reads a little of at most this many companies (one $batch of as many
# requests, counted against the tenant's BC limits, which every firm reading it shares).
MAX_PROBED_COMPANIES = 20


class ConnectionTested(EventData):
    event_type = "ConnectionTested"
    subject_template = "connection.tested"

    test_id: uuid.UUID
    client_id: uuid.UUID | None = None
    ok: bool
    companies: Annotated[list[DiscoveredCompany], Field(max_length=MAX_COMPANIES_PER_ENVIRONMENT)] = []
    latency_ms: Annotated[int, Field(ge=0)] | None = None
    failure: Failure | None = None
    # Set when the test ended before any fetcher took it (Entra knows no such tenant).
    connection: ClientConnection | None = None
    # Companies listed whose data BC refuses to the hub's app (its permission sets in BC do
    # not cover them), so their refreshes would fail; ``unreadable_failure`` is BC's answer
    # for the first of them. Only the first MAX_PROBED_COMPANIES listed are tried.
    unreadable_company_ids: Annotated[list[uuid.UUID], Field(max_length=MAX_COMPANIES_PER_ENVIRONMENT)] = []
    unreadable_failure: Failure | None = None


# ---------------------------------------------------------------- change notifications


class NotificationState(StrEnum):
    """How a company's changes reach the hub."""

    # BC notifies the hub of changes to every entity its figures come from.
    SUBSCRIBED = "subscribed"
    # The environment's subscriptions are used up (BC's 200, or the hub's share of them):
    # the company is read on its schedule only.
    POLLING = "polling"
    # Subscribing failed (the handshake, BC's answer): read on schedule, tried again at the
    # next refresh.
    FAILED = "failed"


class NotificationSubscriptionsChecked(EventData):
    """The fetcher made (or renewed, or gave up on) a company's BC webhook subscriptions.

    Published only when something changed at BC or the state changed, not at every refresh.
    """

    event_type = "NotificationSubscriptionsChecked"
    subject_template = "notifications.checked"

    client_id: uuid.UUID
    company_id: uuid.UUID
    company_name: Text | None = None
    state: NotificationState
    # The entities (API v2.0 names) BC notifies the hub of.
    entities: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=50)] = []
    # The earliest expiry of the company's subscriptions, as BC states it.
    expires_at: datetime | None = None
    detail: Text | None = None
    failure: Failure | None = None


class BusinessCentralChanged(EventData):
    """BC notified the hub that records of a company changed (stored before BC gets a 2xx)."""

    event_type = "BusinessCentralChanged"
    subject_template = "notifications.changed"

    client_id: uuid.UUID
    company_id: uuid.UUID
    # The changed entities (API v2.0 names).
    entities: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=50)]
    # Notices in the POST; a ``collection`` notice stands for more than 1,000 changes.
    notices: Annotated[int, Field(ge=1)]
    collection: bool = False
    # Whether this notice asked for a refresh now, or joined one asked for moments ago.
    refresh_id: uuid.UUID | None = None


# ---------------------------------------------------------------- figures


class CashAccountBalance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: Annotated[str, Field(max_length=50)]
    name: Text
    balance: Money


class CashFigure(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: Annotated[list[CashAccountBalance], Field(max_length=500)]
    total: Money
    # api: the hub's rule (subcategory Cash); cues: BC's own "Cash Accounts" total;
    # client_card: the accounts the client card names.
    source: Literal["api", "cues", "client_card"]
    read_at: datetime


class InvoiceLine(BaseModel):
    """One overdue invoice, with the link that opens it in the client's BC."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: Annotated[str, Field(max_length=50)]
    counterparty: Text
    due_date: date
    days_overdue: Annotated[int, Field(ge=0)]
    amount: Money
    link: Annotated[str, Field(max_length=2000)]


class OverdueInvoices(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: Annotated[int, Field(ge=0)]
    total: Money
    largest: Annotated[list[InvoiceLine], Field(max_length=10)]
    # Purchase invoices have no remaining amount in API v2.0, so their total is used.
    amount_basis: Literal["remaining_amount", "total_including_tax"]
    read_at: datetime


class InvoicesDue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: Annotated[int, Field(ge=0)]
    amount: Money
    read_at: datetime


class OpenSalesDocuments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quotes_count: Annotated[int, Field(ge=0)]
    quotes_amount: Money
    orders_count: Annotated[int, Field(ge=0)]
    orders_amount: Money
    invoices_count: Annotated[int, Field(ge=0)]
    invoices_amount: Money
    read_at: datetime


class TaxesDue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Money
    accounts: Annotated[list[CashAccountBalance], Field(max_length=500)]
    rule: Text
    read_at: datetime


class SalesThisMonth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: Money
    read_at: datetime


class ForecastWeek(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    week_start: date
    receipts: Money
    payments: Money
    closing_balance: Money


class CashFlowForecast(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    opening_cash: Money
    weeks: Annotated[list[ForecastWeek], Field(min_length=13, max_length=13)]
    low_point: Money
    read_at: datetime


class CompanyFigures(BaseModel):
    """Every figure of a company; a figure BC would not give stays None."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cash: CashFigure | None = None
    overdue_sales_invoices: OverdueInvoices | None = None
    overdue_purchase_invoices: OverdueInvoices | None = None
    purchase_invoices_due_next_week: InvoicesDue | None = None
    open_sales_documents: OpenSalesDocuments | None = None
    taxes_due: TaxesDue | None = None
    sales_this_month: SalesThisMonth | None = None
    cash_flow_forecast: CashFlowForecast | None = None


# A currency code as BC keys its Currency table (Code[10]: upper case, printable): "EUR".
BC_CURRENCY_CODE_PATTERN = r"^[^a-z\x00-\x1f\x7f]+$"
BcCurrencyCode = Annotated[str, Field(min_length=1, max_length=10, pattern=BC_CURRENCY_CODE_PATTERN)]
# More currencies than ISO 4217 knows: a tenant's answer with more is not a rate table.
MAX_EXCHANGE_RATES = 500
# How many units of a company's local currency one unit of another currency is worth.
LcyPerUnit = Annotated[Decimal, Field(gt=0, le=Decimal(10**15), decimal_places=15, allow_inf_nan=False)]


class ExchangeRate(BaseModel):
    """One currency's rate in a company's BC, in effect on the snapshot's date."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency_code: BcCurrencyCode
    # None: BC's rate in effect cannot be used (a zero or negative amount, or a relational
    # currency without a usable rate of its own).
    lcy_per_unit: LcyPerUnit | None
    # The startingDate of the currency's own row in BC (currencyExchangeRates).
    starting_date: date


class ExchangeRates(BaseModel):
    """The rates a company's BC holds, as of the snapshot's date: the latest in effect per
    currency, as local currency per unit. ``unavailable`` says why none could be read (the
    rest of the snapshot is complete)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: date
    rates: Annotated[list[ExchangeRate], Field(max_length=MAX_EXCHANGE_RATES)] = []
    unavailable: Text | None = None


class CompanySnapshot(EventData):
    event_type = "CompanySnapshot"
    subject_template = "company.{company_id}.snapshot"

    client_id: uuid.UUID
    company_id: uuid.UUID
    company_name: Name
    company_display_name: Text | None = None
    refresh_id: uuid.UUID
    currency_code: Annotated[str, Field(max_length=10)]
    read_at: datetime
    web_client_link: Annotated[str, Field(max_length=2000)]
    figures: CompanyFigures
    # Added later with a default: a snapshot from before it has None (rates not read).
    exchange_rates: ExchangeRates | None = None
    # The refresh's RefreshRequested.accounts_revision (0 for a client's first refresh and
    # snapshots from before it): the read model keeps the figures of the newest revision.
    # Left out while 0, so a service not yet upgraded reads the snapshot (deploy/README).
    accounts_revision: int = Field(default=0, ge=0, le=2**31 - 1, exclude_if=lambda revision: revision == 0)


# ---------------------------------------------------------------- tenant access


class GrantMethod(StrEnum):
    """How a client's tenant gave a firm access; each is a verified flow, never a claim."""

    # The client's administrator accepted Invite External Accountant for this firm.
    INVITATION = "invitation"
    # Someone signed in to the client's tenant from the client card's Connect link, consented
    # for the app and proved they reach the client's Business Central.
    CONNECT = "connect"
    # The operator's own demo tenant (the sample client), granted to every firm.
    SAMPLE = "sample"


class TenantAccessGranted(EventData):
    """A client's tenant let this firm read it. Fetchers read a tenant only with a grant."""

    event_type = "TenantAccessGranted"
    subject_template = "tenant.access_granted"

    tenant_id: uuid.UUID
    tenant: TenantName
    method: GrantMethod
    client_id: uuid.UUID | None = None
    granted_by: Annotated[str, Field(max_length=320)] | None = None


class TenantAccessRevoked(EventData):
    """The firm lost access to a tenant: removed in the hub, or consent withdrawn in Entra."""

    event_type = "TenantAccessRevoked"
    subject_template = "tenant.access_revoked"

    tenant_id: uuid.UUID
    tenant: TenantName
    reason: Text


# ---------------------------------------------------------------- invitations


class InvitationCreated(EventData):
    event_type = "InvitationCreated"
    subject_template = "invitation.created"

    invitation_id: uuid.UUID
    email: Annotated[str, Field(max_length=320)]
    tenant: TenantName
    environment: EnvironmentName
    client_name: Name
    companies: Annotated[list[Name], Field(max_length=300)]
    expires_at: datetime


class InvitationAccepted(EventData):
    event_type = "InvitationAccepted"
    subject_template = "invitation.accepted"

    invitation_id: uuid.UUID
    accountant_id: uuid.UUID
    email: Annotated[str, Field(max_length=320)]
    tenant: TenantName
    environment: EnvironmentName
    client_name: Name
    add_to_dashboard: bool
    # When the client raised it: access the client took back after that is not given again
    # by it. None in events written before it was recorded.
    invited_at: datetime | None = None


class InvitationRejected(EventData):
    event_type = "InvitationRejected"
    subject_template = "invitation.rejected"

    invitation_id: uuid.UUID
    reason: Text


class InvitationWithdrawn(EventData):
    """Someone of the client's organisation withdrew an invitation nobody had accepted (on
    /client-access): its links no longer give access."""

    event_type = "InvitationWithdrawn"
    subject_template = "invitation.withdrawn"

    invitation_id: uuid.UUID


# ---------------------------------------------------------------- alerts

# The names mirror hub_registry.domain.alerts, where the rules live; events carry plain strings
# so a service without the registry's rules can read them.
AlertFigure = Literal[
    "cash",
    "overdue_sales",
    "overdue_purchases",
    "purchases_due_next_week",
    "taxes_due",
    "sales_this_month",
    "forecast_low_point",
    "runway_weeks",
    "failing_hours",
]
AlertComparison = Literal["below", "above"]
AlertDelivery = Literal["immediate", "daily_digest"]
# A threshold or an observed value: an amount, weeks or hours.
AlertNumber = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=28)]
LanguageTag = Annotated[str, Field(max_length=35)]
EmailAddress = Annotated[str, Field(max_length=320)]


class AlertRuleSet(EventData):
    """An accountant defined or changed an alert rule. The webhook's secret is never in it,
    nor its URL's path or query (Slack, Teams and Zapier put a bearer token there, and the
    audit stream is never purged): only where it points, ``https://host[:port]``."""

    event_type = "AlertRuleSet"
    subject_template = "alert.rule_set"

    rule_id: uuid.UUID
    owner_accountant_id: uuid.UUID
    name: Name
    # None: every client of the firm.
    client_id: uuid.UUID | None = None
    figure: AlertFigure
    comparison: AlertComparison
    threshold: AlertNumber
    email: bool
    # The webhook URL's scheme, host and port only; None: no webhook.
    webhook_host: Annotated[str, Field(max_length=300)] | None = None
    delivery: AlertDelivery = "immediate"
    # The daily digest's wall-clock time in ``time_zone``.
    digest_at: time | None = None
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    # The webhook was given a new signing secret for the same URL, on request (a new rule's
    # or a new URL's secret shows in webhook_host). Written only when true, so a reader of the
    # release before reads every other rule change.
    webhook_secret_renewed: bool = Field(default=False, exclude_if=lambda renewed: not renewed)


class AlertRuleRemoved(EventData):
    event_type = "AlertRuleRemoved"
    subject_template = "alert.rule_removed"

    rule_id: uuid.UUID


class AlertRecipient(BaseModel):
    """Who a rule's mail goes to (its owner), in their language when the rule was set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accountant_id: uuid.UUID
    email: EmailAddress
    display_name: Name
    language: LanguageTag = "en"


class AlertRaised(EventData):
    """An episode started: a rule began to hold for a company (or a client as a whole)."""

    event_type = "AlertRaised"
    subject_template = "alert.raised"

    episode_id: uuid.UUID
    rule_id: uuid.UUID
    rule_name: Name
    client_id: uuid.UUID
    client_name: Name
    company_id: uuid.UUID | None = None
    company_name: Text | None = None
    figure: AlertFigure
    comparison: AlertComparison
    threshold: AlertNumber
    value: AlertNumber
    # The company's local currency for an amount; None for weeks and hours.
    currency_code: Annotated[str, Field(max_length=10)] | None = None
    started_at: datetime
    recipient: AlertRecipient
    # Whether a mail is due for it at once ("immediate"), in the day's digest, or not at all.
    email: bool
    delivery: AlertDelivery = "immediate"


class AlertResolved(EventData):
    """An episode ended: the rule no longer holds (or the rule or client went away)."""

    event_type = "AlertResolved"
    subject_template = "alert.resolved"

    episode_id: uuid.UUID
    rule_id: uuid.UUID
    client_id: uuid.UUID
    company_id: uuid.UUID | None = None
    # The value that no longer holds; None when the episode ended without an observation.
    value: AlertNumber | None = None
    ended_at: datetime
    # company_gone: the company is no longer the client's (a full discovery no longer lists
    # it, or the card now names another tenant or environment).
    reason: Literal["no_longer_holds", "rule_changed", "rule_removed", "client_removed", "company_gone"]


class DigestEpisode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    episode_id: uuid.UUID
    client_name: Name
    company_name: Text | None = None
    value: AlertNumber
    currency_code: Annotated[str, Field(max_length=10)] | None = None
    started_at: datetime
    ended_at: datetime | None = None


class AlertDigestDue(EventData):
    """A rule's daily digest: one mail listing the rule's episodes no digest listed before
    (more than one digest holds come as several digests of the same run). Also sent at once,
    by the accountant, when a digest rule stops being one: what waited for it is mailed then.
    ``since`` is the previous digest, or the start of the earliest episode listed when that
    is earlier (one that committed as the previous digest ran)."""

    event_type = "AlertDigestDue"
    subject_template = "alert.digest_due"

    digest_id: uuid.UUID
    rule_id: uuid.UUID
    rule_name: Name
    figure: AlertFigure
    comparison: AlertComparison
    threshold: AlertNumber
    recipient: AlertRecipient
    since: datetime
    until: datetime
    episodes: Annotated[list[DigestEpisode], Field(min_length=1, max_length=1000)]


EVENT_TYPES: dict[str, type[EventData]] = {
    model.event_type: model
    for model in (
        FirmCreated,
        AccountantJoined,
        AccountantRemoved,
        ColleagueInvited,
        ColleagueInvitationChanged,
        ColleagueInvitationWithdrawn,
        ClientAdded,
        ClientUpdated,
        ClientRemoved,
        RefreshScheduleSet,
        RefreshRequested,
        CompaniesDiscovered,
        RefreshFailed,
        RefreshDeferred,
        ConnectionTestRequested,
        ConnectionTested,
        NotificationSubscriptionsChecked,
        BusinessCentralChanged,
        CompanySnapshot,
        TenantAccessGranted,
        TenantAccessRevoked,
        InvitationCreated,
        InvitationAccepted,
        InvitationRejected,
        InvitationWithdrawn,
        AlertRuleSet,
        AlertRuleRemoved,
        AlertRaised,
        AlertResolved,
        AlertDigestDue,
    )
}


class InvalidEvent(ValueError):
    """A message that is not a valid hub event; it is dead-lettered, never retried."""


# How an event stored at an older version reads as the current one. Stored events are never
# rewritten (the audit log is append-only): each change to an event's data bumps its model's
# ``version`` and registers one step here, ``(type, old version) -> data of old version + 1``,
# so every version ever written is decoded forever (tests/contract/event_corpus holds one of
# each). An optional field added with a default needs no step and no new version.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """The data of an older version, step by step, as the current model reads it."""
    model = EVENT_TYPES[event_type]
    if version > model.version:
        raise InvalidEvent(f"{event_type} version {version} is newer than this service knows ({model.version})")
    while version < model.version:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise InvalidEvent(f"{event_type} version {version} has no upcaster to version {version + 1}")
        data = step(data)
        version += 1
    return data


# Each event model's envelope type, made once: parametrizing a generic model for every
# message costs more than validating the message.
_TYPED_ENVELOPES: dict[type[EventData], Any] = {}
_UNTYPED_ENVELOPE: Any = Envelope[Any]


def _typed_envelope(model: type[EventData]) -> Any:
    typed = _TYPED_ENVELOPES.get(model)
    if typed is None:
        typed = _TYPED_ENVELOPES[model] = Envelope[model]  # type: ignore[valid-type]
    return typed


class _CurrentEvent:
    """Any event type's envelope, its model picked by the message's own ``type``: one JSON
    parse picks the model and validates the message with it (a first read of the type alone
    parsed every message twice). The caller checks the version."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.tagged_union_schema(
            {name: handler.generate_schema(_typed_envelope(model)) for name, model in EVENT_TYPES.items()},
            discriminator="type",
        )


@functools.cache
def _current_events() -> TypeAdapter[Any]:
    # Made at first use, once every event type is defined.
    return TypeAdapter(_CurrentEvent)


def prepare_decoding() -> None:
    """Make every event type's envelope now (a few milliseconds each), not at its first message."""
    for model in EVENT_TYPES.values():
        _typed_envelope(model)
    _current_events()


def decode_event(raw: bytes | str, *, subject: str | None = None) -> Envelope[EventData]:
    """Parse and validate an envelope and its typed data, upcast to the current version.

    With the ``subject`` the message arrived on, an event whose own subject differs is
    refused: publish permissions are per subject (hub_common.nats_permissions), so an event
    of one type in a message on another type's subject is one its publisher may not send.
    """
    decoded = _decode(raw)
    if subject is not None and decoded.subject != subject:
        raise InvalidEvent(f"a {decoded.type} event for {decoded.subject} arrived on {subject}")
    return decoded


def _decode(raw: bytes | str) -> Envelope[EventData]:
    # Nearly every message: a current event, validated once, whole, by the JSON parser (a
    # replay decodes thousands a second). Anything else, older versions included, is read
    # step by step, which also says what is wrong.
    try:
        decoded: Envelope[EventData] = _current_events().validate_json(raw)
    except ValidationError:
        return _decode_step_by_step(raw)
    if decoded.version != EVENT_TYPES[decoded.type].version:
        return _decode_step_by_step(raw)
    return decoded


def _decode_step_by_step(raw: bytes | str) -> Envelope[EventData]:
    """The envelope, then its data, upcast from an older version if need be; what is wrong
    with a message that is no valid event."""
    try:
        untyped = _UNTYPED_ENVELOPE.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidEvent(f"not a hub event envelope: {error.error_count()} errors") from error
    model = EVENT_TYPES.get(untyped.type)
    if model is None:
        raise InvalidEvent(f"unknown event type {untyped.type!r}")
    if not isinstance(untyped.data, dict):
        raise InvalidEvent(f"{untyped.type} data is not an object")
    current = upcast(untyped.type, untyped.version, untyped.data)
    try:
        data = model.model_validate(current)
    except ValidationError as error:
        raise InvalidEvent(f"invalid {untyped.type} data: {error.error_count()} errors") from error
    fields = untyped.model_dump(exclude={"data", "version"})
    decoded: Envelope[EventData] = _typed_envelope(model)(**fields, version=model.version, data=data)
    return decoded
