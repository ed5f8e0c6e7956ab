"""An invitations database from before colleague mails were sent once: migration 0007 keeps
every kept alert mail (sent or waiting for SMTP) under the table's new name."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from hub_common.db import create_engine, migrate, session_factory
from hub_invitations.app import MIGRATIONS, VERSION_TABLE
from hub_invitations.models import EventMail


async def test_kept_alert_mails_are_kept_as_event_mails(database_url: str) -> None:
    await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE, "0006")
    waiting, sent = uuid.uuid4(), uuid.uuid4()
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            for event_id, sent_at, message in (
                (waiting, None, "Subject: kept\n\nbody"),
                (sent, "2026-12-01 10:00:00", None),
            ):
                await connection.execute(
                    text(
                        "INSERT INTO invitations_alert_mails (event_id, sent_at, message, attempts, last_error)"
                        " VALUES (:id, :sent_at, :message, 2, 'SMTP down')"
                    ),
                    {"id": event_id.hex, "sent_at": sent_at, "message": message},
                )
        await asyncio.to_thread(migrate, database_url, MIGRATIONS, VERSION_TABLE)
        async with session_factory(engine)() as session:
            kept = await session.get(EventMail, waiting)
            done = await session.get(EventMail, sent)
        assert kept is not None and kept.message == "Subject: kept\n\nbody" and kept.sent_at is None
        assert kept.attempts == 2 and kept.last_error == "SMTP down"
        assert done is not None and done.sent_at is not None and done.message is None
    finally:
        await engine.dispose()
