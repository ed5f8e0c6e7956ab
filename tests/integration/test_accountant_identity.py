"""An accountant's account belongs to the Entra identity it first signed in with: another
identity claiming the same address (any tenant's administrator can give a user any email
attribute) is refused, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.commands import CommandRejected, EnsureAccountant, RejectionReason
from hub_common.db import transaction
from hub_common.entra import TenantDirectory
from hub_registry.models import Accountant
from hub_registry.service import firms
from hub_registry.settings import RegistrySettings

SETTINGS = RegistrySettings(_env_file=None, bc_web_client="https://businesscentral.dynamics.com")


async def test_an_address_signs_in_only_as_the_identity_it_first_came_with(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    email = f"owner.{uuid.uuid4().hex[:8]}@firm-a.example"
    own_tenant, own_user = uuid.uuid4(), uuid.uuid4()

    async def sign_in(tenant_id: uuid.UUID | None, object_id: uuid.UUID | None) -> uuid.UUID:
        command = EnsureAccountant(
            email=email,
            display_name="Owner",
            correlation_id="c",
            entra_tenant_id=tenant_id,
            entra_object_id=object_id,
        )
        async with transaction(registry_sessions) as session:
            found = await firms.ensure_accountant(
                session=session, command=command, settings=SETTINGS, directory=tenant_directory
            )
        return found.accountant_id

    # An account from before identities were kept: its next Entra sign-in binds it.
    first = await sign_in(None, None)
    assert await sign_in(own_tenant, own_user) == first
    async with registry_sessions() as session:
        stored = await session.get(Accountant, first)
        assert stored is not None and (stored.entra_tenant_id, stored.entra_object_id) == (own_tenant, own_user)

    # A user of another tenant whose email attribute was set to the same address.
    with pytest.raises(CommandRejected) as refused:
        await sign_in(uuid.uuid4(), uuid.uuid4())
    assert refused.value.rejection.reason is RejectionReason.FORBIDDEN
    assert "signs in with another Microsoft account" in refused.value.rejection.message
    # The same tenant, another user: refused too. The real one still signs in.
    with pytest.raises(CommandRejected):
        await sign_in(own_tenant, uuid.uuid4())
    assert await sign_in(own_tenant, own_user) == first


async def test_a_new_account_is_bound_at_once(
    registry_sessions: async_sessionmaker[AsyncSession], tenant_directory: TenantDirectory
) -> None:
    email = f"new.{uuid.uuid4().hex[:8]}@firm-b.example"
    tenant_id, object_id = uuid.uuid4(), uuid.uuid4()
    command = EnsureAccountant(
        email=email, display_name="New", correlation_id="c", entra_tenant_id=tenant_id, entra_object_id=object_id
    )
    async with transaction(registry_sessions) as session:
        created = await firms.ensure_accountant(
            session=session, command=command, settings=SETTINGS, directory=tenant_directory
        )
    impostor = command.model_copy(update={"entra_object_id": uuid.uuid4()})
    with pytest.raises(CommandRejected):
        async with transaction(registry_sessions) as session:
            await firms.ensure_accountant(
                session=session, command=impostor, settings=SETTINGS, directory=tenant_directory
            )
    async with registry_sessions() as session:
        stored = await session.get(Accountant, created.accountant_id)
        assert stored is not None and stored.entra_object_id == object_id
