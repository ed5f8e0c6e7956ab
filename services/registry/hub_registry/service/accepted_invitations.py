"""An invitation accepted: the client's tenant grants the firm access, and the client lands
on the dashboard by itself."""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.entra import TenantDirectory
from hub_common.events import Actor, ActorKind, ClientCard, ClientSource, Envelope, GrantMethod, InvitationAccepted
from hub_registry.models import Client
from hub_registry.service.clients import insert_client
from hub_registry.service.shared import Context, resolve_tenant
from hub_registry.service.tenant_grants import grant_access
from hub_registry.settings import RegistrySettings


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
    tenant_id = await resolve_tenant(directory, data.tenant)
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
    )
    if adding:
        web_client = settings.bc_web_client.rstrip("/")
        card = ClientCard(name=data.client_name, client_url=f"{web_client}/{data.tenant}/{data.environment}")
        await insert_client(
            session=session,
            context=context,
            card=card,
            source=ClientSource.INVITATION,
            settings=settings,
            directory=directory,
            client_id=added,
        )
    return added
