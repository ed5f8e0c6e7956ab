"""What the registry does with each command, as plain functions over one session.

Every state change appends its event to the outbox in the same transaction
(invariant 1); the caller commits once at the end.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common import outbox
from hub_common.commands import (
    AccountantIdentity,
    AddClient,
    ColleagueInvitation,
    EnsureAccountant,
    InviteColleague,
    Rejection,
    RejectionReason,
    RemoveClient,
    RequestRefresh,
    TestConnection,
    UpdateClient,
)
from hub_common.emails import EmailRejected, firm_name_for, normalize_work_email
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
    ConnectionTestRequested,
    Envelope,
    EventData,
    FirmCreated,
    InvitationAccepted,
    RefreshRequested,
    Role,
    new_envelope,
)
from hub_registry.domain.client_url import ClientUrlError, ParsedClientUrl, parse_client_url
from hub_registry.models import Accountant, Client, ColleagueInvitationRow, Firm, registry_outbox
from hub_registry.settings import RegistrySettings

SERVICE_ACTOR = Actor.service("registry")


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


async def _emit(session: AsyncSession, context: Context, data: EventData) -> None:
    envelope = new_envelope(data, firm_id=context.firm_id, actor=context.actor, correlation_id=context.correlation_id)
    await outbox.append(session, registry_outbox, envelope)


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


def _connection(parsed: ParsedClientUrl) -> ClientConnection:
    return ClientConnection(tenant=parsed.tenant, environment=parsed.environment, company_name=parsed.company_name)


# ---------------------------------------------------------------- accountants


async def ensure_accountant(
    *, session: AsyncSession, command: EnsureAccountant, settings: RegistrySettings
) -> AccountantIdentity:
    """Sign-in: the first sign-in of an address creates the accountant and a new firm."""
    try:
        email = normalize_work_email(command.email)
    except EmailRejected as error:
        raise Refused(RejectionReason.INVALID, str(error), field="email") from error
    existing = (await session.execute(select(Accountant).where(Accountant.email == email))).scalar_one_or_none()
    if existing is not None:
        return AccountantIdentity(
            accountant_id=existing.id,
            firm_id=existing.firm_id,
            email=existing.email,
            display_name=existing.display_name,
            role=existing.role,
            created=False,
        )
    invitation = (
        (
            await session.execute(
                select(ColleagueInvitationRow)
                .where(ColleagueInvitationRow.email == email, col(ColleagueInvitationRow.accepted_at).is_(None))
                .order_by(col(ColleagueInvitationRow.created_at).desc())
            )
        )
        .scalars()
        .first()
    )
    if invitation is not None:
        return await _join_firm(session=session, invitation=invitation, command=command, email=email)
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
        await _insert_client(
            session=session,
            context=Context(firm.id, SERVICE_ACTOR, command.correlation_id),
            card=card,
            source=ClientSource.SAMPLE,
            settings=settings,
        )
    return AccountantIdentity(
        accountant_id=accountant.id,
        firm_id=firm.id,
        email=email,
        display_name=accountant.display_name,
        role=accountant.role,
        created=True,
    )


async def _join_firm(
    *, session: AsyncSession, invitation: ColleagueInvitationRow, command: EnsureAccountant, email: str
) -> AccountantIdentity:
    """The first sign-in of an invited address joins the inviting firm, with its role."""
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
    return AccountantIdentity(
        accountant_id=accountant.id,
        firm_id=invitation.firm_id,
        email=email,
        display_name=accountant.display_name,
        role=accountant.role,
        created=True,
    )


async def invite_colleague(*, session: AsyncSession, command: InviteColleague) -> ColleagueInvitation:
    """Owners and admins invite by address; nobody joins a firm by email domain alone."""
    inviter = await session.get(Accountant, uuid.UUID(command.actor.id)) if _is_uuid(command.actor.id) else None
    if inviter is None or inviter.firm_id != command.firm_id:
        raise Refused(RejectionReason.NOT_FOUND, "No such accountant")
    if inviter.role not in (Role.OWNER.value, Role.ADMIN.value):
        raise Refused(RejectionReason.FORBIDDEN, "Only the firm's owners and admins can invite colleagues")
    try:
        email = normalize_work_email(command.email)
    except EmailRejected as error:
        raise Refused(RejectionReason.INVALID, str(error), field="email") from error
    if (await session.execute(select(Accountant.id).where(Accountant.email == email))).first() is not None:
        raise Refused(RejectionReason.CONFLICT, f"{email} already has an Accountant Hub account", field="email")
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
    session: AsyncSession, firm_id: uuid.UUID, parsed: ParsedClientUrl, except_id: uuid.UUID | None
) -> None:
    query = select(Client.id, Client.name).where(
        Client.firm_id == firm_id,
        Client.tenant == parsed.tenant,
        Client.environment == parsed.environment,
        col(Client.removed_at).is_(None),
    )
    clash = (await session.execute(query)).first()
    if clash is not None and clash.id != except_id:
        raise Refused(
            RejectionReason.CONFLICT,
            f"The client {clash.name!r} already uses tenant {parsed.tenant} and environment {parsed.environment}",
            field="client_url",
        )


async def _insert_client(
    *,
    session: AsyncSession,
    context: Context,
    card: ClientCard,
    source: ClientSource,
    settings: RegistrySettings,
) -> uuid.UUID:
    parsed = _parse_url(card, settings)
    await _check_assignee(session, context.firm_id, card)
    await _check_unique(session, context.firm_id, parsed, except_id=None)
    client = Client(
        firm_id=context.firm_id,
        name=card.name,
        client_url=card.client_url.strip(),
        tenant=parsed.tenant,
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
    await _emit(
        session,
        context,
        ClientAdded(client_id=client.id, card=card, connection=_connection(parsed), source=source),
    )
    return client.id


def _context(
    command: AddClient | UpdateClient | RemoveClient | RequestRefresh | TestConnection | InviteColleague,
) -> Context:
    return Context(command.firm_id, command.actor, command.correlation_id)


async def add_client(*, session: AsyncSession, command: AddClient, settings: RegistrySettings) -> uuid.UUID:
    return await _insert_client(
        session=session,
        context=_context(command),
        card=command.card,
        source=ClientSource.MANUAL,
        settings=settings,
    )


async def update_client(*, session: AsyncSession, command: UpdateClient, settings: RegistrySettings) -> None:
    client = await _live_client(session, command.firm_id, command.client_id)
    parsed = _parse_url(command.card, settings)
    await _check_assignee(session, command.firm_id, command.card)
    await _check_unique(session, command.firm_id, parsed, except_id=client.id)
    card = command.card
    client.name = card.name
    client.client_url = card.client_url.strip()
    client.tenant = parsed.tenant
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
        ClientUpdated(client_id=client.id, card=card, connection=_connection(parsed)),
    )


async def remove_client(*, session: AsyncSession, command: RemoveClient) -> None:
    client = await _live_client(session, command.firm_id, command.client_id)
    client.removed_at = datetime.now(UTC)
    if client.source == ClientSource.SAMPLE.value:
        firm = await session.get(Firm, command.firm_id)
        if firm is not None:
            firm.sample_client_removed = True
    await _emit(session, _context(command), ClientRemoved(client_id=client.id))


async def add_invited_client(
    *, session: AsyncSession, accepted: Envelope[InvitationAccepted], settings: RegistrySettings
) -> uuid.UUID | None:
    """An accepted invitation puts the client on the dashboard by itself (no second step).

    Accepting twice, or a redelivered acceptance, adds nothing: a live card for the same
    tenant and environment already exists in the firm.
    """
    data = accepted.data
    existing = (
        await session.execute(
            select(Client.id).where(
                Client.firm_id == accepted.firm_id,
                Client.tenant == data.tenant.lower(),
                Client.environment == data.environment,
                col(Client.removed_at).is_(None),
            )
        )
    ).first()
    if existing is not None:
        return None
    web_client = settings.bc_web_client.rstrip("/")
    card = ClientCard(name=data.client_name, client_url=f"{web_client}/{data.tenant}/{data.environment}")
    actor = Actor(kind=ActorKind.ACCOUNTANT, id=str(data.accountant_id), display_name=data.email)
    return await _insert_client(
        session=session,
        context=Context(accepted.firm_id, actor, accepted.correlation_id),
        card=card,
        source=ClientSource.INVITATION,
        settings=settings,
    )


async def test_connection(*, session: AsyncSession, command: TestConnection, settings: RegistrySettings) -> uuid.UUID:
    """Ask a fetcher to reach the client's BC; the URL is parsed here, never fetched."""
    if command.client_id is not None:
        await _live_client(session, command.firm_id, command.client_id)
    try:
        parsed = parse_client_url(command.client_url, extra_web_client_bases=_web_client_bases(settings))
    except ClientUrlError as error:
        raise Refused(RejectionReason.INVALID, error.message, field="client_url") from error
    test_id = uuid.uuid4()
    await _emit(
        session,
        _context(command),
        ConnectionTestRequested(test_id=test_id, client_id=command.client_id, connection=_connection(parsed)),
    )
    return test_id


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
    refresh_ids = []
    for client in clients:
        refresh_id = uuid.uuid4()
        await _emit(
            session,
            _context(command),
            RefreshRequested(
                refresh_id=refresh_id,
                client_id=client.id,
                connection=ClientConnection(
                    tenant=client.tenant,
                    environment=client.environment,
                    company_name=client.company_name,
                ),
                company_id=command.company_id,
                tax_account_numbers=json.loads(client.tax_account_numbers) if client.tax_account_numbers else None,
            ),
        )
        refresh_ids.append(refresh_id)
    return refresh_ids


SCHEDULE_ACTOR = Actor.service("registry-schedule")


async def refresh_every_client(*, session: AsyncSession, correlation_id: str) -> int:
    """The scheduled refresh: one RefreshRequested per live client of every firm."""
    clients = (await session.execute(select(Client).where(col(Client.removed_at).is_(None)))).scalars().all()
    for client in clients:
        await _emit(
            session,
            Context(client.firm_id, SCHEDULE_ACTOR, correlation_id),
            RefreshRequested(
                refresh_id=uuid.uuid4(),
                client_id=client.id,
                connection=ClientConnection(
                    tenant=client.tenant, environment=client.environment, company_name=client.company_name
                ),
                tax_account_numbers=json.loads(client.tax_account_numbers) if client.tax_account_numbers else None,
            ),
        )
    return len(clients)
