"""Test Client URL answers heard on the real broker: a waiting request gets its answer from
the ConnectionTested event as it is stored, an answer that arrived just before the request
asked is still found, and another firm's test id never answers."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client
from nats.js import JetStreamContext

from hub_common.bus import publish_event
from hub_common.events import Actor, ConnectionTested, DiscoveredCompany, new_envelope
from hub_gateway.client_url_tests.answers import ConnectionTestAnswers

FIRM, OTHER_FIRM = uuid.uuid4(), uuid.uuid4()


def _tested(test_id: uuid.UUID) -> ConnectionTested:
    company = DiscoveredCompany(company_id=uuid.uuid4(), name="CRONUS UK Ltd.")
    return ConnectionTested(test_id=test_id, ok=True, companies=[company], latency_ms=12)


async def _publish(js: JetStreamContext, data: ConnectionTested, firm: uuid.UUID = FIRM) -> None:
    await publish_event(js, new_envelope(data, firm_id=firm, actor=Actor.service("fetcher")))


async def test_a_waiting_request_gets_its_answer_from_the_event(
    nats_connection: Client, jetstream: JetStreamContext
) -> None:
    answers = ConnectionTestAnswers(nats_connection)
    await answers.start()
    try:
        test_id, other_test = uuid.uuid4(), uuid.uuid4()
        waiting = asyncio.create_task(answers.wait(FIRM, test_id, timeout=10))
        await asyncio.sleep(0.1)
        await _publish(jetstream, _tested(other_test))
        await _publish(jetstream, _tested(test_id))
        answer = await waiting
        assert answer is not None and answer.test_id == test_id and answer.latency_ms == 12
        # Answered before anyone asked: found among the answers heard lately.
        early = await answers.wait(FIRM, other_test, timeout=0.1)
        assert early is not None and early.test_id == other_test
        assert answers.recent(FIRM, test_id) == answer
    finally:
        await answers.stop()


async def test_another_firms_answer_is_never_handed_out(nats_connection: Client, jetstream: JetStreamContext) -> None:
    answers = ConnectionTestAnswers(nats_connection)
    await answers.start()
    try:
        test_id = uuid.uuid4()
        waiting = asyncio.create_task(answers.wait(FIRM, test_id, timeout=1))
        await asyncio.sleep(0.1)
        await _publish(jetstream, _tested(test_id), firm=OTHER_FIRM)
        assert await waiting is None
        assert answers.recent(FIRM, test_id) is None
        assert answers.recent(OTHER_FIRM, test_id) is not None
    finally:
        await answers.stop()


async def test_no_answer_in_time_is_none(nats_connection: Client, jetstream: JetStreamContext) -> None:
    answers = ConnectionTestAnswers(nats_connection)
    await answers.start()
    try:
        assert await answers.wait(FIRM, uuid.uuid4(), timeout=0.2) is None
    finally:
        await answers.stop()
