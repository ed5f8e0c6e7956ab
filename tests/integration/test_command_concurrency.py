"""A command server on a real broker: one firm's command that waits on the outside does not
hold another firm's command of the same subject behind it (on PostgreSQL, where a replica
answers several at once); on SQLite they take turns."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import nats
import pytest
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from hub_common.bus import create_broker
from hub_common.command_handling import TRANSACTIONS_AT_ONCE, TRANSACTIONS_PER_FIRM, CommandServer
from hub_common.commands import send_command
from hub_common.db import create_engine, session_factory
from hub_common.local_nats import LocalNatsServer

SUBJECT = "cmd.test.save"


class Save(BaseModel):
    firm_id: uuid.UUID
    slow: bool


class Saved(BaseModel):
    firm_id: uuid.UUID


async def test_a_slow_command_holds_only_its_own_firm(tmp_path: Path, database_url: str) -> None:
    engine = create_engine(database_url)
    with LocalNatsServer(tmp_path / "nats") as server:
        broker = create_broker(server.url, name="registry")
        commands = CommandServer(broker, session_factory(engine), queue="saver", after_commit=lambda: None)

        async def save(session: AsyncSession, command: Save) -> BaseModel:
            if command.slow:
                await asyncio.sleep(2)  # Entra or a webhook's name server taking its time
            return Saved(firm_id=command.firm_id)

        commands.serve_in_transaction(SUBJECT, Save, save)
        await broker.start()
        connection = await nats.connect(server.url)

        async def timed(firm_id: uuid.UUID, *, slow: bool) -> float:
            started = time.monotonic()
            await send_command(connection, SUBJECT, Save(firm_id=firm_id, slow=slow), Saved, timeout=20)
            return time.monotonic() - started

        try:
            busy_firm = uuid.uuid4()
            slow = [asyncio.create_task(timed(busy_firm, slow=True)) for _ in range(4)]
            await asyncio.sleep(0.3)
            other_firm_waited = await timed(uuid.uuid4(), slow=False)
            slow_took = sorted(await asyncio.gather(*slow))
        finally:
            await connection.close()
            await broker.stop()
            await engine.dispose()
    if database_url.startswith("postgresql"):
        assert other_firm_waited < 1.5, f"another firm's command waited {other_firm_waited:.1f} s behind the slow ones"
        # Three of a firm's at a time: its fourth waits for one of them.
        assert slow_took[2] < 3.5 <= slow_took[3], slow_took
    else:
        assert other_firm_waited > 1.5, "on SQLite one writer: the commands take turns"


PREPARED_SUBJECT = "cmd.test.save_prepared"


async def test_slow_work_before_the_transaction_holds_no_place_other_firms_wait_for(
    tmp_path: Path, database_url: str
) -> None:
    """Five firms each with three commands whose preparation (a webhook host's name lookup)
    takes 2 s: more than the transactions that run at once, had they held one each while
    they waited. Prepared before their turn, they hold none, and another firm's command
    passes at once."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite: one process's one writer answers one command at a time")
    engine = create_engine(database_url)
    with LocalNatsServer(tmp_path / "nats") as server:
        broker = create_broker(server.url, name="registry")
        commands = CommandServer(broker, session_factory(engine), queue="saver", after_commit=lambda: None)

        async def look_up(command: Save) -> bool:
            if command.slow:
                await asyncio.sleep(2)
            return command.slow

        async def save(session: AsyncSession, command: Save, looked_up_slowly: bool) -> BaseModel:
            return Saved(firm_id=command.firm_id)

        commands.serve_prepared_in_transaction(PREPARED_SUBJECT, Save, look_up, save)
        await broker.start()
        connection = await nats.connect(server.url)

        async def timed(firm_id: uuid.UUID, *, slow: bool) -> float:
            started = time.monotonic()
            await send_command(connection, PREPARED_SUBJECT, Save(firm_id=firm_id, slow=slow), Saved, timeout=60)
            return time.monotonic() - started

        try:
            busy_firms = [uuid.uuid4() for _ in range(5)]
            assert len(busy_firms) * TRANSACTIONS_PER_FIRM > TRANSACTIONS_AT_ONCE
            slow = [
                asyncio.create_task(timed(firm, slow=True)) for firm in busy_firms for _ in range(TRANSACTIONS_PER_FIRM)
            ]
            await asyncio.sleep(0.3)
            other_firm_waited = await timed(uuid.uuid4(), slow=False)
            await asyncio.gather(*slow)
        finally:
            await connection.close()
            await broker.stop()
            await engine.dispose()
    assert other_firm_waited < 1.5, f"another firm's command waited {other_firm_waited:.1f} s behind the slow ones"
