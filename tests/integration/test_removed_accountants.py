"""Credentials of an accountant removed from the firm, as the gateway judges them from its
read model: refused while they are removed, and those made before their last removal for
good, also after a new invitation brings them back (to this firm or another)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub_common.db import transaction
from hub_common.events import AccountantJoined, AccountantRemoved, Role
from hub_gateway.accounts import queries as accounts_queries
from hub_gateway.accounts import store
from hub_gateway.accounts.models import BrowserSession
from hub_gateway.auth import Principal
from tests.integration.test_dashboard_model import FIRM, OTHER_FIRM, Log, _apply

EMAIL = "cleo@lucerne-accounting.example"


async def _session_made(
    sessions: async_sessionmaker[AsyncSession], accountant_id: uuid.UUID, firm_id: uuid.UUID, minutes_ago: float
) -> BrowserSession:
    async with transaction(sessions) as session:
        _, row = await store.open_session(session, Principal(accountant_id, firm_id, EMAIL, "Cleo", "staff"))
        row.created_at -= timedelta(minutes=minutes_ago)
    return row


async def _ended(sessions: async_sessionmaker[AsyncSession], row: BrowserSession) -> bool:
    async with sessions() as session:
        return await accounts_queries.access_ended(session, row)


async def test_a_removed_accountants_sessions_end_and_stay_ended(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    cleo = uuid.uuid4()
    log = Log()
    log.add(AccountantJoined(accountant_id=cleo, email=EMAIL, display_name="Cleo", role=Role.STAFF))
    # Signed in before the read model heard of them: nothing says otherwise yet.
    early = await _session_made(sessions, cleo, FIRM, minutes_ago=10)
    assert not await _ended(sessions, early)
    await _apply(sessions, log.items)
    assert not await _ended(sessions, early)

    log.items.clear()
    removal = log.add(AccountantRemoved(accountant_id=cleo, email=EMAIL, removed_by=uuid.uuid4()))
    await _apply(sessions, log.items)
    assert await _ended(sessions, early)
    # A sign-in the registry answered just before the removal, written just after it.
    in_flight = await _session_made(sessions, cleo, FIRM, minutes_ago=-1)
    assert in_flight.created_at > removal.occurred_at and await _ended(sessions, in_flight)
    async with sessions() as session:
        assert await accounts_queries.accountant_by_email(session, EMAIL) is None
        assert [a.email for a in await accounts_queries.accountants(session, firm_id=FIRM)] == []

    # Invited again by another firm: what they held before still never works, a new sign-in does.
    log.items.clear()
    log.add(AccountantJoined(accountant_id=cleo, email=EMAIL, display_name="Cleo", role=Role.ADMIN), firm=OTHER_FIRM)
    await _apply(sessions, log.items)
    assert await _ended(sessions, early)
    assert await _ended(sessions, in_flight), "made for the firm that removed them"
    back = await _session_made(sessions, cleo, OTHER_FIRM, minutes_ago=-2)
    assert not await _ended(sessions, back)
    async with sessions() as session:
        member = await accounts_queries.accountant_by_email(session, EMAIL)
        assert member is not None and (member.firm_id, member.role) == (OTHER_FIRM, "admin")


async def test_a_removal_sent_for_another_firm_changes_nothing(fresh_model: Callable[[], Any]) -> None:
    """An AccountantRemoved published for another firm (a service may publish its own types
    for any firm) does not end an accountant's access."""
    sessions = await fresh_model()
    cleo = uuid.uuid4()
    log = Log()
    log.add(AccountantJoined(accountant_id=cleo, email=EMAIL, display_name="Cleo", role=Role.STAFF))
    log.add(AccountantRemoved(accountant_id=cleo, email=EMAIL, removed_by=uuid.uuid4()), firm=OTHER_FIRM)
    await _apply(sessions, log.items)
    row = await _session_made(sessions, cleo, FIRM, minutes_ago=10)
    assert not await _ended(sessions, row)
