"""Browser sessions do not pile up: each sign-in sweeps expired sessions and keeps an
accountant's newest MAX_SESSIONS."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlmodel import col, select

from hub_common.db import transaction
from hub_gateway.accounts import store
from hub_gateway.accounts.models import BrowserSession
from hub_gateway.auth import Principal

FIRM = uuid.uuid4()


def _principal(accountant_id: uuid.UUID) -> Principal:
    return Principal(accountant_id, FIRM, "ada@lucerne-accounting.example", "Ada", "owner")


async def test_sign_ins_keep_the_newest_sessions_and_sweep_expired_ones(fresh_model: Callable[[], Any]) -> None:
    sessions = await fresh_model()
    ada, ben = uuid.uuid4(), uuid.uuid4()
    async with transaction(sessions) as session:
        _, expired = await store.open_session(session, _principal(ben))
        expired.expires_at -= store.SESSION_LIFETIME + timedelta(seconds=1)
        _, current = await store.open_session(session, _principal(ben))
    opened: list[str] = []
    for minute in range(store.MAX_SESSIONS + 5):
        async with transaction(sessions) as session:
            _, row = await store.open_session(session, _principal(ada))
            row.created_at += timedelta(minutes=minute)  # one sign-in a minute
            opened.append(row.token_hash)
    async with sessions() as session:
        kept = set((await session.execute(select(BrowserSession.token_hash))).scalars())
        adas = (await session.execute(select(BrowserSession).where(col(BrowserSession.accountant_id) == ada))).scalars()
        assert {row.token_hash for row in adas} == set(opened[-store.MAX_SESSIONS :])
    assert expired.token_hash not in kept, "an expired session stays"
    assert current.token_hash in kept, "another accountant's session ended"
