"""Commands the gateway sends to the services that own the data (NATS request/reply).

The gateway never writes another service's tables: it sends a command carrying the
authenticated firm and actor, and the owner answers with a ``CommandReply``. The owner's
read model then changes when the resulting event comes back.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

import nats.errors
from nats.aio.client import Client
from pydantic import BaseModel, ConfigDict, Field

from hub_common.events import (
    ONE_LINE,
    PRINTABLE_TEXT,
    REQUIRED_LINE,
    Actor,
    AlertComparison,
    AlertDelivery,
    AlertFigure,
    ClientCard,
    ClientConnection,
    Failure,
    NewEnvironmentName,
    TimeZoneName,
)
from hub_common.money import ExactNumber
from hub_common.tracing import inject_context

# -------------------------------------------------------------- registry commands

ENSURE_ACCOUNTANT = "cmd.registry.accountant.ensure"
ADD_CLIENT = "cmd.registry.client.add"
UPDATE_CLIENT = "cmd.registry.client.update"
REMOVE_CLIENT = "cmd.registry.client.remove"
SET_MISSING_TIME_ZONES = "cmd.registry.client.missing_time_zones"
REQUEST_REFRESH = "cmd.registry.refresh.request"
SET_REFRESH_SCHEDULE = "cmd.registry.refresh.schedule"
TEST_CONNECTION = "cmd.registry.connection.test"
INVITE_COLLEAGUE = "cmd.registry.accountant.invite"
REMOVE_COLLEAGUE = "cmd.registry.accountant.remove"
LIST_COLLEAGUE_INVITATIONS = "cmd.registry.accountant.invitations.list"
WITHDRAW_COLLEAGUE_INVITATION = "cmd.registry.accountant.invitations.withdraw"
LIST_FIRM_INVITATIONS = "cmd.registry.accountant.invitations"
GRANT_TENANT_ACCESS = "cmd.registry.tenant.grant"
REVOKE_TENANT_ACCESS = "cmd.registry.tenant.revoke"
# The client's side: someone of the client's tenant (verified by the gateway) lists the firms
# that may read it and takes a firm's access back.
LIST_TENANT_GRANTS = "cmd.registry.tenant.grants"
WITHDRAW_TENANT_ACCESS = "cmd.registry.tenant.withdraw"
# Alert rules: each accountant their own; owners and admins every rule of the firm.
SET_ALERT_RULE = "cmd.registry.alert.set"
REMOVE_ALERT_RULE = "cmd.registry.alert.remove"
LIST_ALERT_RULES = "cmd.registry.alert.list"
# Business Central notified the gateway of changes to a company (a webhook notice).
RECORD_BUSINESS_CENTRAL_CHANGES = "cmd.registry.notifications.record"


class EnsureAccountant(BaseModel):
    """Sign-in: find the accountant by email, or create them with a new firm."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(min_length=3, max_length=320)]
    display_name: Annotated[str, Field(min_length=1, max_length=250)]
    correlation_id: str
    # A first sign-in with colleague invitations pending must say what it chose, explicitly:
    # the firm of one of those invitations, or a firm of its own. Nobody joins silently.
    join_firm_id: uuid.UUID | None = None
    start_own_firm: bool = False
    # Who signed in, as Microsoft Entra ID names them for good (tenant and object ids): an
    # account is bound to them on its first sign-in with them, and an address signing in
    # from another identity is refused (an email claim alone proves nothing). None for dev
    # tokens, which exist only in dev mode.
    entra_tenant_id: uuid.UUID | None = None
    entra_object_id: uuid.UUID | None = None


class ListFirmInvitations(BaseModel):
    """The firms that invited an address which has no account yet (the choice page)."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(min_length=3, max_length=320)]
    correlation_id: str


class FirmInvitationChoice(BaseModel):
    firm_id: uuid.UUID
    firm_name: str
    role: str
    # The inviter's name, whatever their own directory says it is (it may even look like an
    # address), and their verified address, shown apart from it.
    invited_by: str
    invited_at: datetime
    invited_by_email: str | None = None


class FirmInvitationChoices(BaseModel):
    # Empty when the address already has an account: nothing to choose.
    invitations: list[FirmInvitationChoice]


class AccountantIdentity(BaseModel):
    accountant_id: uuid.UUID
    firm_id: uuid.UUID
    email: str
    display_name: str
    role: str
    created: bool


class FirmCommand(BaseModel):
    """A command acting inside one firm, on behalf of an authenticated actor."""

    model_config = ConfigDict(extra="forbid")

    firm_id: uuid.UUID
    actor: Actor
    correlation_id: str


class AddClient(FirmCommand):
    card: ClientCard


class UpdateClient(FirmCommand):
    client_id: uuid.UUID
    card: ClientCard
    # The card's revision (ClientUpdated.card_revision) the save was made on: refused if it
    # was saved since. Left out (no check) while unknown, and so for a registry of the
    # release before.
    expected_card_revision: int | None = Field(
        default=None, ge=1, le=2**31 - 1, exclude_if=lambda revision: revision is None
    )


class RemoveClient(FirmCommand):
    client_id: uuid.UUID


class SetMissingTimeZones(FirmCommand):
    """Give every client card of the firm without a time zone this one (cards with a zone
    keep theirs): a firm whose cards predate the field sets them at once, not card by card."""

    time_zone: TimeZoneName


class RequestRefresh(FirmCommand):
    """Refresh one company, one client, or (both None) every client of the firm."""

    client_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None


class SetRefreshSchedule(FirmCommand):
    """The firm's schedule (no client: owners and admins), or one client's own; a client
    with ``follows_firm`` goes back to the firm's. ``every_minutes`` None turns it off."""

    client_id: uuid.UUID | None = None
    follows_firm: bool = False
    every_minutes: int | None = None
    quiet_from: time | None = None
    quiet_until: time | None = None
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"


class RecordBusinessCentralChanges(FirmCommand):
    """BC's notice that a company's records changed; the firm, client and company come from
    the notification URL's signed key, never from BC's body alone."""

    client_id: uuid.UUID
    company_id: uuid.UUID
    entities: Annotated[list[Annotated[str, Field(max_length=100)]], Field(min_length=1, max_length=50)]
    notices: Annotated[int, Field(ge=1)]
    collection: bool = False


class ChangesRecorded(BaseModel):
    # The refresh the notice started; None when it joins one asked for moments ago.
    refresh_id: uuid.UUID | None = None


class TestConnection(FirmCommand):
    """Test Client URL: a URL typed on a card (not saved yet), or a saved client's."""

    client_url: Annotated[str, Field(min_length=1, max_length=2000)]
    client_id: uuid.UUID | None = None


class InviteColleague(FirmCommand):
    """Owners and admins invite a colleague by address, as admin or staff."""

    email: Annotated[str, Field(min_length=3, max_length=320)]
    role: Literal["admin", "staff"]
    # The inviting accountant's language: the colleague's email is written in it.
    language: Annotated[str, Field(max_length=35)] = "en"


class RemoveColleague(FirmCommand):
    """Owners and admins remove a colleague from the firm (an admin cannot remove an owner,
    and nobody removes themselves)."""

    accountant_id: uuid.UUID


class ListColleagueInvitations(FirmCommand):
    """Owners and admins: the firm's colleague invitations nobody has accepted or withdrawn,
    expired ones included (they say why someone could not join)."""


class WithdrawColleagueInvitation(FirmCommand):
    """Owners and admins withdraw an invitation nobody has accepted: sent to the wrong
    address, or to someone who will not join after all."""

    invitation_id: uuid.UUID


class PendingColleagueInvitation(BaseModel):
    invitation_id: uuid.UUID
    email: str
    role: str
    invited_by: uuid.UUID
    # The inviter's name as their directory gives it, else their address.
    invited_by_name: str
    # When the invitation was last mailed (inviting the address again mails it again), and
    # when it stops letting the address join: the last mail plus the hub's lifetime.
    mailed_at: datetime
    expires_at: datetime
    expired: bool


class ColleagueInvitations(BaseModel):
    invitations: list[PendingColleagueInvitation]


class ColleagueInvitationWithdrawnResult(BaseModel):
    invitation_id: uuid.UUID
    email: str


class ColleagueRemoved(BaseModel):
    accountant_id: uuid.UUID
    email: str
    # What went with them: their own alert rules, and the clients assigned to them (now
    # assigned to nobody).
    alert_rules_removed: int
    clients_unassigned: int


class GrantTenantAccess(FirmCommand):
    """A client's tenant gave the firm access, proven by a verified sign-in in that tenant."""

    client_id: uuid.UUID
    tenant_id: uuid.UUID
    granted_by: Annotated[str, Field(min_length=1, max_length=320)]


class RevokeTenantAccess(FirmCommand):
    """The firm gives up reading a client's tenant (its refreshes stop at once)."""

    client_id: uuid.UUID


class ListTenantGrants(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: uuid.UUID
    correlation_id: str


class TenantGrantSummary(BaseModel):
    firm_id: uuid.UUID
    firm_name: str
    method: str
    granted_by: str | None
    granted_at: datetime


class TenantGrants(BaseModel):
    grants: list[TenantGrantSummary]


class WithdrawTenantAccess(BaseModel):
    """The client takes one firm's access to its tenant back."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: uuid.UUID
    firm_id: uuid.UUID
    actor: Actor
    correlation_id: str


class TenantAccessChanged(BaseModel):
    # The client card it was changed from; None when the client's own people changed it.
    client_id: uuid.UUID | None
    tenant_id: uuid.UUID
    granted: bool


class ColleagueInvitation(BaseModel):
    email: str
    role: str
    # False: the address was mailed less than a day ago, so only the role was updated.
    mail_sent: bool = True


class ConnectionTestStarted(BaseModel):
    test_id: uuid.UUID


class ClientCreated(BaseModel):
    client_id: uuid.UUID
    # Whether the client's tenant has granted the firm access; False: waiting for permission.
    access_granted: bool | None = None
    # A saved card's revision: the page waits for exactly this one to reach the read model,
    # not for any newer card (a colleague's save in that moment would be taken as its own).
    card_revision: int | None = None


class CardToSaveAgain(BaseModel):
    client_id: uuid.UUID
    name: str


class MissingTimeZonesSet(BaseModel):
    # How many cards were given the time zone now (each a ClientUpdated).
    clients: int
    # Cards still without one beyond this answer's share: ask again.
    remaining: int = 0
    # Cards saved under older rules, which no event may carry as they are: each takes the
    # zone once opened, mended and saved.
    to_save_again: list[CardToSaveAgain] = []


class RefreshScheduleSaved(BaseModel):
    """The schedule is saved; the read model shows it once its event comes back."""


class RefreshStarted(BaseModel):
    refresh_ids: list[uuid.UUID]
    # Refreshes asked for by hand earlier that still await their outcome: not asked again.
    on_their_way: list[uuid.UUID] = []
    # Clients "refresh all" did not ask for: the firm's refreshes by hand awaited at once
    # were at their most (a gateway of the release before ignores it).
    not_started: int = 0


# An Idempotency-Key (IETF draft-ietf-httpapi-idempotency-key-header): visible ASCII, as
# the clients that make them (UUIDs, random strings) write them.
CreationKey = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[!-~]+$")]


class AlertRuleFields(BaseModel):
    """An alert rule as an accountant writes it (hub_registry.domain.alerts has its rules):
    "cash below 10000" for one client or (no client) every client of the firm, mailed to its
    owner and/or POSTed, signed, to an https webhook, at once or in a daily digest."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=250), REQUIRED_LINE]
    client_id: uuid.UUID | None = None
    figure: AlertFigure
    comparison: AlertComparison
    threshold: ExactNumber
    email: bool = True
    webhook_url: Annotated[str, Field(min_length=1, max_length=2000), ONE_LINE] | None = None
    delivery: AlertDelivery = "immediate"
    # The daily digest's wall-clock time in ``time_zone`` (only with delivery daily_digest).
    digest_at: time | None = None
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"


class AlertRuleChange(AlertRuleFields):
    """A change to a rule, as an accountant asks for it."""

    # A new signing secret for the same webhook URL, answered once (a leaked secret, a
    # receiver rebuilt): the old one signs nothing from then on, what is still queued included.
    new_webhook_secret: bool = False


class SetAlertRule(FirmCommand):
    """A new rule (no ``rule_id``) or a change to one; ``language`` is the owner's, for its mail."""

    rule_id: uuid.UUID | None = None
    rule: AlertRuleFields
    language: Annotated[str, Field(max_length=35)] = "en"
    # True: a new signing secret for the rule's webhook (see AlertRuleChange). None when not
    # asked for, so the command travels as before to a registry not yet upgraded.
    new_webhook_secret: Literal[True] | None = None
    # A new rule's Idempotency-Key, chosen by whoever asks: the same key again from the same
    # accountant answers the rule it saved instead of making a second one (a save retried
    # after its answer was lost). None when not given, so the command travels as before.
    creation_key: CreationKey | None = None
    # False when asked with an API token: the rule keeps the webhook it has, or drops it, but
    # names none and renews no secret (a leaked token would keep that past its revocation).
    # Left out while True, so the command travels as before.
    webhook_may_change: bool = Field(default=True, exclude_if=lambda allowed: allowed)


class RemoveAlertRule(FirmCommand):
    rule_id: uuid.UUID


class ListAlertRules(FirmCommand):
    """The rules the actor may see: their own, or every rule of the firm for owners and admins."""


class AlertRuleSaved(BaseModel):
    rule_id: uuid.UUID
    # The webhook's signing secret, shown this once (when the rule got a webhook URL it did
    # not have, its first or another one, or a new secret was asked for); only a sealed copy
    # is kept.
    webhook_secret: str | None = None


class AlertRuleRemovedResult(BaseModel):
    rule_id: uuid.UUID


class WebhookDeliveries(BaseModel):
    """How a rule's POSTs to its webhook URL (the one it names now) have gone: delivered,
    waiting for their next try, or given up; and the newest error of one not delivered."""

    delivered: int
    waiting: int
    given_up: int
    last_delivered_at: datetime | None = None
    last_error: str | None = None


class AlertRuleView(AlertRuleFields):
    rule_id: uuid.UUID
    owner_accountant_id: uuid.UUID
    owner_name: str
    open_episodes: int
    created_at: datetime
    updated_at: datetime
    # None: the rule has no webhook (or a registry of the release before answered).
    webhook_deliveries: WebhookDeliveries | None = None


class AlertRuleList(BaseModel):
    rules: list[AlertRuleView]


# -------------------------------------------------------------- replies


class RejectionReason(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"
    # Business Central answered with a failure that trying again will not fix; see ``failure``.
    UPSTREAM = "upstream"
    # Too many of these for now; the same request later may pass.
    RATE_LIMITED = "rate_limited"
    # Made on a version of the thing that changed since (HTTP 412).
    PRECONDITION_FAILED = "precondition_failed"


class Rejection(BaseModel):
    reason: RejectionReason
    # In English, values filled in: what logs and API clients of before languages read.
    message: str
    field: str | None = None
    # The message as a catalogue msgid with its %(name)s values (hub_common.i18n), so the
    # gateway says it in the reader's language; None when ``message`` is one already.
    message_id: str | None = None
    values: dict[str, str] = {}
    # A classified failure of the client's BC (what is wrong, the fix, the technical details).
    failure: Failure | None = None


ResultT = TypeVar("ResultT", bound=BaseModel)


class CommandReply(BaseModel, Generic[ResultT]):
    """Either the result or why the command was refused; never both."""

    result: ResultT | None = None
    rejection: Rejection | None = None


# NATS carries at most max_payload (1 MB by default) per message, so a large reply (a
# company's statements) travels gzip-compressed; ``send_command`` recognises gzip's magic.
GZIP_MAGIC = b"\x1f\x8b"
MAX_DECOMPRESSED_REPLY_BYTES = 256 * 1024 * 1024


def encode_result(result: BaseModel, *, compress: bool = False) -> bytes:
    """A reply carrying the result (serialized by its own type, not the generic bound)."""
    payload = json.dumps({"result": result.model_dump(mode="json"), "rejection": None}).encode()
    if not compress:
        return payload
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    return compressor.compress(payload) + compressor.flush()


def decompress_reply(data: bytes, *, limit: int = MAX_DECOMPRESSED_REPLY_BYTES) -> bytes:
    """A gzip reply unpacked, refusing to grow past ``limit`` (a reply is input too)."""
    inflater = zlib.decompressobj(31)
    try:
        payload = inflater.decompress(data, limit)
    except zlib.error as error:
        raise CommandRejected(
            Rejection(reason=RejectionReason.UNAVAILABLE, message=f"unreadable compressed reply: {error}")
        ) from error
    if inflater.unconsumed_tail or not inflater.eof:
        raise CommandRejected(
            Rejection(reason=RejectionReason.UNAVAILABLE, message="the compressed reply is incomplete or too large")
        )
    return payload


def encode_rejection(rejection: Rejection) -> bytes:
    return json.dumps({"result": None, "rejection": rejection.model_dump(mode="json")}).encode()


class CommandRejected(Exception):
    """A command its owner will not carry out; nothing was changed.

    The one refusal type on both ends of a command: an owner's rules raise it (``refused``
    makes one), hub_common.command_handling turns it into the reply's rejection, and
    ``send_command`` raises it again in the sender from that reply.
    """

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection


def rejection(reason: RejectionReason, message: str, /, field: str | None = None, **values: object) -> Rejection:
    """A refusal in words the person who sent the command can act on: ``message`` is a
    catalogue message (marked with N_), ``values`` fill its %(name)s placeholders."""
    if not values:
        return Rejection(reason=reason, message=message, field=field)
    said = {name: str(value) for name, value in values.items()}
    return Rejection(reason=reason, message=message % said, field=field, message_id=message, values=said)


def refused(reason: RejectionReason, message: str, /, field: str | None = None, **values: object) -> CommandRejected:
    """The refusal of a command (see ``rejection``)."""
    return CommandRejected(rejection(reason, message, field, **values))


def command_body(command: BaseModel) -> bytes:
    """A command as it travels. Unset optional fields are left out (every one defaults to
    None, so nothing changes for the owner): an owner not yet upgraded then still takes a
    command from a caller that knows a newer optional field, as long as it is not used."""
    return command.model_dump_json(exclude_none=True).encode()


def _read_large_reply(reply_type: type[CommandReply[Any]], data: bytes) -> CommandReply[Any]:
    return reply_type.model_validate_json(decompress_reply(data))


async def send_command(
    connection: Client,
    subject: str,
    command: BaseModel,
    result_type: type[ResultT],
    *,
    timeout: float = 10.0,
) -> ResultT:
    """Send a command and wait for its reply; a refusal raises ``CommandRejected``.

    The trace context travels in the headers, so the owner's work joins the caller's trace.
    """
    headers: dict[str, str] = {}
    inject_context(headers)
    try:
        response = await connection.request(subject, command_body(command), timeout=timeout, headers=headers or None)
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
        raise CommandRejected(
            Rejection(
                reason=RejectionReason.UNAVAILABLE,
                message=f"The service behind {subject} did not answer; try again shortly",
            )
        ) from error
    reply_type = CommandReply[result_type]  # type: ignore[valid-type]
    if response.data.startswith(GZIP_MAGIC):
        # Compressed because large (a company's statements: up to many MB once unpacked):
        # unpacked in a thread, where zlib lets the event loop run meanwhile. Validating it
        # there still holds the interpreter (pydantic-core keeps the GIL), so a very large
        # reply pauses the loop for as long as that takes.
        reply = await asyncio.to_thread(_read_large_reply, reply_type, response.data)
    else:
        reply = reply_type.model_validate_json(response.data)
    if reply.rejection is not None:
        raise CommandRejected(reply.rejection)
    result: ResultT | None = reply.result
    if result is not None:
        return result
    raise CommandRejected(Rejection(reason=RejectionReason.UNAVAILABLE, message="empty reply from service"))


# -------------------------------------------------------------- invitations commands

RAISE_INVITATION = "cmd.invitations.raise"
ACCEPT_INVITATION = "cmd.invitations.accept"
# The client's own people, on /client-access: their tenant's invitations nobody accepted.
LIST_TENANT_INVITATIONS = "cmd.invitations.tenant.list"
WITHDRAW_INVITATION = "cmd.invitations.withdraw"
# Invitations not yet tied to a firm (the invited address may have no account) travel under
# this firm id, the invitations service's own namespace.
UNASSIGNED_FIRM = uuid.UUID(int=0)


class RaiseInvitation(BaseModel):
    """A client's administrator invites an external accountant (BC's wizard, page 9033).

    The tenant comes from the administrator's Entra token, verified by the gateway; never
    from the request body alone.
    """

    model_config = ConfigDict(extra="forbid")

    tenant: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")]
    environment: NewEnvironmentName
    # Trimmed here; a blank name is refused by the service with its own words ("This field
    # cannot be blank", "Choose at least one company"), so no minimum length: a name of
    # spaces trims to "" and must still read back as this model.
    client_name: Annotated[str, Field(max_length=250), ONE_LINE]
    companies: Annotated[list[Annotated[str, Field(max_length=250), ONE_LINE]], Field(max_length=300)]
    accountant_email: Annotated[str, Field(min_length=3, max_length=320)]
    accountant_name: Annotated[str, Field(max_length=250), ONE_LINE]
    welcome_text: Annotated[str, Field(max_length=4000), PRINTABLE_TEXT] | None = None
    raised_by: Annotated[str, Field(min_length=1, max_length=320)]
    correlation_id: str
    # The language the invitation email is written in: the client administrator's (their
    # request's Accept-Language), as the accountant invited may have no account to ask.
    language: Annotated[str, Field(max_length=35)] = "en"


class InvitationRaised(BaseModel):
    invitation_id: uuid.UUID


class AcceptInvitation(BaseModel):
    """An accountant, signed in, follows a link from the invitation email."""

    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=10, max_length=500)]
    accountant_id: uuid.UUID
    firm_id: uuid.UUID
    email: Annotated[str, Field(min_length=3, max_length=320)]
    add_to_dashboard: bool
    correlation_id: str


class ListTenantInvitations(BaseModel):
    """The invitations a tenant raised that nobody accepted and that have not expired."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: uuid.UUID
    correlation_id: str


class PendingInvitation(BaseModel):
    invitation_id: uuid.UUID
    email: str
    accountant_name: str
    environment: str
    companies: list[str]
    raised_by: str
    created_at: datetime
    expires_at: datetime


class TenantInvitations(BaseModel):
    invitations: list[PendingInvitation]


class WithdrawInvitation(BaseModel):
    """Someone of the client's tenant (verified by the gateway) withdraws one of its
    invitations nobody accepted."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: uuid.UUID
    invitation_id: uuid.UUID
    actor: Actor
    correlation_id: str


class InvitationWithdrawnResult(BaseModel):
    invitation_id: uuid.UUID
    email: str


class InvitationAcceptedResult(BaseModel):
    invitation_id: uuid.UUID
    client_name: str
    tenant: str
    environment: str
    # When the same accountant accepted this link before (a second click, or a retry after
    # an answer that came too late); None: accepted now.
    accepted_before: datetime | None = None
    # Whether that acceptance also put the client on the dashboard (None: not known, an
    # acceptance from before this was kept).
    client_added: bool | None = None


# -------------------------------------------------------------- fetcher commands

# Answered by any fetcher process (a queue group): only fetchers talk to BC.
READ_STATEMENTS = "cmd.fetcher.statements.read"


class ReadStatements(FirmCommand):
    """Read one company's financial statements from BC, as of a date.

    The reply is ``hub_common.statements.CompanyStatements``. The connection comes from the
    gateway's read model of the firm's client, never from a request alone. A BC failure is
    a rejection carrying the classified ``failure``: reason UNAVAILABLE when trying again
    later may work (throttled, offline, timeout), UPSTREAM otherwise.
    """

    connection: ClientConnection
    company_id: uuid.UUID
    as_of: date
