"""A client tenant's daily allowance of invitations holds when replicas raise several at
once (PostgreSQL, where replicas run; the embedded SQLite hub takes no such lock)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from hub_common.commands import CommandRejected, RaiseInvitation, RejectionReason
from hub_common.db import transaction
from hub_invitations.models import Invitation
from hub_invitations.service import raise_invitation
from hub_invitations.settings import InvitationsSettings
from tests.conftest import POSTGRESQL_ONLY

SETTINGS = InvitationsSettings(_env_file=None, invitations_per_tenant_per_day=3)


async def _raise(sessions: async_sessionmaker[AsyncSession], tenant: str, number: int) -> None:
    command = RaiseInvitation(
        tenant=tenant,
        environment="Production",
        client_name="Fabrikam",
        companies=["CRONUS"],
        accountant_email=f"accountant.{number}@contoso-accounting.example",
        accountant_name="Accountant",
        raised_by="admin@fabrikam.example",
        correlation_id=f"raise-{number}",
    )
    async with transaction(sessions) as session:
        await raise_invitation(session=session, command=command, settings=SETTINGS)


@pytest.mark.parametrize("database_url", POSTGRESQL_ONLY, indirect=True)
async def test_invitations_raised_at_once_stay_within_the_tenants_daily_allowance(
    database_url: str, invitations_sessions: async_sessionmaker[AsyncSession]
) -> None:
    tenant = f"fabrikam-{uuid.uuid4().hex[:8]}.example"
    outcomes = await asyncio.gather(
        *(_raise(invitations_sessions, tenant, number) for number in range(6)), return_exceptions=True
    )
    refusals = [outcome for outcome in outcomes if isinstance(outcome, CommandRejected)]
    assert len(refusals) == 3, outcomes
    assert {refusal.rejection.reason for refusal in refusals} == {RejectionReason.RATE_LIMITED}
    async with invitations_sessions() as session:
        stored = await session.execute(
            select(func.count()).select_from(Invitation).where(col(Invitation.tenant) == tenant)
        )
    assert stored.scalar_one() == SETTINGS.invitations_per_tenant_per_day
