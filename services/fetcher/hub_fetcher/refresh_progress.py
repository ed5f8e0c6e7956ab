"""Which companies of a refresh already have their outcome, kept across its deliveries.

A refresh is deferred (nacked with a delay) when some of its companies failed transiently:
BC throttled them, timed out or was being upgraded. Reading every company again on the next
delivery would cost a client of 300 companies 300 more reads on an identity BC has just
asked to slow down, and republish snapshots the broker's duplicate window (2 minutes) no
longer catches after a longer delay. So the companies settled so far (a snapshot or a
RefreshFailed published) are recorded, keyed by the refresh's message, just before the nack,
and the next delivery reads only the others. A record that is lost (its TTL, a broker away)
only means reading those companies again, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

import nats.js.errors
from nats.js import JetStreamContext
from pydantic import TypeAdapter, ValidationError

from hub_common.bus import BROKER_UNAVAILABLE
from hub_common.logging import get_logger
from hub_common.streams import REFRESH_PROGRESS_BUCKET

logger = get_logger(__name__)

_COMPANY_IDS = TypeAdapter(frozenset[uuid.UUID])


async def settled_companies(js: JetStreamContext, message_id: uuid.UUID) -> frozenset[uuid.UUID]:
    """The companies an earlier delivery of this message settled; none when unknown."""
    try:
        bucket = await js.key_value(REFRESH_PROGRESS_BUCKET)
        entry = await bucket.get(str(message_id))
    except nats.js.errors.KeyNotFoundError:
        return frozenset()
    except BROKER_UNAVAILABLE as error:
        logger.warning("refresh progress not read; reading every company", error=repr(error)[:200])
        return frozenset()
    try:
        return _COMPANY_IDS.validate_json(entry.value or b"[]")
    except ValidationError:
        logger.warning("refresh progress unreadable; reading every company")
        return frozenset()


async def record_settled(js: JetStreamContext, message_id: uuid.UUID, companies: Collection[uuid.UUID]) -> None:
    """Record the companies settled so far, before the message is handed back for a retry."""
    try:
        bucket = await js.key_value(REFRESH_PROGRESS_BUCKET)
        await bucket.put(str(message_id), _COMPANY_IDS.dump_json(frozenset(companies)))
    except BROKER_UNAVAILABLE as error:
        logger.warning("refresh progress not recorded; the retry reads every company", error=repr(error)[:200])
