"""Tenant grants: a client's tenant lets a firm read it, and takes that back.

A firm reads a client only while the client's tenant grants it access: given by Connect on
the client card, by an accepted invitation, or to every firm for the operator's sample
tenant. The grant ends when the firm or the client's own people remove it, or when Entra
says the app's consent is gone.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from hub_common.commands import (
    GrantTenantAccess,
    ListTenantGrants,
    RejectionReason,
    RevokeTenantAccess,
    TenantAccessChanged,
    TenantGrants,
    TenantGrantSummary,
    WithdrawTenantAccess,
    refused,
)
from hub_common.events import (
    CompaniesDiscovered,
    Envelope,
    FailureKind,
    GrantMethod,
    RefreshFailed,
    TenantAccessGranted,
    TenantAccessRevoked,
)
from hub_registry.models import Client, Firm, TenantGrant
from hub_registry.service.refreshes import emit_refresh
from hub_registry.service.shared import SERVICE_ACTOR, Context, emit, live_client, read_the_place_before


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


# How long Entra may still answer "no consent" (AADSTS700016) after an administrator gave it,
# while the new service principal spreads through its directory.
CONSENT_PROPAGATION = timedelta(hours=1)


async def grant_access(
    session: AsyncSession,
    context: Context,
    *,
    tenant_id: uuid.UUID,
    tenant: str,
    method: GrantMethod,
    client_id: uuid.UUID | None,
    granted_by: str | None,
    refresh: bool,
    consented_at: datetime | None = None,
) -> None:
    """Record the grant (once) and read the firm's clients on that tenant at last.

    ``consented_at``: when the tenant's administrator is known to have given the app consent
    with this grant (an invitation is raised with it). The grant then counts as confirmed
    once Entra has surely spread that consent (CONSENT_PROPAGATION later), so consent found
    gone after that was withdrawn, and ends the grant (``withdraw_after_consent_lost``);
    otherwise consent given again later, for another firm, would silently let this one in.
    """
    if await _live_grant(session, context.firm_id, tenant_id) is not None:
        return
    granted_at = await changed_at(session, context.firm_id, tenant_id)
    session.add(
        TenantGrant(
            granted_at=granted_at,
            firm_id=context.firm_id,
            tenant_id=tenant_id,
            tenant=tenant,
            method=method.value,
            granted_by=granted_by,
            confirmed_at=consented_at + CONSENT_PROPAGATION if consented_at is not None else None,
        )
    )
    await session.flush()
    await emit(
        session,
        context,
        TenantAccessGranted(
            tenant_id=tenant_id, tenant=tenant, method=method, client_id=client_id, granted_by=granted_by
        ),
        occurred_at=granted_at,
    )
    if refresh:
        # Clients added while waiting for permission: read them now. The relay mirrors the
        # grant for the fetchers before it publishes anything that comes after it.
        for client in await _clients_on_tenant(session, context.firm_id, tenant_id):
            await emit_refresh(session, context, client, company_id=None)


async def _revoke(session: AsyncSession, context: Context, *, grant: TenantGrant, reason: str) -> None:
    grant.revoked_at = await changed_at(session, grant.firm_id, grant.tenant_id)
    grant.revoke_reason = reason[:500]
    await emit(
        session,
        context,
        TenantAccessRevoked(tenant_id=grant.tenant_id, tenant=grant.tenant, reason=reason[:500]),
        occurred_at=grant.revoked_at,
    )


async def changed_at(session: AsyncSession, firm_id: uuid.UUID, tenant_id: uuid.UUID) -> datetime:
    """The moment a grant or revocation of the firm's access to the tenant is recorded at:
    now, or just after the last one recorded if that is later.

    The fetchers' copy of each grant (hub_common.grants) keeps the change with the latest
    moment, and the moment is the clock of the registry replica that made it. A replica
    whose clock runs ahead would otherwise record a grant "later" than a revocation made
    just after it by another replica, and the fetchers would go on reading a tenant whose
    access was removed."""
    latest = (
        await session.execute(
            select(func.max(TenantGrant.granted_at), func.max(TenantGrant.revoked_at)).where(
                TenantGrant.firm_id == firm_id, TenantGrant.tenant_id == tenant_id
            )
        )
    ).one()
    moments = [moment for moment in latest if moment is not None]
    now = datetime.now(UTC)
    return max(now, max(moments) + timedelta(microseconds=1)) if moments else now


async def grant_tenant_access(*, session: AsyncSession, command: GrantTenantAccess) -> TenantAccessChanged:
    """Connect from the client card: the gateway verified a sign-in in the client's tenant."""
    client = await live_client(session, command.firm_id, command.client_id)
    if client.tenant_id != command.tenant_id:
        raise refused(
            RejectionReason.CONFLICT,
            "The sign-in was in another tenant than this client's: sign in with an account of the client's tenant",
            field="tenant_id",
        )
    await grant_access(
        session,
        Context.of(command),
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
    client = await live_client(session, command.firm_id, command.client_id)
    if client.tenant_id is None:
        raise refused(RejectionReason.NOT_FOUND, "This client's tenant has no grant", field="client_id")
    grant = await _live_grant(session, command.firm_id, client.tenant_id)
    if grant is not None:
        name = command.actor.display_name or command.actor.id
        await _revoke(session, Context.of(command), grant=grant, reason=f"Access removed in the hub by {name}")
    return TenantAccessChanged(client_id=client.id, tenant_id=client.tenant_id, granted=False)


async def list_tenant_grants(*, session: AsyncSession, command: ListTenantGrants) -> TenantGrants:
    """The firms a tenant lets read it: the client's own question about its own tenant.

    The sample tenant's grants are the hub's, one for every firm, not the tenant's choice:
    they are neither listed (whoever signs in there would see every firm of the hub) nor
    withdrawn there."""
    rows = (
        await session.execute(
            select(TenantGrant, Firm.name)
            .join(Firm, col(Firm.id) == col(TenantGrant.firm_id))
            .where(
                TenantGrant.tenant_id == command.tenant_id,
                col(TenantGrant.revoked_at).is_(None),
                col(TenantGrant.method) != GrantMethod.SAMPLE.value,
            )
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
    if grant is None or grant.method == GrantMethod.SAMPLE.value:
        raise refused(RejectionReason.NOT_FOUND, "That firm has no access to your organisation", field="firm_id")
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
    if read_the_place_before(client, discovered.data.accounts_revision):
        return  # the tenant the card named before a move was read, not the one it names now
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
    if read_the_place_before(client, failed.data.accounts_revision):
        return  # consent lost at the tenant the card named before a move, not at this one
    grant = await _live_grant(session, failed.firm_id, client.tenant_id)
    if (
        grant is None
        or grant.confirmed_at is None
        or grant.granted_at > failed.occurred_at
        or failed.occurred_at < grant.confirmed_at
    ):
        # Never read under this grant: the consent was never there to withdraw (the client's
        # administrator has yet to give it). Or granted again after that refresh failed. Or
        # consent given so recently that Entra may not know it everywhere yet.
        return
    await _revoke(
        session,
        Context(failed.firm_id, SERVICE_ACTOR, failed.correlation_id),
        grant=grant,
        reason="The client withdrew the Accountant Hub app's consent in Microsoft Entra ID",
    )
