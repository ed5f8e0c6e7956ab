"""An invitation accepted: the client's tenant grants the firm access, and the client lands
on the dashboard by itself."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.entra import TenantDirectory
from hub_common.events import (
    NOT_ENVIRONMENT_NAMES,
    Actor,
    ActorKind,
    ClientCard,
    ClientSource,
    Envelope,
    GrantMethod,
    InvitationAccepted,
    Role,
)
from hub_common.logging import get_logger
from hub_registry.domain.refresh_schedule import InvalidSchedule, place_time_zone
from hub_registry.models import AcceptedInvitation, Accountant, Client, TenantGrant
from hub_registry.service.clients import insert_client
from hub_registry.service.shared import Context, resolve_tenant
from hub_registry.service.tenant_grants import grant_access, has_grant
from hub_registry.settings import RegistrySettings

logger = get_logger(__name__)


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
    if await session.get(AcceptedInvitation, data.invitation_id) is not None:
        # A redelivery (the acknowledgement was lost after the commit): acting again could
        # add back a card the accountant removed since.
        logger.info(
            "invitation acceptance acted on already; redelivery ignored",
            invitation_id=str(data.invitation_id),
            firm_id=str(accepted.firm_id),
            event_id=str(accepted.id),
        )
        return None
    accountant = await session.get(Accountant, data.accountant_id)
    if (
        accountant is None
        or accountant.firm_id != accepted.firm_id
        or (accountant.removed_at is not None and accountant.removed_at <= accepted.occurred_at)
    ):
        # Accepted as the firm removed them (the gateway checked their session a moment
        # before): the registry acts on nothing of a removed colleague's.
        logger.warning(
            "invitation accepted by an accountant no longer of the firm; no access given",
            invitation_id=str(data.invitation_id),
            firm_id=str(accepted.firm_id),
            accountant_id=str(data.accountant_id),
        )
        _acted_on(session, accepted, client_id=None)
        return None
    # The invitations service takes the tenant from the administrator's verified token, so
    # it is the directory id already: Entra, which may be away, is not asked again (an
    # acceptance that waited for it could run out of deliveries and be lost).
    known_tenant_id = _tenant_id(data.tenant)
    tenant_id = known_tenant_id or await resolve_tenant(directory, data.tenant, asking_firm=None)
    if data.invited_at is not None and await _removed_since(session, accepted.firm_id, tenant_id, data.invited_at):
        # The invitations service refuses such an acceptance; this one crossed the
        # withdrawal on its way here.
        logger.warning(
            "invitation raised before the firm's access was removed; no access given",
            invitation_id=str(data.invitation_id),
            firm_id=str(accepted.firm_id),
            tenant_id=str(tenant_id),
        )
        _acted_on(session, accepted, client_id=None)
        return None
    actor = Actor(kind=ActorKind.ACCOUNTANT, id=str(data.accountant_id), display_name=data.email)
    context = Context(accepted.firm_id, actor, accepted.correlation_id)
    existing = (
        (
            await session.execute(
                select(Client)
                .where(
                    Client.firm_id == accepted.firm_id,
                    or_(col(Client.tenant_id) == tenant_id, func.lower(Client.tenant) == data.tenant.lower()),
                    func.lower(Client.environment) == data.environment.lower(),
                    col(Client.removed_at).is_(None),
                )
                # Cards that differ only in the environment's case, made before that was one
                # client: the oldest is the client.
                .order_by(col(Client.created_at), col(Client.id))
            )
        )
        .scalars()
        .first()
    )
    # Adding a client is the owners' and admins' (the gateway asks staff to accept the access
    # alone): whatever the event says, a staff member's acceptance gives the access only.
    adding = existing is None and data.add_to_dashboard and accountant.role != Role.STAFF.value
    if adding and data.environment.casefold() in NOT_ENVIRONMENT_NAMES:
        # Raised before such names were refused at the invitation: the card would be refused
        # (and the acceptance with it, retried until dead-lettered, the client's consent
        # lost). The access stands; the accountant adds the card with the right environment.
        logger.warning(
            "invitation names no environment; access given, no client added",
            invitation_id=str(data.invitation_id),
            firm_id=str(accepted.firm_id),
            environment=data.environment,
        )
        adding = False
    added = uuid.uuid4() if adding else None
    # The grant first: the relay mirrors it for the fetchers before it publishes the
    # ClientAdded that makes one of them read the client.
    await grant_access(
        session,
        context,
        tenant_id=tenant_id,
        tenant=data.tenant,
        method=GrantMethod.INVITATION,
        client_id=added or (existing.id if existing else None),
        granted_by=f"invitation {data.invitation_id}",
        # A card about to be added is read through its ClientAdded; cards that waited need a refresh.
        refresh=not adding,
        # The client's administrator gave the app consent when raising the invitation (BC's
        # wizard does it first): consent found gone at the first read was withdrawn since.
        consented_at=data.invited_at,
    )
    if adding:
        web_client = settings.bc_web_client.rstrip("/")
        card = ClientCard(
            name=data.client_name,
            client_url=f"{web_client}/{data.tenant}/{data.environment}",
            time_zone=await _firms_time_zone(session, accepted.firm_id),
        )
        await insert_client(
            session=session,
            context=context,
            card=card,
            source=ClientSource.INVITATION,
            settings=settings,
            directory=directory,
            client_id=added,
            known_tenant_id=known_tenant_id,
        )
    _acted_on(session, accepted, client_id=added)
    return added


def _acted_on(session: AsyncSession, accepted: Envelope[InvitationAccepted], *, client_id: uuid.UUID | None) -> None:
    # Committed with what the acceptance did: two replicas acting on one delivery and its
    # redelivery at once cannot both commit (the invitation is the key).
    session.add(
        AcceptedInvitation(
            invitation_id=accepted.data.invitation_id,
            firm_id=accepted.firm_id,
            event_id=accepted.id,
            client_id=client_id,
        )
    )


async def _firms_time_zone(session: AsyncSession, firm_id: uuid.UUID) -> str | None:
    """The time zone every card of the firm that names one names, if they agree: an invited
    client comes without a card to choose it on, and a firm's clients are mostly where it
    is. None (UTC) when no card names one, when they differ, or when this host's tzdata no
    longer admits it; the accountant can always set it on the card."""
    zones = (
        (
            await session.execute(
                select(Client.time_zone)
                .where(Client.firm_id == firm_id, col(Client.removed_at).is_(None), col(Client.time_zone).is_not(None))
                .distinct()
                .limit(2)
            )
        )
        .scalars()
        .all()
    )
    if len(zones) != 1 or not isinstance(zone := zones[0], str):
        return None
    try:
        place_time_zone(zone)
    except InvalidSchedule:
        return None
    return zone


def _tenant_id(tenant: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(tenant)
    except ValueError:
        return None


async def _removed_since(session: AsyncSession, firm_id: uuid.UUID, tenant_id: uuid.UUID, moment: datetime) -> bool:
    """Whether the firm lost its access to the tenant after ``moment`` and holds none now."""
    if await has_grant(session, firm_id, tenant_id):
        return False
    revoked = await session.execute(
        select(TenantGrant.id).where(
            TenantGrant.firm_id == firm_id,
            TenantGrant.tenant_id == tenant_id,
            col(TenantGrant.revoked_at) > moment,
        )
    )
    return revoked.first() is not None
