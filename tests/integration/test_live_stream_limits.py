"""How many live pages one gateway replica keeps open: per accountant, per firm, in all."""

from __future__ import annotations

import uuid

import nats
import pytest

from hub_gateway.dashboard.live import STREAMS_PER_ACCOUNTANT, Crowded, LiveUpdates, TooManyStreams


async def test_a_firm_and_the_replica_have_their_limits_besides_each_accountants(nats_url: str) -> None:
    """A firm could invite account after account, each opening its 20 pages; every firm
    together could take a replica's memory. Each limit refuses the next stream, and a
    closed stream makes room again."""
    connection = await nats.connect(nats_url)
    try:
        live = LiveUpdates(connection, per_firm=25, per_replica=40)
        firm, other_firm, third_firm = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        ada, ben = uuid.uuid4(), uuid.uuid4()
        for _ in range(STREAMS_PER_ACCOUNTANT):
            live.reserve(ada, firm)
        with pytest.raises(TooManyStreams) as refused:
            live.reserve(ada, firm)
        assert refused.value.crowded is Crowded.ACCOUNTANT
        for _ in range(5):
            live.reserve(ben, firm)
        assert live.crowded(ben, firm) is Crowded.FIRM  # 25 for the firm, ben's own 5 notwithstanding
        assert live.crowded(uuid.uuid4(), other_firm) is None
        for _ in range(15):
            live.reserve(uuid.uuid4(), other_firm)
        assert live.crowded(uuid.uuid4(), third_firm) is Crowded.REPLICA  # 40 in all
        live.release(ben, firm)
        assert live.crowded(ben, firm) is None
        live.reserve(ben, firm)
        assert live.crowded(uuid.uuid4(), third_firm) is Crowded.REPLICA
    finally:
        await connection.close()
