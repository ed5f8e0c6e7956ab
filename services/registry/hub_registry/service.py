"""What the registry does with each command, as plain functions over one session.

Every state change appends its event to the outbox in the same transaction
(invariant 1); the caller commits once at the end.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common import outbox
from hub_common.commands import (
    AccountantIdentity,
    AddClient,
    ColleagueInvitation,
    EnsureAccountant,
    FirmInvitationChoice,
    FirmInvitationChoices,
    GrantTenantAccess,
    InviteColleague,
    ListFirmInvitations,
    ListTenantGrants,
    Rejection,
    RejectionReason,
    RemoveClient,
    RequestRefresh,
    RevokeTenantAccess,
    TenantAccessChanged,
    TenantGrants,
    TenantGrantSummary,
    TestConnection,
    UpdateClient,
    WithdrawTenantAccess,
)
from hub_common.emails import EmailRejected, firm_name_for, normalize_work_email
from hub_common.entra import DirectoryUnavailable, TenantDirectory, TenantNotFound
from hub_common.events import (
    AccountantJoined,
    Actor,
    ActorKind,
    ClientAdded,
    ClientCard,
    ClientConnection,
    ClientRemoved,
    ClientSource,
    ClientUpdated,
    ColleagueInvited,
    CompaniesDiscovered,
    ConnectionTested,
    ConnectionTestRequested,
    Envelope,
    EventData,
    Failure,
    FailureKind,
    FirmCreated,
    GrantMethod,
    InvitationAccepted,
    RefreshFailed,
    RefreshRequested,
    Role,
    TenantAccessGranted,
    TenantAccessRevoked,
    new_envelope,
)
from hub_common.logging import get_logger
from hub_registry.domain.client_url import ClientUrlError, ParsedClientUrl, parse_client_url
from hub_registry.models import Accountant, Client, ColleagueInvitationRow, Firm, TenantGrant, registry_outbox
from hub_registry.settings import RegistrySettings

SERVICE_ACTOR = Actor.service("registry")
logger = get_logger(__name__)


class Refused(Exception):
    """A command the registry will not carry out; nothing was changed."""

    def __init__(self, reason: RejectionReason, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.rejection = Rejection(reason=reason, message=message, field=field)


@dataclass(frozen=True)
class Context:
    """Who is acting, and for which request, shared by every event a command emits."""

    firm_id: uuid.UUID
    actor: Actor
    correlation_id: str


async def _emit(session: AsyncSession, context: Context, data: EventData) -> Envelope[EventData]:
    envelope = new_envelope(data, firm_id=context.firm_id, actor=context.actor, correlation_id=context.correlation_id)
    await outbox.append(session, registry_outbox, envelope)
    return envelope


async def _resolve_tenant(directory: TenantDirectory, tenant: str) -> uuid.UUID:
    """The tenant's directory id; the Client URL is still never fetched, only Entra is asked."""
    try:
        return await directory.resolve(tenant)
    except TenantNotFound as error:
        raise Refused(RejectionReason.INVALID, f"{error}; check the tenant in the Client URL", "client_url") from error
    except DirectoryUnavailable as error:
        raise Refused(RejectionReason.UNAVAILABLE, f"{error}; try again in a moment", "client_url") from error


def _parse_url(card: ClientCard, settings: RegistrySettings) -> ParsedClientUrl:
    try:
        return parse_client_url(card.client_url, extra_web_client_bases=_web_client_bases(settings))
    except ClientUrlError as error:
        raise Refused(RejectionReason.INVALID, error.message, field="client_url") from error


def _web_client_bases(settings: RegistrySettings) -> tuple[str, ...]:
    default = "https://businesscentral.dynamics.com"
    return () if settings.bc_web_client.rstrip("/") == default else (settings.bc_web_client,)


def _tax_accounts_column(card: ClientCard) -> str | None:
    return json.dumps(card.tax_account_numbers) if card.tax_account_numbers else None


def _connection(parsed: ParsedClientUrl, tenant_id: uuid.UUID | None) -> ClientConnection:
    return ClientConnection(
        tenant=parsed.tenant, environment=parsed.environment, company_name=parsed.company_name, tenant_id=tenant_id
    )


def _client_connection(client: Client) -> ClientConnection:
    return ClientConnection(
        tenant=client.tenant,
        environment=client.environment,
        company_name=client.company_name,
        tenant_id=client.tenant_id,
    )


# ---------------------------------------------------------------- accountants


def _identity(accountant: Accountant, *, created: bool) -> AccountantIdentity:
    return AccountantIdentity(
        accountant_id=accountant.id,
        firm_id=accountant.firm_id,
        email=accountant.email,
        display_name=accountant.display_name,
        role=accountant.role,
        created=created,
    )


async def _pending_invitations(session: AsyncSession, email: str) -> list[ColleagueInvitationRow]:
    """Every firm's pending invitation of the address, newest first, one per firm."""
    rows = (
        (
            await session.execute(
                select(ColleagueInvitationRow)
                .where(ColleagueInvitationRow.email == email, col(ColleagueInvitationRow.accepted_at).is_(None))
                .order_by(col(ColleagueInvitationRow.created_at).desc())
            )
        )
        .scalars()
        .all()
    )
    newest: dict[uuid.UUID, ColleagueInvitationRow] = {}
    for row in rows:
        newest.setdefault(row.firm_id, row)
    return list(newest.values())


def _work_email(email: str) -> str:
    try:
        return normalize_work_email(email)
    except EmailRejected as error:
        raise Refused(RejectionReason.INVALID, str(error), field="email") from error


async def list_firm_invitations(*, session: AsyncSession, command: ListFirmInvitations) -> FirmInvitationChoices:
    """What a first sign-in chooses between; nothing for an address that has an account."""
    email = _work_email(command.email)
    if (await session.execute(select(Accountant.id).where(Accountant.email == email))).first() is not None:
        return FirmInvitationChoices(invitations=[])
    choices = []
    for invitation in await _pending_invitations(session, email):
        firm = await session.get(Firm, invitation.firm_id)
        inviter = await session.get(Accountant, invitation.invited_by)
        choices.append(
            FirmInvitationChoice(
                firm_id=invitation.firm_id,
                firm_name=firm.name if firm else "a firm",
                role=invitation.role,
                invited_by=inviter.display_name if inviter else "a colleague",
                invited_at=invitation.created_at,
            )
        )
    return FirmInvitationChoices(invitations=choices)


async def ensure_accountant(
    *, session: AsyncSession, command: EnsureAccountant, settings: RegistrySettings, directory: TenantDirectory
) -> AccountantIdentity:
    """Sign-in: an existing accountant is found; a first sign-in joins the firm it chose
    among its invitations, or gets a new firm of its own. With invitations pending, the
    choice must be explicit: an invitation alone never moves anyone into a firm."""
    email = _work_email(command.email)
    existing = (await session.execute(select(Accountant).where(Accountant.email == email))).scalar_one_or_none()
    if existing is not None:
        return _identity(existing, created=False)
    invitations = await _pending_invitations(session, email)
    if command.join_firm_id is not None:
        chosen = next((row for row in invitations if row.firm_id == command.join_firm_id), None)
        if chosen is None:
            raise Refused(RejectionReason.NOT_FOUND, "There is no pending invitation from that firm", "join_firm_id")
        return await _join_firm(session=session, invitation=chosen, command=command, email=email)
    if invitations and not command.start_own_firm:
        raise Refused(
            RejectionReason.CONFLICT,
            "Colleague invitations are waiting for this address: choose which firm to join, or start your own",
            field="join_firm_id",
        )
    firm = Firm(name=firm_name_for(email))
    accountant = Accountant(firm_id=firm.id, email=email, display_name=command.display_name, role=Role.OWNER.value)
    session.add(firm)
    await session.flush()
    session.add(accountant)
    await session.flush()
    context = Context(
        firm_id=firm.id,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(accountant.id), display_name=email),
        correlation_id=command.correlation_id,
    )
    await _emit(session, context, FirmCreated(name=firm.name, owner_accountant_id=accountant.id))
    await _emit(
        session,
        context,
        AccountantJoined(
            accountant_id=accountant.id,
            email=email,
            display_name=accountant.display_name,
            role=Role.OWNER,
        ),
    )
    if settings.sample_client_url:
        card = ClientCard(name=settings.sample_client_name, client_url=settings.sample_client_url)
        service_context = Context(firm.id, SERVICE_ACTOR, command.correlation_id)
        sample_tenant = _parse_url(card, settings).tenant
        sample_client_id = uuid.uuid4()
        # The sample tenant is the operator's own demo tenant, granted to every firm; the
        # grant goes first so the fetchers know of it before the ClientAdded is published.
        await _grant(
            session,
            service_context,
            tenant_id=await _resolve_tenant(directory, sample_tenant),
            tenant=sample_tenant,
            method=GrantMethod.SAMPLE,
            client_id=sample_client_id,
            granted_by=None,
            refresh=False,
        )
        await _insert_client(
            session=session,
            context=service_context,
            card=card,
            source=ClientSource.SAMPLE,
            settings=settings,
            directory=directory,
            client_id=sample_client_id,
        )
    return _identity(accountant, created=True)


async def _join_firm(
    *, session: AsyncSession, invitation: ColleagueInvitationRow, command: EnsureAccountant, email: str
) -> AccountantIdentity:
    """A first sign-in joins the firm it chose among its invitations, with that role."""
    accountant = Accountant(
        firm_id=invitation.firm_id, email=email, display_name=command.display_name, role=invitation.role
    )
    session.add(accountant)
    invitation.accepted_at = datetime.now(UTC)
    await session.flush()
    context = Context(
        firm_id=invitation.firm_id,
        actor=Actor(kind=ActorKind.ACCOUNTANT, id=str(accountant.id), display_name=email),
        correlation_id=command.correlation_id,
    )
    await _emit(
        session,
        context,
        AccountantJoined(
            accountant_id=accountant.id, email=email, display_name=accountant.display_name, role=Role(invitation.role)
        ),
    )
    return _identity(accountant, created=True)


async def invite_colleague(*, session: AsyncSession, command: InviteColleague) -> ColleagueInvitation:
    """Owners and admins invite by address; nobody joins a firm by email domain alone.

    An address that already has an account in another firm is answered exactly like a new
    one, so inviting cannot be used to learn who uses the hub.
    """
    inviter = await session.get(Accountant, uuid.UUID(command.actor.id)) if _is_uuid(command.actor.id) else None
    if inviter is None or inviter.firm_id != command.firm_id:
        raise Refused(RejectionReason.NOT_FOUND, "No such accountant")
    if inviter.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise Refused(RejectionReason.FORBIDDEN, "Only the firm's owners and admins can invite colleagues")
    email = _work_email(command.email)
    member = (await session.execute(select(Accountant.firm_id).where(Accountant.email == email))).first()
    if member is not None and member.firm_id == command.firm_id:
        raise Refused(RejectionReason.CONFLICT, f"{email} is already a member of this firm", field="email")
    pending = (
        await session.execute(
            select(ColleagueInvitationRow).where(
                ColleagueInvitationRow.email == email,
                ColleagueInvitationRow.firm_id == command.firm_id,
                col(ColleagueInvitationRow.accepted_at).is_(None),
            )
        )
    ).scalar_one_or_none()
    if pending is None:
        pending = ColleagueInvitationRow(firm_id=command.firm_id, email=email, role=command.role, invited_by=inviter.id)
        session.add(pending)
    pending.role = command.role
    firm = await session.get(Firm, command.firm_id)
    await _emit(
        session,
        _context(command),
        ColleagueInvited(
            email=email,
            role=Role(command.role),
            invited_by=inviter.id,
            firm_name=firm.name if firm else "your firm",
            inviter_name=inviter.display_name,
        ),
    )
    return ColleagueInvitation(email=email, role=command.role)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- tenant access


async def _live_grant(session: AsyncSession, firm_id: uuid.UUID, tenant_id: uuid.UUID) -> TenantGrant | None:
    return (
        await session.execute(
            select(TenantGrant).where(
                TenantGrant.firm_id == firm_id,
                TenantGrant.tenant_id == tenant_id,
                col(TenantGrant.revoked_at).is_(None),
            )
        )
    ).scalar_one_or_none()


async def has_grant(session: AsyncSession, firm_id: uuid.UUID, tenant_id: uuid.UUID | None) -> bool:
    return tenant_id is not None and await _live_grant(session, firm_id, tenant_id) is not None


async def _clients_on_tenant(session: AsyncSession, firm_id: uuid.UUID, tenant_id: uuid.UUID) -> list[Client]:
    return list(
        (
            await session.execute(
                select(Client).where(
                    Client.firm_id == firm_id,
                    Client.tenant_id == tenant_id,
                    col(Client.removed_at).is_(None),
                )
            )
        ).scalars()
    )


async def _grant(
    session: AsyncSession,
    context: Context,
    *,
    tenant_id: uuid.UUID,
    tenant: str,
    method: GrantMethod,
    client_id: uuid.UUID | None,
    granted_by: str | None,
    refresh: bool,
) -> None:
    """Record the grant (once) and read the firm's clients on that tenant at last."""
    if await _live_grant(session, context.firm_id, tenant_id) is not None:
        return
    session.add(
        TenantGrant(
            firm_id=context.firm_id,
            tenant_id=tenant_id,
            tenant=tenant,
            method=method.value,
            granted_by=granted_by,
        )
    )
    await session.flush()
    await _emit(
        session,
        context,
        TenantAccessGranted(
            tenant_id=tenant_id, tenant=tenant, method=method, client_id=client_id, granted_by=granted_by
        ),
    )
    if refresh:
        # Clients added while waiting for permission: read them now. The relay mirrors the
        # grant for the fetchers before it publishes anything that comes after it.
        for client in await _clients_on_tenant(session, context.firm_id, tenant_id):
            await _emit_refresh(session, context, client, company_id=None)


async def _revoke(session: AsyncSession, context: Context, *, grant: TenantGrant, reason: str) -> None:
    grant.revoked_at = datetime.now(UTC)
    grant.revoke_reason = reason[:500]
    await _emit(
        session, context, TenantAccessRevoked(tenant_id=grant.tenant_id, tenant=grant.tenant, reason=reason[:500])
    )


async def grant_tenant_access(*, session: AsyncSession, command: GrantTenantAccess) -> TenantAccessChanged:
    """Connect from the client card: the gateway verified a sign-in in the client's tenant."""
    client = await _live_client(session, command.firm_id, command.client_id)
    if client.tenant_id != command.tenant_id:
        raise Refused(
            RejectionReason.CONFLICT,
            "The sign-in was in another tenant than this client's: sign in with an account of the client's tenant",
            field="tenant_id",
        )
    await _grant(
        session,
        _context(command),
        tenant_id=command.tenant_id,
        tenant=client.tenant,
        method=GrantMethod.CONNECT,
        client_id=client.id,
        granted_by=command.granted_by,
        refresh=True,
    )
    return TenantAccessChanged(client_id=client.id, tenant_id=command.tenant_id, granted=True)


async def revoke_tenant_access(*, session: AsyncSession, command: RevokeTenantAccess) -> TenantAccessChanged:
    """The firm stops reading the client's tenant (every client of the firm on it)."""
    client = await _live_client(session, command.firm_id, command.client_id)
    if client.tenant_id is None:
        raise Refused(RejectionReason.NOT_FOUND, "This client's tenant has no grant", field="client_id")
    grant = await _live_grant(session, command.firm_id, client.tenant_id)
    if grant is not None:
        name = command.actor.display_name or command.actor.id
        await _revoke(session, _context(command), grant=grant, reason=f"Access removed in the hub by {name}")
    return TenantAccessChanged(client_id=client.id, tenant_id=client.tenant_id, granted=False)


async def list_tenant_grants(*, session: AsyncSession, command: ListTenantGrants) -> TenantGrants:
    """The firms a tenant lets read it: the client's own question about its own tenant."""
    rows = (
        await session.execute(
            select(TenantGrant, Firm.name)
            .join(Firm, col(Firm.id) == col(TenantGrant.firm_id))
            .where(TenantGrant.tenant_id == command.tenant_id, col(TenantGrant.revoked_at).is_(None))
            .order_by(col(TenantGrant.granted_at))
        )
    ).all()
    return TenantGrants(
        grants=[
            TenantGrantSummary(
                firm_id=grant.firm_id,
                firm_name=name,
                method=grant.method,
                granted_by=grant.granted_by,
                granted_at=grant.granted_at,
            )
            for grant, name in rows
        ]
    )


async def withdraw_tenant_access(*, session: AsyncSession, command: WithdrawTenantAccess) -> TenantAccessChanged:
    """Someone of the client's tenant takes one firm's access back; the others keep theirs."""
    grant = await _live_grant(session, command.firm_id, command.tenant_id)
    if grant is None:
        raise Refused(RejectionReason.NOT_FOUND, "That firm has no access to your organisation", field="firm_id")
    who = command.actor.display_name or command.actor.id
    await _revoke(
        session,
        Context(command.firm_id, command.actor, command.correlation_id),
        grant=grant,
        reason=f"Removed by {who} of the client's organisation",
    )
    return TenantAccessChanged(client_id=None, tenant_id=command.tenant_id, granted=False)


async def confirm_grant(*, session: AsyncSession, discovered: Envelope[CompaniesDiscovered]) -> None:
    """A fetcher read the client's companies: its tenant's grant has been used, consent and all."""
    query = select(Client).where(Client.id == discovered.data.client_id, Client.firm_id == discovered.firm_id)
    client = (await session.execute(query)).scalar_one_or_none()
    if client is None or client.tenant_id is None:
        return
    grant = await _live_grant(session, discovered.firm_id, client.tenant_id)
    if grant is not None and grant.confirmed_at is None and grant.granted_at <= discovered.occurred_at:
        grant.confirmed_at = discovered.occurred_at


async def withdraw_after_consent_lost(*, session: AsyncSession, failed: Envelope[RefreshFailed]) -> None:
    """Entra says the app's consent is gone from the client's tenant: the client withdrew it.

    The firm's grant ends with it, so consent given again later (perhaps for another firm)
    does not silently restore this firm's access: the client must connect it again.
    """
    if failed.data.failure.kind is not FailureKind.CONSENT_MISSING:
        return
    client = (
        await session.execute(
            select(Client).where(Client.id == failed.data.client_id, Client.firm_id == failed.firm_id)
        )
    ).scalar_one_or_none()
    if client is None or client.tenant_id is None:
        return
    grant = await _live_grant(session, failed.firm_id, client.tenant_id)
    if grant is None or grant.confirmed_at is None or grant.granted_at > failed.occurred_at:
        # Never read under this grant: the consent was never there to withdraw (the client's
        # administrator has yet to give it). Or granted again after that refresh failed.
        return
    await _revoke(
        session,
        Context(failed.firm_id, SERVICE_ACTOR, failed.correlation_id),
        grant=grant,
        reason="The client withdrew the Accountant Hub app's consent in Microsoft Entra ID",
    )


# ---------------------------------------------------------------- clients


async def _live_client(session: AsyncSession, firm_id: uuid.UUID, client_id: uuid.UUID) -> Client:
    client = (
        await session.execute(
            select(Client).where(
                Client.id == client_id,
                Client.firm_id == firm_id,
                col(Client.removed_at).is_(None),
            )
        )
    ).scalar_one_or_none()
    if client is None:
        # Another firm's client answers exactly like a missing one (invariant 4).
        raise Refused(RejectionReason.NOT_FOUND, "No such client", field="client_id")
    return client


async def _check_assignee(session: AsyncSession, firm_id: uuid.UUID, card: ClientCard) -> None:
    if card.assigned_accountant_id is None:
        return
    assignee = await session.get(Accountant, card.assigned_accountant_id)
    if assignee is None or assignee.firm_id != firm_id:
        raise Refused(
            RejectionReason.INVALID,
            "The assigned accountant is not a member of this firm",
            field="assigned_accountant_id",
        )


async def _check_unique(
    session: AsyncSession,
    firm_id: uuid.UUID,
    parsed: ParsedClientUrl,
    tenant_id: uuid.UUID,
    except_id: uuid.UUID | None,
) -> None:
    """One live card per tenant and environment in a firm, however the URL names the tenant."""
    same_tenant = or_(col(Client.tenant_id) == tenant_id, func.lower(Client.tenant) == parsed.tenant.lower())
    query = select(Client.id, Client.name).where(
        Client.firm_id == firm_id,
        same_tenant,
        Client.environment == parsed.environment,
        col(Client.removed_at).is_(None),
    )
    for clash in (await session.execute(query)).all():
        if clash.id != except_id:
            raise Refused(
                RejectionReason.CONFLICT,
                f"The client {clash.name!r} already uses this tenant ({tenant_id})"
                f" and environment {parsed.environment}",
                field="client_url",
            )


async def _insert_client(
    *,
    session: AsyncSession,
    context: Context,
    card: ClientCard,
    source: ClientSource,
    settings: RegistrySettings,
    directory: TenantDirectory,
    client_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, ClientConnection]:
    parsed = _parse_url(card, settings)
    # What the card alone can refuse first: asking Entra is the slow part.
    await _check_assignee(session, context.firm_id, card)
    tenant_id = await _resolve_tenant(directory, parsed.tenant)
    await _check_unique(session, context.firm_id, parsed, tenant_id, except_id=None)
    client = Client(
        id=client_id or uuid.uuid4(),
        firm_id=context.firm_id,
        name=card.name,
        client_url=card.client_url.strip(),
        tenant=parsed.tenant,
        tenant_id=tenant_id,
        environment=parsed.environment,
        company_name=parsed.company_name,
        contact_name=card.contact_name,
        email=card.email,
        phone=card.phone,
        notes=card.notes,
        assigned_accountant_id=card.assigned_accountant_id,
        tax_account_numbers=_tax_accounts_column(card),
        source=source.value,
    )
    session.add(client)
    await session.flush()
    connection = _connection(parsed, tenant_id)
    await _emit(
        session,
        context,
        ClientAdded(client_id=client.id, card=card, connection=connection, source=source),
    )
    return client.id, connection


def _context(
    command: AddClient
    | UpdateClient
    | RemoveClient
    | RequestRefresh
    | TestConnection
    | InviteColleague
    | GrantTenantAccess
    | RevokeTenantAccess,
) -> Context:
    return Context(command.firm_id, command.actor, command.correlation_id)


async def add_client(
    *, session: AsyncSession, command: AddClient, settings: RegistrySettings, directory: TenantDirectory
) -> tuple[uuid.UUID, bool]:
    """A card added by hand; its figures wait for the client's permission unless the
    tenant already granted this firm access. Returns the client id and whether it did."""
    client_id, connection = await _insert_client(
        session=session,
        context=_context(command),
        card=command.card,
        source=ClientSource.MANUAL,
        settings=settings,
        directory=directory,
    )
    return client_id, await has_grant(session, command.firm_id, connection.tenant_id)


async def update_client(
    *, session: AsyncSession, command: UpdateClient, settings: RegistrySettings, directory: TenantDirectory
) -> None:
    client = await _live_client(session, command.firm_id, command.client_id)
    parsed = _parse_url(command.card, settings)
    await _check_assignee(session, command.firm_id, command.card)
    tenant_id = await _resolve_tenant(directory, parsed.tenant)
    await _check_unique(session, command.firm_id, parsed, tenant_id, except_id=client.id)
    card = command.card
    client.name = card.name
    client.client_url = card.client_url.strip()
    client.tenant = parsed.tenant
    client.tenant_id = tenant_id
    client.environment = parsed.environment
    client.company_name = parsed.company_name
    client.contact_name = card.contact_name
    client.email = card.email
    client.phone = card.phone
    client.notes = card.notes
    client.assigned_accountant_id = card.assigned_accountant_id
    client.tax_account_numbers = _tax_accounts_column(card)
    client.updated_at = datetime.now(UTC)
    await _emit(
        session,
        _context(command),
        ClientUpdated(client_id=client.id, card=card, connection=_connection(parsed, tenant_id)),
    )


async def remove_client(*, session: AsyncSession, command: RemoveClient) -> None:
    client = await _live_client(session, command.firm_id, command.client_id)
    client.removed_at = datetime.now(UTC)
    if client.source == ClientSource.SAMPLE.value:
        firm = await session.get(Firm, command.firm_id)
        if firm is not None:
            firm.sample_client_removed = True
    await _emit(session, _context(command), ClientRemoved(client_id=client.id))


async def accept_invitation(
    *,
    session: AsyncSession,
    accepted: Envelope[InvitationAccepted],
    settings: RegistrySettings,
    directory: TenantDirectory,
) -> uuid.UUID | None:
    """The client's administrator invited this firm's accountant, who accepted: the tenant
    grants the firm access, and the client lands on the dashboard by itself.

    A card for the same tenant and environment that is already there (added by hand while
    waiting, or by an earlier acceptance) is the client: the grant attaches to it and it is
    read now, instead of a second copy being added.
    """
    data = accepted.data
    tenant_id = await _resolve_tenant(directory, data.tenant)
    actor = Actor(kind=ActorKind.ACCOUNTANT, id=str(data.accountant_id), display_name=data.email)
    context = Context(accepted.firm_id, actor, accepted.correlation_id)
    existing = (
        await session.execute(
            select(Client).where(
                Client.firm_id == accepted.firm_id,
                or_(col(Client.tenant_id) == tenant_id, func.lower(Client.tenant) == data.tenant.lower()),
                Client.environment == data.environment,
                col(Client.removed_at).is_(None),
            )
        )
    ).scalar_one_or_none()
    adding = existing is None and data.add_to_dashboard
    added = uuid.uuid4() if adding else None
    # The grant first: the relay mirrors it for the fetchers before it publishes the
    # ClientAdded that makes one of them read the client.
    await _grant(
        session,
        context,
        tenant_id=tenant_id,
        tenant=data.tenant,
        method=GrantMethod.INVITATION,
        client_id=added or (existing.id if existing else None),
        granted_by=f"invitation {data.invitation_id}",
        # A card about to be added is read through its ClientAdded; cards that waited need a refresh.
        refresh=not adding,
    )
    if adding:
        web_client = settings.bc_web_client.rstrip("/")
        card = ClientCard(name=data.client_name, client_url=f"{web_client}/{data.tenant}/{data.environment}")
        await _insert_client(
            session=session,
            context=context,
            card=card,
            source=ClientSource.INVITATION,
            settings=settings,
            directory=directory,
            client_id=added,
        )
    return added


async def test_connection(
    *, session: AsyncSession, command: TestConnection, settings: RegistrySettings, directory: TenantDirectory
) -> uuid.UUID:
    """Ask a fetcher to reach the client's BC; the URL is parsed here, never fetched."""
    if command.client_id is not None:
        await _live_client(session, command.firm_id, command.client_id)
    try:
        parsed = parse_client_url(command.client_url, extra_web_client_bases=_web_client_bases(settings))
    except ClientUrlError as error:
        raise Refused(RejectionReason.INVALID, error.message, field="client_url") from error
    test_id = uuid.uuid4()
    try:
        tenant_id = await directory.resolve(parsed.tenant)
    except TenantNotFound as error:
        # Entra answered the test already: record the outcome like any failed test, so it
        # shows in Check Errors with Entra's words, and no fetcher needs to ask again.
        await _emit(
            session,
            _context(command),
            ConnectionTested(
                test_id=test_id,
                client_id=command.client_id,
                ok=False,
                connection=_connection(parsed, None),
                failure=Failure(
                    kind=FailureKind.TENANT_NOT_FOUND,
                    summary="Microsoft Entra ID does not know the client's tenant.",
                    fix="Check the tenant id or domain in the Client URL with the client's administrator.",
                    http_status=400,
                    bc_error_code="AADSTS90002",
                    message=str(error),
                    occurred_at=datetime.now(UTC),
                ),
            ),
        )
        return test_id
    except DirectoryUnavailable as error:
        raise Refused(RejectionReason.UNAVAILABLE, f"{error}; try again in a moment", "client_url") from error
    await _emit(
        session,
        _context(command),
        ConnectionTestRequested(
            test_id=test_id, client_id=command.client_id, connection=_connection(parsed, tenant_id)
        ),
    )
    return test_id


async def _emit_refresh(
    session: AsyncSession, context: Context, client: Client, *, company_id: uuid.UUID | None
) -> uuid.UUID:
    refresh_id = uuid.uuid4()
    await _emit(
        session,
        context,
        RefreshRequested(
            refresh_id=refresh_id,
            client_id=client.id,
            connection=_client_connection(client),
            company_id=company_id,
            tax_account_numbers=json.loads(client.tax_account_numbers) if client.tax_account_numbers else None,
        ),
    )
    return refresh_id


async def request_refresh(*, session: AsyncSession, command: RequestRefresh) -> list[uuid.UUID]:
    if command.client_id is not None:
        clients = [await _live_client(session, command.firm_id, command.client_id)]
    else:
        if command.company_id is not None:
            raise Refused(RejectionReason.INVALID, "A company refresh names its client", "client_id")
        clients = list(
            (
                await session.execute(
                    select(Client).where(
                        Client.firm_id == command.firm_id,
                        col(Client.removed_at).is_(None),
                    )
                )
            ).scalars()
        )
    return [
        await _emit_refresh(session, _context(command), client, company_id=command.company_id) for client in clients
    ]


async def resolve_missing_tenant_ids(*, session: AsyncSession, directory: TenantDirectory) -> int:
    """Cards saved before tenants were resolved learn their tenant id (a ClientUpdated each).

    Until then they read nothing (no grant can name them), and their Connect link cannot be
    made. A tenant Entra does not know, or an Entra that does not answer, is left for the
    next start; returns how many cards were resolved.
    """
    waiting = (
        await session.execute(select(Client).where(col(Client.removed_at).is_(None), col(Client.tenant_id).is_(None)))
    ).scalars()
    resolved = 0
    for client in waiting:
        try:
            tenant_id = await directory.resolve(client.tenant)
        except (TenantNotFound, DirectoryUnavailable) as error:
            logger.warning("tenant not resolved", client_id=str(client.id), reason=str(error)[:200])
            continue
        client.tenant_id = tenant_id
        card = ClientCard.model_validate(
            {
                "name": client.name,
                "client_url": client.client_url,
                "contact_name": client.contact_name,
                "email": client.email,
                "phone": client.phone,
                "notes": client.notes,
                "assigned_accountant_id": client.assigned_accountant_id,
                "tax_account_numbers": json.loads(client.tax_account_numbers) if client.tax_account_numbers else None,
            }
        )
        context = Context(client.firm_id, SERVICE_ACTOR, f"resolve-tenant-{client.id}")
        await _emit(
            session, context, ClientUpdated(client_id=client.id, card=card, connection=_client_connection(client))
        )
        resolved += 1
    return resolved


SCHEDULE_ACTOR = Actor.service("registry-schedule")


async def refresh_every_client(*, session: AsyncSession, correlation_id: str) -> int:
    """The scheduled refresh: one RefreshRequested per live client of every firm that its
    tenant granted access (a client still waiting for permission has nothing to read)."""
    granted = (
        select(TenantGrant.id)
        .where(
            TenantGrant.firm_id == Client.firm_id,
            TenantGrant.tenant_id == Client.tenant_id,
            col(TenantGrant.revoked_at).is_(None),
        )
        .exists()
    )
    clients = (await session.execute(select(Client).where(col(Client.removed_at).is_(None), granted))).scalars().all()
    for client in clients:
        await _emit_refresh(session, Context(client.firm_id, SCHEDULE_ACTOR, correlation_id), client, company_id=None)
    return len(clients)
