"""What every registry rule shares: who is acting, appending events, the Client URL, a live client.

Every state change appends its event to the outbox in the same transaction
(invariant 1); the caller commits once at the end. A refusal raises
``hub_common.commands.CommandRejected`` (made by ``refused``) and changes nothing.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common import outbox
from hub_common.commands import FirmCommand, RejectionReason, refused
from hub_common.entra import DirectoryUnavailable, LookupsSpent, TenantDirectory, TenantNotFound
from hub_common.events import Actor, ActorKind, ClientConnection, Envelope, EventData, new_envelope
from hub_common.i18n import N_
from hub_registry.domain.client_url import ClientUrlError, ParsedClientUrl, parse_client_url, partner_web_client_host
from hub_registry.models import Accountant, Client, registry_outbox
from hub_registry.settings import RegistrySettings

SERVICE_ACTOR = Actor.service("registry")


@dataclass(frozen=True)
class Context:
    """Who is acting, and for which request, shared by every event a command emits."""

    firm_id: uuid.UUID
    actor: Actor
    correlation_id: str

    @classmethod
    def of(cls, command: FirmCommand) -> Context:
        return cls(command.firm_id, command.actor, command.correlation_id)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def acting_accountant(session: AsyncSession, firm_id: uuid.UUID, actor: Actor) -> Accountant:
    """The accountant a command acts for, a member of its firm: one removed meanwhile (a
    request already on its way) acts no more. Share-locked (PostgreSQL), so a removal in
    progress is waited for and seen, and one that comes after waits for this command."""
    accountant = (
        await session.get(Accountant, uuid.UUID(actor.id), with_for_update={"read": True, "key_share": True})
        if is_uuid(actor.id)
        else None
    )
    if accountant is None or accountant.firm_id != firm_id or accountant.removed_at is not None:
        raise refused(RejectionReason.NOT_FOUND, N_("No such accountant"))
    return accountant


async def acting_member(session: AsyncSession, command: BaseModel) -> None:
    """Every command an accountant sends for a firm: refused once they are no longer of it
    (removed, or a request that was on its way when they were), whatever it does."""
    if isinstance(command, FirmCommand) and command.actor.kind is ActorKind.ACCOUNTANT:
        await acting_accountant(session, command.firm_id, command.actor)


async def emit(
    session: AsyncSession, context: Context, data: EventData, *, occurred_at: datetime | None = None
) -> Envelope[EventData]:
    """Append the event to the outbox in the caller's transaction; ``occurred_at`` when the
    moment it records is not this replica's clock now (see tenant_grants.changed_at)."""
    envelope = new_envelope(data, firm_id=context.firm_id, actor=context.actor, correlation_id=context.correlation_id)
    if occurred_at is not None:
        envelope = envelope.model_copy(update={"occurred_at": occurred_at})
    await outbox.append(session, registry_outbox, envelope)
    return envelope


def lookups_spent(spent: LookupsSpent) -> Exception:
    return refused(
        RejectionReason.RATE_LIMITED,
        N_(
            "The hub asked Microsoft Entra ID about %(count)s tenants for your firm in the last hour, the most it"
            " asks for one firm; try again in %(minutes)s minutes."
        ),
        "client_url",
        count=spent.allowance,
        minutes=max(1, math.ceil(spent.retry_after_seconds / 60)),
    )


async def resolve_tenant(directory: TenantDirectory, tenant: str, *, asking_firm: uuid.UUID | None) -> uuid.UUID:
    """The tenant's directory id; the Client URL is still never fetched, only Entra is asked.

    A question an accountant's card makes Entra answer takes one of their firm's hourly
    lookups (``asking_firm``); the hub's own (the sample client, an invitation's tenant,
    None) does not.
    """
    try:
        return await directory.resolve(tenant, firm_id=asking_firm)
    except LookupsSpent as spent:
        raise lookups_spent(spent) from spent
    except TenantNotFound as error:
        # Entra's answer stays as it is (technical, English); what to do is said in the reader's language.
        check = N_("%(reason)s; check the tenant in the Client URL")
        raise refused(RejectionReason.INVALID, check, "client_url", reason=str(error)) from error
    except DirectoryUnavailable as error:
        again = N_("%(reason)s; try again in a moment")
        raise refused(RejectionReason.UNAVAILABLE, again, "client_url", reason=str(error)) from error


def parse_url(client_url: str, settings: RegistrySettings) -> ParsedClientUrl:
    """The tenant, environment and company a Client URL names, or why it names none."""
    try:
        return parse_client_url(client_url, extra_web_client_bases=_web_client_bases(settings))
    except ClientUrlError as error:
        raise refused(RejectionReason.INVALID, error.message_id, "client_url", **error.values) from error


def _web_client_bases(settings: RegistrySettings) -> tuple[str, ...]:
    # The sandbox's web client, in dev, is a web client too.
    default = "https://businesscentral.dynamics.com"
    return () if settings.bc_web_client.rstrip("/") == default else (settings.bc_web_client,)


def parsed_connection(parsed: ParsedClientUrl, tenant_id: uuid.UUID | None) -> ClientConnection:
    return ClientConnection(
        tenant=parsed.tenant,
        environment=parsed.environment,
        company_name=parsed.company_name,
        tenant_id=tenant_id,
        web_client_host=parsed.partner_host,
    )


def account_numbers_column(numbers: list[str] | None) -> str | None:
    """A card's G/L account numbers as the client row keeps them (a JSON list)."""
    return json.dumps(numbers) if numbers else None


def account_numbers(column: str | None) -> list[str] | None:
    return json.loads(column) if column else None


def client_connection(client: Client) -> ClientConnection:
    return ClientConnection(
        tenant=client.tenant,
        environment=client.environment,
        company_name=client.company_name,
        tenant_id=client.tenant_id,
        web_client_host=partner_web_client_host(client.client_url),
    )


async def live_client(
    session: AsyncSession, firm_id: uuid.UUID, client_id: uuid.UUID, *, for_update: bool = False
) -> Client:
    """The firm's client, unless removed; ``for_update`` locks its row until the transaction ends."""
    query = select(Client).where(
        Client.id == client_id,
        Client.firm_id == firm_id,
        col(Client.removed_at).is_(None),
    )
    # FOR NO KEY UPDATE: rows of other tables may still point at the card meanwhile.
    locked = query.with_for_update(key_share=True)
    client = (await session.execute(locked if for_update else query)).scalar_one_or_none()
    if client is None:
        # Another firm's client answers exactly like a missing one (invariant 4).
        raise refused(RejectionReason.NOT_FOUND, "No such client", field="client_id")
    return client


def read_the_place_before(client: Client | None, revision: int) -> bool:
    """Whether a refresh's outcome (carrying its RefreshRequested.accounts_revision) read the
    tenant or environment the card named before its last move: what it says is history."""
    return client is not None and revision < client.moved_revision
