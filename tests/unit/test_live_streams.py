"""Ending the open live streams when the gateway stops: a stream hears it even when its
queue overflowed afterwards (the overflow empties the queue for a reload)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, cast

from nats.aio.client import Client
from nats.aio.msg import Msg

from hub_gateway.dashboard.live import QUEUE_LIMIT, LiveUpdates


@dataclass
class _Notice:
    subject: str
    data: bytes


async def _hear(live: LiveUpdates, firm_id: uuid.UUID) -> None:
    body = json.dumps({"client_ids": [str(uuid.uuid4())], "new_failures": False}).encode()
    await live._heard(cast(Msg, _Notice(f"live.{firm_id}.changes", body)))


async def test_an_end_survives_an_overflowing_queue() -> None:
    live = LiveUpdates(cast(Client, cast(Any, None)))
    firm_id = uuid.uuid4()
    with live.listen(firm_id) as queue:
        for _ in range(QUEUE_LIMIT - 1):
            await _hear(live, firm_id)
        live.end_streams()
        assert live.ending
        # Notices keep coming while the server stops; the full queue is emptied for a reload.
        for _ in range(3):
            await _hear(live, firm_id)
        waiting = [queue.get_nowait() for _ in range(queue.qsize())]
        assert any(notice.end for notice in waiting), "the end was dropped with the overflow"
